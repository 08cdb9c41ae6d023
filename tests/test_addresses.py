"""The SQL fast paths for emails and phones decide exactly as email-validator and phonenumbers do."""

from __future__ import annotations

import random

import duckdb
import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from hypothesis import given, settings
from hypothesis import strategies as st

from dmops.addresses import EMAIL_FAST, email_table, normalise_email, normalise_phone, phone_table


def through_sql(kind: str, values: list[str], region: str | None = None) -> dict[str, str | None]:
    con = duckdb.connect()
    con.execute("CREATE TABLE src AS SELECT unnest($1::VARCHAR[]) AS v", [values])
    if kind == "email":
        email_table(con, "checked", "SELECT v FROM src")
    else:
        phone_table(con, "checked", "SELECT v FROM src", region)
    return dict(con.execute("SELECT raw, norm FROM checked").fetchall())


@settings(max_examples=15, deadline=None)
@given(st.lists(st.from_regex(EMAIL_FAST, fullmatch=True), min_size=5, max_size=15))
def test_fast_path_emails_match_email_validator(addresses: list[str]) -> None:
    got = through_sql("email", addresses)
    for address in addresses:
        assert got[address] == normalise_email(address)
        # inside the fast path's own limits (lengths; no "--", which could be IDNA; no special-use domain)
        # it is accepted unchanged
        domain = address.split("@")[1].lower()
        special = any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES)
        if len(address.split("@")[0]) <= 64 and len(address) <= 254 and "--" not in domain and not special:
            assert got[address] == address


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ab.@-_+ \t1xX\u00e9", max_size=20), max_size=20))
def test_emails_through_sql_match_the_library(values: list[str]) -> None:
    got = through_sql("email", values)
    for value in values:
        assert got[value] == normalise_email(value), repr(value)


def test_special_use_and_idna_domains_are_left_to_the_library() -> None:
    values = ["a@x.local", "a@b.test", "a@xn--bcher-kva.example", "a@b..com", ".a@b.com", "a@b.c0m", "A@Example.COM"]
    got = through_sql("email", values)
    assert got == {value: normalise_email(value) for value in values}


def _corpus(seed: int = 20261122) -> list[str]:
    """Example numbers of every region and type, written four ways, plus near-miss mutations of each."""
    rng = random.Random(seed)
    formats = [
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.NATIONAL,
    ]
    values: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)[::3]:
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.VOIP,
        ):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for fmt in formats:
                text = phonenumbers.format_number(example, fmt)
                values.add(text)
                values.add("".join(ch for ch in text if ch.isdigit() or ch == "+"))
                for _ in range(2):
                    chars = list(text)
                    position = rng.randrange(len(chars))
                    if chars[position].isdigit():
                        chars[position] = rng.choice("0123456789")
                    values.add("".join(chars) + rng.choice(["", "", "7", "12"]))
    return sorted(values)


CORPUS = _corpus()


def test_phone_corpus_through_sql_matches_phonenumbers() -> None:
    assert len(CORPUS) > 1500
    for region in (None, "CN", "GB", "FR"):
        got = through_sql("phone", CORPUS, region)
        wrong = [(value, got[value]) for value in CORPUS if got[value] != normalise_phone(value, region)]
        assert wrong == [], (region, wrong[:5])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="+0123456789 -", max_size=18), max_size=40), st.sampled_from([None, "CN", "US", "GB"]))
def test_random_digit_strings_through_sql_match_phonenumbers(values, region) -> None:
    got = through_sql("phone", values, region)
    for value in values:
        assert got[value] == normalise_phone(value, region), (value, region)


def test_only_spaces_and_tabs_are_trimmed_from_a_phone() -> None:
    # SPEC §3: spaces and tabs around an address are trimmed; nothing else is, and without a region a
    # number must start with +.
    assert normalise_phone(" \t+8613800138000\t ", None) == "+8613800138000"
    assert normalise_phone("\n+8613800138000", None) is None
    assert normalise_phone("X+8613800138000", None) is None
    assert normalise_phone("13800138000", None) is None  # national format needs a region
    assert normalise_phone("13800138000", "CN") == "+8613800138000"
    assert normalise_phone(" \t", "CN") is None


def test_only_spaces_and_tabs_are_trimmed_from_an_email() -> None:
    assert normalise_email(" \tXavier@Example.comX\t ") == "Xavier@Example.comX"
    assert normalise_email("\nXavier@example.com") is None  # a line break is never trimmed: it is refused
