"""``dmops contacts inspect FILE``: what an export holds, and the ``contacts:`` mapping to paste.

The file is read as ``validate`` reads a contact list (encoding detected, any line endings,
.xlsx sheets), then every column is measured in one DuckDB pass: how many values look like an
email, a phone number, a consent flag, and whether the column is unique. Header names are
compared against the names exports use in English and Chinese. Nothing personal is printed:
only headers, counts and, for consent-looking columns, the yes/no words they hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from dmops.db import connect, quote_ident
from dmops.tabular import AUTO, read_source

# Header words, compared case-folded with spaces, dashes and underscores removed.
_ID_WORDS = (
    "contactid",
    "customerid",
    "memberid",
    "userid",
    "clientid",
    "leid",
    "euid",
    "id",
    "客户id",
    "会员id",
    "用户id",
    "客户编号",
    "会员编号",
    "编号",
    "会员卡号",
)
_EMAIL_WORDS = ("email", "emailaddress", "mail", "邮箱", "电子邮件", "电子邮箱", "邮件地址")
_PHONE_WORDS = (
    "phone",
    "phonenumber",
    "mobile",
    "mobilephone",
    "cell",
    "tel",
    "手机",
    "手机号",
    "手机号码",
    "电话",
    "联系电话",
    "移动电话",
)
_NAME_WORDS = ("firstname", "givenname", "name", "fullname", "名", "名字", "姓名", "客户名称", "称呼")
_ZONE_WORDS = ("timezone", "tz", "时区")
_CONSENT_WORDS = ("optin", "consent", "subscri", "accepts", "marketing", "permission", "订阅", "同意", "允许")
_CHANNEL_WORDS = {"email": ("email", "mail", "邮件", "邮箱"), "sms": ("sms", "text", "短信", "手机")}

YES = (
    "yes",
    "y",
    "true",
    "t",
    "1",
    "subscribed",
    "opted in",
    "opt-in",
    "optin",
    "是",
    "同意",
    "已订阅",
    "订阅",
    "允许",
)
NO = (
    "no",
    "n",
    "false",
    "f",
    "0",
    "unsubscribed",
    "opted out",
    "opt-out",
    "optout",
    "否",
    "不同意",
    "未订阅",
    "退订",
    "拒绝",
    "pending",
    "cleaned",
    "",
)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_PHONE = r"^\+?[0-9][0-9 ()\-]{5,22}[0-9]$"


def _folded(header: str) -> str:
    return re.sub(r"[\s_\-:：.]+", "", header.casefold())


@dataclass
class Column:
    """One column of the file as measured."""

    header: str
    filled: int  # non-blank values
    distinct: int
    emails: int
    phones: int
    flags: int  # values that are a yes or no word
    yes_words: list[str] = field(default_factory=list)  # the yes words present, as written (trimmed)


@dataclass
class Inspection:
    """What ``contacts inspect`` found."""

    path: Path
    encoding: str | None
    rows: int
    columns: list[Column]
    mapping: dict[str, str]  # dmops name -> header
    consent: dict[str, dict[str, Any]]  # channel -> {column, true_values}

    def yaml(self, path_text: str) -> str:
        """The ``contacts:`` and ``consent:`` blocks of dmops.yaml for this file."""
        contacts: dict[str, Any] = {"path": path_text}
        if self.encoding not in (None, "utf-8"):
            contacts["encoding"] = self.encoding
        if any(name != header for name, header in self.mapping.items()):
            contacts["columns"] = {name: header for name, header in self.mapping.items() if name != header}
        body: dict[str, Any] = {"contacts": contacts if len(contacts) > 1 else path_text}
        if self.consent:
            body["consent"] = {
                channel: (
                    found["column"]
                    if {v.casefold() for v in found["true_values"]} <= set(_DEFAULT_YES)
                    else {"column": found["column"], "true_values": found["true_values"]}
                )
                for channel, found in self.consent.items()
            }
        return yaml.safe_dump(body, allow_unicode=True, sort_keys=False, default_flow_style=False, width=120)


_DEFAULT_YES = ("true", "t", "1", "yes", "y")


def _measure(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[Column]:
    words = [*YES, *NO]
    parts = []
    for name in names:
        value = f"nullif(trim(CAST({quote_ident(name)} AS VARCHAR)), '')"
        parts.append(
            f"""count({value}), count(DISTINCT {value}),
                count(*) FILTER (WHERE regexp_matches({value}, $email)),
                count(*) FILTER (WHERE regexp_matches({value}, $phone) AND NOT regexp_matches({value}, $date)),
                count(*) FILTER (WHERE lower(coalesce({value}, '')) IN (SELECT unnest($words::VARCHAR[]))),
                list(DISTINCT {value}) FILTER (WHERE lower({value}) IN (SELECT unnest($yes::VARCHAR[])))"""
        )
    row = con.execute(
        "SELECT " + ",\n".join(parts) + " FROM _dm_inspect",
        {"email": _EMAIL, "phone": _PHONE, "date": r"^\d{4}-\d{1,2}-\d{1,2}", "words": words, "yes": list(YES)},
    ).fetchall()[0]
    columns = []
    for index, name in enumerate(names):
        filled, distinct, emails, phones, flags, yes_words = row[index * 6 : index * 6 + 6]
        columns.append(
            Column(name, int(filled), int(distinct), int(emails), int(phones), int(flags), sorted(yes_words or []))
        )
    return columns


def _named(column: Column, words: tuple[str, ...]) -> bool:
    return _folded(column.header) in words


def _mentions(column: Column, words: tuple[str, ...]) -> bool:
    folded = _folded(column.header)
    return any(word in folded for word in words)


def _guess(columns: list[Column], rows: int) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    mapping: dict[str, str] = {}
    taken: set[str] = set()

    def pick(name: str, candidates: list[Column]) -> None:
        for column in candidates:
            if column.header not in taken:
                mapping[name] = column.header
                taken.add(column.header)
                return

    unique = [c for c in columns if rows and c.filled == rows and c.distinct == rows]
    pick(
        "contact_id",
        [c for c in unique if _named(c, _ID_WORDS)]
        + [c for c in unique if _mentions(c, ("id",))]
        + [c for c in unique if c.emails < c.filled],
    )
    half = max(1, rows // 2)
    pick(
        "email",
        sorted(
            (c for c in columns if c.emails >= half and c.emails >= c.filled // 2),
            key=lambda c: (not _mentions(c, _EMAIL_WORDS), -c.emails),
        ),
    )
    pick(
        "phone",
        sorted(
            (c for c in columns if c.phones >= half // 2 and c.phones >= c.filled // 2 and not _named(c, _ID_WORDS)),
            key=lambda c: (not _mentions(c, _PHONE_WORDS), -c.phones),
        ),
    )
    pick("first_name", [c for c in columns if _named(c, _NAME_WORDS)])
    pick("timezone", [c for c in columns if _named(c, _ZONE_WORDS)])
    consent: dict[str, dict[str, Any]] = {}
    flags = [c for c in columns if c.filled and c.flags == rows and c.yes_words and c.header not in taken]
    for column in sorted(flags, key=lambda c: not _mentions(c, _CONSENT_WORDS)):
        channel = next((ch for ch, words in _CHANNEL_WORDS.items() if _mentions(column, words)), None)
        if channel is None and _mentions(column, _CONSENT_WORDS):
            channel = "email"
        if channel is not None and channel not in consent:
            consent[channel] = {"column": column.header, "true_values": column.yes_words}
    return mapping, consent


def inspect_file(path: Path, *, encoding: str = AUTO, sheet: str | None = None) -> Inspection:
    """Read ``path`` and guess its mapping (see the module docs)."""
    con = connect()
    try:
        loaded = read_source(con, path, "_dm_inspect", "contacts", encoding=encoding, sheet=sheet)
        rows = int(con.execute("SELECT count(*) FROM _dm_inspect").fetchall()[0][0])
        columns = _measure(con, loaded.names) if loaded.names else []
    finally:
        con.close()
    mapping, consent = _guess(columns, rows)
    return Inspection(path, loaded.encoding, rows, columns, mapping, consent)
