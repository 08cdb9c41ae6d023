from dmops.pii import mask, mask_email, mask_id, mask_phone


def test_email_keeps_first_letter_and_domain() -> None:
    assert mask_email("li.lei@qq.com") == "l***@qq.com"


def test_phone_keeps_country_prefix_and_last_four() -> None:
    assert mask_phone("+8613800138000") == "+86*******8000"


def test_short_values_are_masked_whole() -> None:
    assert mask_phone("12345") == "*****"
    assert mask_id("123") == "1**"


def test_show_pii_returns_the_value() -> None:
    assert mask("li.lei@qq.com", "email", show_pii=True) == "li.lei@qq.com"
    assert mask("王小明", "name") == "王***"
