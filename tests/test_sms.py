"""SMS encoding and segments against every public Twilio vector (tests/reference-data)."""

from __future__ import annotations

import json

import pytest

from dmops.sms import measure, non_gsm_characters
from tests.conftest import REFERENCE

VECTORS = json.loads((REFERENCE / "sms_segments_twilio.json").read_text(encoding="utf-8"))["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_twilio_vector(vector: dict) -> None:
    text = vector["text"]
    size = measure(text)
    checked = 0
    if "encoding" in vector:
        assert size.encoding == {"GSM-7": "gsm7", "UCS-2": "ucs2"}[vector["encoding"]]
        checked += 1
    if "segments" in vector:
        assert size.segments == vector["segments"]
        checked += 1
    if "gsm7_septets" in vector:
        assert size.units == vector["gsm7_septets"]
        checked += 1
    if "utf16_code_units" in vector:
        assert len(text.encode("utf-16-le")) // 2 == vector["utf16_code_units"]
        if size.encoding == "ucs2":
            assert size.units == vector["utf16_code_units"]
        checked += 1
    if "unicode_scalars" in vector:
        assert len(text) == vector["unicode_scalars"]
        checked += 1
    if "non_gsm_characters" in vector:
        assert non_gsm_characters(text) == vector["non_gsm_characters"]
        checked += 1
    if "message_size_bits" in vector and size.encoding == "gsm7":
        assert size.units * 7 == vector["message_size_bits"]
    # characters_graphemes (user-perceived characters) is not something dmops reports
    assert checked or set(vector) <= {"source", "name", "text", "characters_graphemes"}


def test_one_emoji_turns_a_message_ucs2_and_triples_the_cost() -> None:
    text = "Flash sale today only: 50% off everything in store and online, while stocks last! Reply STOP to opt out"
    assert measure(text).encoding == "gsm7" and measure(text).segments == 1
    assert measure(text + " 🎉").encoding == "ucs2" and measure(text + " 🎉").segments == 2


def test_chinese_is_ucs2_and_empty_is_one_segment() -> None:
    assert measure("【好物商城】双12限时闪购，回复TD退订") == measure("【好物商城】双12限时闪购，回复TD退订")
    assert measure("【好物商城】双12限时闪购，回复TD退订").encoding == "ucs2"
    assert measure("").segments == 1


def test_escape_pair_is_never_split_across_parts() -> None:
    assert measure("a" * 152 + "€" + "a" * 10).segments == 2  # the pair moves whole to part 2
    assert measure("a" * 152 + "€" + "a" * 152).segments == 3
