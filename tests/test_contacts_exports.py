"""Real exports: a consent column that is not in the file, padded ids, and the file's own line numbers (SPEC §3)."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.planning import run_cli as run
from tests.planning import write
from tests.test_send import EMAIL

WS = "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\nconsent: {email: email_opt_in}\n"
CONTACTS = "contact_id,email,Email Opt In,tier\nC1,a@example.com,yes,gold\nC2,b@example.com,yes,gold\n"


@pytest.mark.parametrize(
    "args",
    [("validate",), ("plan", "promo", "--at", "2026-11-30T12:00"), ("plan", "promo", "--explain", "C1")],
)
def test_a_consent_column_missing_from_the_file_is_a_config_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """It used to read as "no consent" for everyone: validate said ok and plan excluded 100% (explain crashed)."""
    contacts = "contact_id,email,Email Opt In,tier\nC1,a@example.com,yes,gold\nC2,b@example.com,yes,gold\n"
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, *args)
    assert code == 78, output
    assert (
        "dmops.yaml:4, key 'consent.email': consent column 'email_opt_in' is not a column of contacts.csv "
        "(closest headers: Email Opt In, email)"
    ) in output


def test_ids_with_spaces_around_them_are_the_same_contact(tmp_path: Path) -> None:
    contacts = "contact_id,email,email_opt_in\n C00052 ,a@example.com,yes\nC00052,b@example.com,yes\n"
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, "validate")
    assert code == 65
    assert "contacts.csv:3, key 'contact_id': duplicate contact_id 'C0**52' (lines 2 and 3)" in output


def test_a_padded_id_is_planned_and_sent_trimmed(tmp_path: Path) -> None:
    contacts = "contact_id,email,email_opt_in,tier\n  C7  ,a@example.com,yes,gold\n"
    root = write(
        tmp_path / "ws",
        {"dmops.yaml": WS, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL.replace("holdout: 0.2\n", "")},
    )
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    assert (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1].startswith("C7,send,")


@pytest.mark.parametrize(
    ("contacts", "lines"),
    [
        (
            "contact_id,email,email_opt_in\nc1,a@example.com,yes\n\nc2,b@example.com,yes\nc1,c@example.com,yes\n",
            "2 and 5",
        ),
        (
            'contact_id,email,email_opt_in\nc1,a@example.com,yes\nc2,"two\nlines",yes\n\n\nc1,c@example.com,yes\n',
            "2 and 7",
        ),
        (
            "contact_id,email,email_opt_in\nc1,a@example.com,yes\nc2,b@example.com,yes\nc1,c@example.com,yes\n",
            "2 and 4",
        ),
    ],
)
def test_lines_are_the_files_own_after_blank_lines_and_quoted_breaks(tmp_path: Path, contacts: str, lines: str) -> None:
    root = write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": contacts})
    code, output = run(root, "validate")
    assert code == 65
    assert f"contacts.csv:{lines[-1]}, key 'contact_id': duplicate contact_id 'c*' (lines {lines})" in output


CONSENT_WS = (
    "version: 1\ntimezone: Asia/Shanghai\ncontacts: contacts.csv\n"
    'consent:\n  email: {column: "Accepts Email Marketing", true_values: ["yes", 是, subscribed]}\n'
)
CONSENT_CONTACTS = (
    "contact_id,email,Accepts Email Marketing,tier\n"
    "c1,a@example.com,是,gold\nc2,b@example.com, Subscribed ,gold\nc3,c@example.com,否,gold\n"
    "c4,d@example.com,true,gold\nc5,e@example.com,YES,gold\n"
)


def test_consent_with_its_own_true_values(tmp_path: Path) -> None:
    """A consent column holding 是/否 or subscribed read as no consent for everyone, silently."""
    campaign = EMAIL.replace("holdout: 0.2\n", "")
    root = write(
        tmp_path / "ws", {"dmops.yaml": CONSENT_WS, "contacts.csv": CONSENT_CONTACTS, "campaigns/promo.yaml": campaign}
    )
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    decisions = dict(line.split(",")[:2] for line in (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1:])
    assert decisions == {"c1": "send", "c2": "send", "c3": "excluded", "c4": "excluded", "c5": "send"}
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--explain", "c3")
    assert code == 0 and "Accepts Email Marketing = '否'" in output


def test_true_values_cannot_be_empty(tmp_path: Path) -> None:
    ws = CONSENT_WS.replace('true_values: ["yes", 是, subscribed]', "true_values: []")
    root = write(tmp_path / "ws", {"dmops.yaml": ws, "contacts.csv": CONSENT_CONTACTS, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, "validate")
    assert code == 78
    assert "dmops.yaml:5, key 'consent.email.true_values'" in output


# --- five exports of the same people, read through mappings ------------------------------------------------

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "exports"

PEOPLE_CAMPAIGN = """\
id: promo
name: Promo
channel: email
sender: {from: "Shop <news@shop.example.com>"}
unsubscribe_url: "https://shop.example.com/u/{{ unsubscribe_token }}"
audience: {where: "total_spent >= 100"}
send_at: "2026-12-01 10:00"
holdout: 0.2
variants:
  - {id: a, subject: "Hi {{ first_name }}", text: "Hello {{ first_name }}"}
  - {id: b, subject: "For you, {{ first_name }}", text: "Hello {{ first_name }}"}
"""

HEAD = "version: 1\ntimezone: Asia/Shanghai\nphone_region: CN\n"

EXPORTS = {
    "mailchimp": (
        "mailchimp_audience.csv",
        HEAD
        + """contacts:
  path: mailchimp_audience.csv
  columns: {contact_id: LEID, email: Email Address, first_name: First Name, phone: Phone Number,
            total_spent: Total Spent}
consent:
  email: {column: "Marketing Permissions: Email", true_values: [y]}
""",
    ),
    "shopify": (
        "shopify_customers.csv",
        HEAD
        + """contacts:
  path: shopify_customers.csv
  columns: {contact_id: Customer ID, email: Email, first_name: First Name, phone: Phone, total_spent: Total Spent}
consent: {email: Accepts Email Marketing, sms: Accepts SMS Marketing}
""",
    ),
    "gb18030": (
        "crm_export_gb18030.csv",
        HEAD
        + """contacts:
  path: crm_export_gb18030.csv
  columns: {contact_id: 客户ID, email: 邮箱, first_name: 姓名, phone: 手机号, total_spent: 累计消费}
consent:
  email: {column: 邮件订阅, true_values: [是]}
""",
    ),
}


def _bom_csv(root: Path) -> None:
    rows = ["contact_id,email,phone,first_name,email_opt_in,total_spent"]
    for line in (SAMPLES / "shopify_customers.csv").read_text(encoding="utf-8").splitlines()[1:]:
        cid, first, _, email, consent, *_, phone, _, spent = next(csv.reader([line]))[:11]
        rows.append(",".join([cid, email, phone, first, consent, spent]))
    (root / "contacts.csv").write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(rows) + "\r\n").encode("utf-8"))


def _xlsx(root: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "客户"
    lines = (SAMPLES / "crm_export_gb18030.csv").read_bytes().decode("gb18030").splitlines()
    sheet.append(next(csv.reader([lines[0]])))
    for line in lines[1:]:
        cid, name, phone, email, consent, spent, tier, joined = next(csv.reader([line]))
        sheet.append(
            [
                int(cid),
                name,
                int(phone) if phone.isdigit() else phone,
                email,
                consent,
                float(spent),
                tier,
                date.fromisoformat(joined),
            ]
        )
    sheet.append([])  # Excel's used range often ends in empty rows
    book.create_sheet("说明")
    book.save(root / "客户导出.xlsx")


def _workspace(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / kind
    write(root, {"campaigns/promo.yaml": PEOPLE_CAMPAIGN})
    if kind in EXPORTS:
        name, config = EXPORTS[kind]
        (root / name).write_bytes((SAMPLES / name).read_bytes())
        write(root, {"dmops.yaml": config})
    elif kind == "utf8-bom":
        _bom_csv(root)
        write(root, {"dmops.yaml": HEAD + "contacts: contacts.csv\nconsent: {email: email_opt_in}\n"})
    else:
        _xlsx(root)
        config = EXPORTS["gb18030"][1].replace("crm_export_gb18030.csv", "客户导出.xlsx")
        write(root, {"dmops.yaml": config.replace("  columns:", "  sheet: 客户\n  columns:")})
    return root


def test_five_exports_of_the_same_people_plan_the_same_decisions(tmp_path: Path) -> None:
    plans = {}
    for kind in ("mailchimp", "shopify", "gb18030", "utf8-bom", "xlsx"):
        root = _workspace(tmp_path, kind)
        code, output = run(root, "validate")
        assert code == 0, (kind, output)
        code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(tmp_path / f"{kind}.csv"))
        assert code == 0, (kind, output)
        plans[kind] = (tmp_path / f"{kind}.csv").read_text(encoding="utf-8")
    assert len(set(plans.values())) == 1, plans
    decided = {row[0]: row[1:3] for row in csv.reader(plans["shopify"].splitlines()[1:])}
    assert decided["1003"] == ["excluded", "no_consent"]
    assert decided["1005"] == ["excluded", "invalid_address"]
    assert "1002" not in decided  # 85.50 spent: outside the audience
    assert sorted(decided) == ["1001", "1003", "1004", "1005", "1006"]


@pytest.mark.parametrize(("kind", "encoding"), [("gb18030", "GB18030 detected"), ("utf8-bom", "UTF-8 detected")])
def test_validate_says_which_encoding_it_read(tmp_path: Path, kind: str, encoding: str) -> None:
    code, output = run(_workspace(tmp_path, kind), "validate")
    assert code == 0 and "contacts: 6 rows, " in output and f", {encoding})" in output


def test_a_mapped_column_missing_from_the_file_is_a_config_error_naming_the_closest(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "shopify")
    config = (root / "dmops.yaml").read_text(encoding="utf-8").replace("email: Email,", "email: E-mail,")
    write(root, {"dmops.yaml": config})
    for args in (("validate",), ("plan", "promo", "--at", "2026-11-30T12:00")):
        code, output = run(root, *args)
        assert code == 78, output
        assert (
            "dmops.yaml:6, key 'contacts.columns.email': 'E-mail' is not a column of shopify_customers.csv"
            " (closest headers: Email"
        ) in output


def test_a_mapping_onto_a_name_the_file_already_has_is_refused(tmp_path: Path) -> None:
    contacts = "id,email,Work Email,email_opt_in\nc1,a@example.com,b@example.com,yes\n"
    config = "contacts:\n  path: contacts.csv\n  columns: {contact_id: id, email: Work Email}\nconsent: {email: email_opt_in}\n"
    root = write(tmp_path, {"dmops.yaml": HEAD + config, "contacts.csv": contacts, "campaigns/promo.yaml": EMAIL})
    code, output = run(root, "validate")
    assert code == 78
    assert (
        "key 'contacts.columns.email': the file already has a column 'email', so 'Work Email' cannot also be email"
        in output
    )


def test_mapped_names_may_swap_with_headers(tmp_path: Path) -> None:
    contacts = "contact_id,email,first_name,email_opt_in\nc1,a@example.com,Li,yes\n"
    config = "contacts:\n  path: contacts.csv\n  columns: {first_name: contact_id, contact_id: first_name}\n"
    root = write(tmp_path, {"dmops.yaml": HEAD + config + "consent: {email: email_opt_in}\n", "contacts.csv": contacts})
    write(root, {"campaigns/promo.yaml": EMAIL.replace("holdout: 0.2\n", "")})
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    assert (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1].startswith("Li,send,")


def test_the_spec_example_true_values_read_as_text(tmp_path: Path) -> None:
    contacts = "contact_id,email,Accepts Email Marketing\nc1,a@example.com,Subscribed\nc2,b@example.com,是\nc3,c@example.com,no\n"
    config = (
        "contacts: contacts.csv\n"
        'consent:\n  email: {column: "Accepts Email Marketing", true_values: [yes, 是, subscribed]}\n'
    )
    root = write(tmp_path, {"dmops.yaml": HEAD + config, "contacts.csv": contacts})
    write(root, {"campaigns/promo.yaml": EMAIL.replace("holdout: 0.2\n", "")})
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    rows = [line.split(",")[:3] for line in (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1:]]
    assert rows == [["c1", "send", ""], ["c2", "send", ""], ["c3", "excluded", "no_consent"]]


@pytest.mark.parametrize(
    "body",
    [
        b"contact_id,email,email_opt_in,first_name,tier\r\nc1,a@example.com,yes,A,gold\nc2,b@example.com,yes,B,gold\r\n"
        b"\r\nc1,c@example.com,yes,C,gold\n",
        b"contact_id,email,email_opt_in,first_name,tier\rc1,a@example.com,yes,A,gold\rc2,b@example.com,yes,B,gold\r"
        b"\rc1,c@example.com,yes,C,gold\r",
    ],
    ids=["crlf-and-lf", "cr-only"],
)
def test_any_line_endings_read_with_the_files_own_line_numbers(tmp_path: Path, body: bytes) -> None:
    root = write(tmp_path, {"dmops.yaml": WS, "campaigns/promo.yaml": EMAIL})
    (root / "contacts.csv").write_bytes(body)
    code, output = run(root, "validate")
    assert code == 65, output
    assert "contacts.csv:5, key 'contact_id': duplicate contact_id 'c*' (lines 2 and 5)" in output
    (root / "contacts.csv").write_bytes(body.replace(b"c1,c@", b"c3,c@"))
    code, output = run(root, "validate")
    assert code == 0 and "contacts: 3 rows" in output, output


def test_a_file_in_neither_encoding_names_the_line(tmp_path: Path) -> None:
    body = b"contact_id,email,email_opt_in\nc1,a@example.com,yes\nc2,b@example.com,yes\n" + b"c3,\xff\xfe@x,yes\n"
    root = write(tmp_path, {"dmops.yaml": WS, "campaigns/promo.yaml": EMAIL})
    (root / "contacts.csv").write_bytes(body)
    code, output = run(root, "validate")
    assert code == 65
    assert "contacts.csv:4: not valid UTF-8 or GB18030 (set contacts.encoding to the file's encoding" in output
    write(root, {"dmops.yaml": WS.replace("contacts: contacts.csv", "contacts: {path: contacts.csv, encoding: utf-8}")})
    code, output = run(root, "validate")
    assert code == 65
    assert "contacts.csv:4: not valid UTF-8" in output


def test_an_explicit_encoding_is_used_as_given(tmp_path: Path) -> None:
    body = "contact_id,email,名字,email_opt_in\nc1,a@example.com,李偉,yes\n".encode("big5")
    config = "contacts: {path: contacts.csv, encoding: big5}\nconsent: {email: email_opt_in}\n"
    root = write(tmp_path, {"dmops.yaml": HEAD + config})
    (root / "contacts.csv").write_bytes(body)
    code, output = run(root, "validate", "--format", "json")
    assert code == 0, output
    assert '"encoding": "big5"' in output and '"名字": "VARCHAR"' in output
    write(root, {"dmops.yaml": HEAD + config.replace("big5", "klingon")})
    code, output = run(root, "validate")
    assert code == 78 and "key 'contacts.encoding': unknown encoding 'klingon'" in output


def test_a_sheet_that_is_not_there_names_the_sheets(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "xlsx")
    write(
        root, {"dmops.yaml": (root / "dmops.yaml").read_text(encoding="utf-8").replace("sheet: 客户", "sheet: Sheet1")}
    )
    code, output = run(root, "validate")
    assert code == 78
    assert "key 'contacts.sheet': 客户导出.xlsx has no sheet named 'Sheet1' (its sheets: 客户, 说明)" in output


def test_xlsx_rows_are_named_by_the_sheets_row_numbers(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    for row in (
        ["contact_id", "email", "email_opt_in"],
        ["c1", "a@example.com", "yes"],
        [],
        ["c2", "b@example.com"],
        ["c1", "c@example.com", "yes"],
    ):
        sheet.append(row)
    root = write(tmp_path, {"dmops.yaml": WS.replace("contacts.csv", "people.xlsx"), "campaigns/promo.yaml": EMAIL})
    book.save(root / "people.xlsx")
    code, output = run(root, "validate")
    assert code == 65
    assert "people.xlsx:5, key 'contact_id': duplicate contact_id 'c*' (rows 2 and 5)" in output
    sheet["E6"] = "stray"
    sheet["A6"] = "c9"
    book.save(root / "people.xlsx")
    code, output = run(root, "validate")
    assert code == 65 and "people.xlsx:6, key 'column 5': a value in column 5, which has no header" in output


def test_headers_that_are_not_identifiers_are_reachable_in_expressions(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "shopify")
    campaign = PEOPLE_CAMPAIGN.replace('where: "total_spent >= 100"', """where: '"Total Orders" >= 5'""")
    write(root, {"campaigns/promo.yaml": campaign})
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    assert [r.split(",")[0] for r in (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1:]] == [
        "1001",
        "1003",
        "1006",
    ]


# --- one person, one message: duplicate_address and address-aware already_sent (SPEC §6) ---------------------

MERGED = (
    "contact_id,email,email_opt_in,first_name,tier\n"
    "B7,li@example.com,yes,Li,gold\n"
    "A1, LI@Example.com ,no,Li,gold\n"  # the lowest id, but no consent: the next one keeps the address
    "C3,Li@example.com,yes,Li,gold\n"
    "D4,other@example.com,yes,Other,gold\n"
)


def _merged(tmp_path: Path, purpose: str = "marketing") -> Path:
    campaign = EMAIL.replace("holdout: 0.2\n", "") + (f"purpose: {purpose}\n" if purpose != "marketing" else "")
    return write(tmp_path / "ws", {"dmops.yaml": WS, "contacts.csv": MERGED, "campaigns/promo.yaml": campaign})


def _decisions(root: Path) -> list[list[str]]:
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    return [line.split(",")[:3] for line in (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1:]]


def test_contacts_sharing_an_address_get_one_message_the_lowest_passing_id_keeps_it(tmp_path: Path) -> None:
    root = _merged(tmp_path)
    assert _decisions(root) == [
        ["A1", "excluded", "no_consent"],
        ["B7", "send", ""],
        ["C3", "excluded", "duplicate_address"],
        ["D4", "send", ""],
    ]
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--format", "json")
    assert json.loads(output)["excluded"]["duplicate_address"] == 1
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--explain", "C3")
    assert code == 0
    assert re.search(r"3 duplicate_address\s+EXCLUDED\s+same email address as contact B\*, which keeps", output), output
    code, output = run(root, "plan", "promo", "--at", "2026-11-30T12:00", "--explain", "B7")
    assert re.search(r"3 duplicate_address\s+pass\s+2 other audience contact\(s\) share this address", output), output


def test_a_transactional_message_goes_to_the_lowest_id_whatever_its_consent(tmp_path: Path) -> None:
    root = _merged(tmp_path, "transactional")
    assert [row[2] for row in _decisions(root)] == ["", "duplicate_address", "duplicate_address", ""]


def test_a_rekeyed_list_sends_nothing_new(tmp_path: Path) -> None:
    root = _merged(tmp_path)
    code, output = run(root, "send", "promo", "--at", "2026-11-30T12:00")
    assert code == 0, output
    rekeyed = MERGED.replace("B7,", "CRM-0007,").replace("D4,", "CRM-0004,").replace("C3,", "CRM-0003,")
    write(root, {"contacts.csv": rekeyed})
    assert _decisions(root) == [
        ["A1", "excluded", "no_consent"],
        ["CRM-0003", "excluded", "already_sent"],  # kept the shared address, which B7 was sent to
        ["CRM-0004", "excluded", "already_sent"],
        ["CRM-0007", "excluded", "duplicate_address"],
    ]
    code, output = run(root, "send", "promo", "--at", "2026-11-30T12:00")
    assert (code == 0 and "0 message" in output) or "nothing" in output, output


def test_validate_counts_contacts_sharing_an_address(tmp_path: Path) -> None:
    code, output = run(_merged(tmp_path), "validate")
    assert code == 0, output
    assert "sharing an address with a contact of a smaller id (one message per address): email 2" in output
    code, output = run(_merged(tmp_path), "validate", "--format", "json")
    assert json.loads(output)["contacts"]["quality"]["email_shared_with_another_contact"] == 2


def test_the_ledger_keeps_the_hash_of_each_messages_address(tmp_path: Path) -> None:
    import hashlib

    import duckdb

    root = _merged(tmp_path)
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    with duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT contact_id, address_sha256 FROM entries ORDER BY contact_id").fetchall()
    assert rows == [
        ("B7", hashlib.sha256(b"li@example.com").hexdigest()),
        ("D4", hashlib.sha256(b"other@example.com").hexdigest()),
    ]


def test_a_ledger_written_before_addresses_were_kept_still_plans_and_is_upgraded_by_a_send(tmp_path: Path) -> None:
    import duckdb

    root = _merged(tmp_path)
    from dmops import ledger
    from dmops.workspace import load_workspace

    ledger.open_for_writing(load_workspace(root)).close()
    with duckdb.connect(str(root / ".dmops" / "ledger.duckdb")) as con:  # back to schema version 1
        con.execute("ALTER TABLE entries DROP COLUMN address_sha256")
        con.execute("UPDATE meta SET value = '1'")
        con.execute(
            "INSERT INTO entries VALUES ('promo', 'once', 'D4', 'message', 'email', 'marketing', 'a',"
            " '2026-12-01 02:00:00', 'x', NULL, NULL)"
        )
    assert [row[2] for row in _decisions(root)] == ["no_consent", "", "duplicate_address", "already_sent"]
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    with duckdb.connect(str(root / ".dmops" / "ledger.duckdb"), read_only=True) as con:
        assert con.execute("SELECT value FROM meta").fetchall() == [(ledger.SCHEMA_VERSION,)]
        assert con.execute("SELECT contact_id, address_sha256 IS NULL FROM entries ORDER BY 1").fetchall() == [
            ("B7", False),
            ("D4", True),
        ]


# --- contacts inspect and init --contacts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mapping", "consent"),
    [
        (
            "mailchimp_audience.csv",
            {"contact_id": "LEID", "email": "Email Address", "phone": "Phone Number", "first_name": "First Name"},
            {"email": {"column": "Marketing Permissions: Email", "true_values": ["y"]}},
        ),
        (
            "shopify_customers.csv",
            {"contact_id": "Customer ID", "email": "Email", "phone": "Phone", "first_name": "First Name"},
            {
                "email": {"column": "Accepts Email Marketing", "true_values": ["yes"]},
                "sms": {"column": "Accepts SMS Marketing", "true_values": ["yes"]},
            },
        ),
        (
            "crm_export_gb18030.csv",
            {"contact_id": "客户ID", "email": "邮箱", "phone": "手机号", "first_name": "姓名"},
            {"email": {"column": "邮件订阅", "true_values": ["是"]}},
        ),
    ],
)
def test_inspect_guesses_the_mapping_of_each_sample_export(
    tmp_path: Path, name: str, mapping: dict, consent: dict
) -> None:
    code, output = run(tmp_path, "contacts", "inspect", str(SAMPLES / name), "--format", "json")
    assert code == 0, output
    found = json.loads(output)
    assert (found["rows"], found["mapping"], found["consent"]) == (6, mapping, consent)
    assert found["encoding"] == ("gb18030" if "gb18030" in name else "utf-8")
    assert "@" not in output.replace(found["yaml"], "")  # counts and headers only: no address is printed


def test_inspect_prints_the_yaml_to_paste(tmp_path: Path) -> None:
    code, output = run(tmp_path, "contacts", "inspect", str(SAMPLES / "crm_export_gb18030.csv"))
    assert code == 0, output
    assert "crm_export_gb18030.csv: 6 rows, 8 columns, GB18030 detected" in output
    assert re.search(r"邮件订阅\s+6\s+2\s+0\s+0\s+consent.email", output)
    assert re.search(r"注册日期\s+6\s+6\s+0\s+0\s*\n", output)  # dates are not phone numbers
    pasted = output.split("paste into dmops.yaml (and check it):\n", 1)[1]
    assert "  encoding: gb18030\n  columns:\n    contact_id: 客户ID\n" in pasted


def test_init_writes_a_workspace_around_a_real_export_that_validates_and_plans(tmp_path: Path) -> None:
    target = tmp_path / "shop"
    code, output = run(tmp_path, "init", str(target), "--contacts", str(SAMPLES / "crm_export_gb18030.csv"))
    assert code == 0, output
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "campaigns/first-campaign.yaml",
        "data/crm_export_gb18030.csv",
        "dmops.yaml",
    ]
    config = (target / "dmops.yaml").read_text(encoding="utf-8")
    assert "timezone: Asia/Shanghai\nphone_region: CN\n" in config and "contact_id: 客户ID" in config
    code, output = run(target, "validate")
    assert code == 0 and "(crm_export_gb18030.csv, GB18030)" in output, output
    code, output = run(target, "plan", "first-campaign", "--at", "2026-12-01T10:00", "--format", "json")
    assert code == 0, output
    assert json.loads(output)["to_send"] == 4  # 1003 gave no consent, 1005 has no valid email
    code, output = run(tmp_path, "init", str(target), "--contacts", str(SAMPLES / "crm_export_gb18030.csv"))
    assert code == 73 and "3 file(s) already exist" in output


# --- any header in templates: contact["Total Spent"], and names that are not columns -------------------------


def _shopify_campaign(tmp_path: Path, text: str) -> Path:
    root = _workspace(tmp_path, "shopify")
    campaign = PEOPLE_CAMPAIGN.replace('text: "Hello {{ first_name }}"}', f"text: {json.dumps(text)}}}", 1)
    write(root, {"campaigns/promo.yaml": campaign.replace("holdout: 0.2\n", "")})
    return root


def test_a_header_with_a_space_is_printed_through_contact(tmp_path: Path) -> None:
    from dmops.campaign import load_campaign
    from dmops.outbox import MESSAGES
    from dmops.send import send
    from dmops.workspace import load_workspace

    text = (  # Total Spent is mapped to total_spent; Total Orders and Tags keep their headers
        'You spent {{ contact["total_spent"] }} over {{ contact["Total Orders"] }} orders'
        '{% if contact["Tags"] %} ({{ contact["Tags"] }}){% endif %}'
    )
    outputs = []
    for engine in ("jinja", "sql"):
        root = _shopify_campaign(tmp_path / engine, text)
        (root / ".dmops").mkdir()
        (root / ".dmops" / "secret.key").write_bytes(b"s" * 32)  # one secret: the same unsubscribe tokens
        assert run(root, "validate")[0] == 0
        ws = load_workspace(root)
        result = send(
            ws, load_campaign(root / "campaigns/promo.yaml", ws), datetime(2026, 11, 30, 4, tzinfo=UTC), engine=engine
        )
        assert result.folder is not None
        outputs.append((result.folder / MESSAGES).read_bytes())
    assert outputs[0] == outputs[1]
    texts = {m["contact_id"]: m["text"] for m in map(json.loads, outputs[0].splitlines()) if m["variant"] == "a"}
    assert texts["1001"] == "You spent 1299.0 over 7 orders (vip)"


def test_a_name_that_is_not_a_column_gets_a_did_you_mean_in_validate_and_lint(tmp_path: Path) -> None:
    root = _shopify_campaign(tmp_path, "Hi {{ total_orders }}, {{ Note | default('') }}, {{ zzz }}")
    code, output = run(root, "validate")
    assert code == 78
    assert (
        "key 'variants[0].text': template variable 'total_orders' is not a contact column"
        ' (did you mean contact["Total Orders"]?)'
    ) in output
    assert "'Note'" not in output  # names are matched case-insensitively, as the SQL of expressions does
    assert "template variable 'zzz' is not a contact column (use a column of the contacts file" in output
    code, output = run(root, "lint", "promo", "--format", "json")
    assert code == 1
    findings = [f for f in json.loads(output)["findings"] if f["rule"] == "template.variable"]
    assert {(f["variant"], f["message"], f["hint"]) for f in findings} == {
        ("a", "template variable 'total_orders' is not a contact column", 'did you mean contact["Total Orders"]?'),
        (
            "a",
            "template variable 'zzz' is not a contact column",
            "use a column of the contacts file, or a built-in: campaign, contact, unsubscribe_token, unsubscribe_url, variant",
        ),
    }


def test_a_header_written_as_text_is_flagged(tmp_path: Path) -> None:
    root = _shopify_campaign(tmp_path, 'You placed {{ "Total Orders" }} orders')
    code, output = run(root, "validate")
    assert code == 78
    assert (
        "'Total Orders' is printed as text, not the contact's Total Orders"
        ' (write {{ contact["Total Orders"] }} to print the column)'
    ) in output
    code, output = run(root, "lint", "promo")
    assert code == 1 and "'Total Orders' is printed as text" in output


def test_send_refuses_a_template_reading_a_name_no_column_has(tmp_path: Path) -> None:
    root = _shopify_campaign(tmp_path, "Hi {{ frist_name | default('there') }}")
    for args in (("send", "promo", "--at", "2026-11-30T12:00"), ("send", "promo", "--skip-lint")):
        code, output = run(root, *args)
        assert code == 78, output
        assert "template variable 'frist_name' is not a contact column (did you mean first_name?)" in output
    assert not (root / "outbox").exists()


def test_the_report_shows_who_the_latest_send_left_out_and_why(tmp_path: Path) -> None:
    root = _merged(tmp_path)
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00", "--limit", "1")[0] == 0
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0  # the latest send's funnel counts
    code, output = run(root, "report", "promo", "--format", "json")
    assert code == 0, output
    assert json.loads(output)["campaigns"][0]["decisions"] == {
        "no_consent": 1,
        "duplicate_address": 1,
        "already_sent": 1,
        "send": 1,
    }
    expected = (
        "at the latest send, of 4 audience contacts: 1 sent or left for a later run; left out: no_consent 1,"
        " duplicate_address 1, already_sent 1"
    )
    assert expected in run(root, "report", "promo")[1]
    assert expected[0].upper() + expected[1:] + "." in run(root, "report", "promo", "--format", "md")[1]
    code, output = run(root, "report", "promo", "--format", "html", "--out", str(root / "r.html"))
    page = (root / "r.html").read_text(encoding="utf-8")
    assert "<h3>Audience at the latest send</h3>" in page and "<td>duplicate_address</td><td>1</td>" in page


def test_an_sms_goes_once_to_a_phone_written_two_ways(tmp_path: Path) -> None:
    contacts = (
        "contact_id,phone,sms_opt_in\n"
        "p2,+86 138 0013 8000,yes\n"
        "p1,13800138000,yes\n"  # the same number in national form (phone_region CN): the lowest id keeps it
        "p3,+8613900139000,yes\n"
    )
    sms = 'id: texts\nname: T\nchannel: sms\nsend_at: "2026-12-01 10:00"\nvariants:\n  - {id: a, text: "Hi. Reply STOP to opt out"}\n'
    root = write(
        tmp_path,
        {"dmops.yaml": HEAD + "contacts: contacts.csv\nconsent: {sms: sms_opt_in}\n", "contacts.csv": contacts},
    )
    write(root, {"campaigns/texts.yaml": sms})
    code, output = run(root, "plan", "texts", "--at", "2026-11-30T12:00", "--out", str(root / "plan.csv"))
    assert code == 0, output
    rows = [line.split(",")[:3] for line in (root / "plan.csv").read_text(encoding="utf-8").splitlines()[1:]]
    assert rows == [["p1", "send", ""], ["p2", "excluded", "duplicate_address"], ["p3", "send", ""]]


def test_explain_says_who_shares_an_address_and_who_does_not(tmp_path: Path) -> None:
    root = _merged(tmp_path)
    write(root, {"contacts.csv": MERGED + "E5,not-an-email,yes,E,gold\n"})
    at = ("plan", "promo", "--at", "2026-11-30T12:00", "--explain")
    assert re.search(
        r"3 duplicate_address\s+pass\s+no other audience contact has this address", run(root, *at, "D4")[1]
    )
    assert re.search(r"3 duplicate_address\s+not reached \(pass\)\s+no valid address to share", run(root, *at, "E5")[1])
    shown = run(root, "--show-pii", *at, "C3")[1]  # asked for: the keeping contact's id unmasked
    assert re.search(r"3 duplicate_address\s+EXCLUDED\s+same email address as contact B7, which keeps", shown)


def test_the_reports_decisions_come_in_funnel_order_per_occurrence(tmp_path: Path) -> None:
    root = _merged(tmp_path)
    assert run(root, "send", "promo", "--at", "2026-11-30T12:00")[0] == 0
    for extra in ((), ("--occurrence", "once")):
        code, output = run(root, "report", "promo", "--format", "json", *extra)
        assert code == 0, output
        assert list(json.loads(output)["campaigns"][0]["decisions"].items()) == [
            ("no_consent", 1),
            ("duplicate_address", 1),
            ("send", 2),
        ]
    code, output = run(root, "report", "promo", "--format", "json", "--occurrence", "2026-12-01")
    assert json.loads(output)["campaigns"][0]["decisions"] == {}  # no send of that occurrence
