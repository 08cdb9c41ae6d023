"""SMS encoding and segments against every public Twilio vector (tests/reference-data)."""

from __future__ import annotations

import json
import re

import pytest

from dmops.sms import SmsSize, measure, non_gsm_characters
from tests.conftest import REFERENCE

VECTORS = json.loads((REFERENCE / "sms_segments_twilio.json").read_text(encoding="utf-8"))["vectors"]


# Vectors whose published expectations are about the text alone (grapheme and code-point counts, which dmops
# does not report): what dmops must say about them, from SPEC §7 and the GSM 03.38 tables.
FROM_SPEC = {
    # e + three combining acute accents (U+0301, not GSM-7): UCS-2, 4 code units
    "Triple accents characters - Unicode test": ("ucs2", 4, 1),
    "CRLF line breaks": ("gsm7", 11, 1),  # CR and LF are in the GSM-7 basic set: one septet each
    "LF line breaks": ("gsm7", 12, 1),
    "getNonGsmCharacters": ("ucs2", 3, 1),  # á is not GSM-7
}


def vector_id(index: int, name: str) -> str:
    """A test id that survives a command line: the vector's position and the ASCII words of its name."""
    return f"{index:02d}-" + "-".join(re.findall(r"[A-Za-z0-9]+", name))


@pytest.mark.parametrize("vector", VECTORS, ids=[vector_id(i, v["name"]) for i, v in enumerate(VECTORS)])
def test_twilio_vector(vector: dict) -> None:
    text = vector["text"]
    size = measure(text)
    # the vector describes its own text correctly (a check on the file, not on dmops)
    if "unicode_scalars" in vector:
        assert len(text) == vector["unicode_scalars"]
    if "utf16_code_units" in vector:
        assert len(text.encode("utf-16-le")) // 2 == vector["utf16_code_units"]
    checked = 0
    if "encoding" in vector:
        assert size.encoding == {"GSM-7": "gsm7", "UCS-2": "ucs2"}[vector["encoding"]]
        checked += 1
    if "segments" in vector:
        assert size.segments == vector["segments"]
        checked += 1
    if "gsm7_septets" in vector:
        assert size.encoding == "gsm7" and size.units == vector["gsm7_septets"]
        checked += 1
    if "utf16_code_units" in vector and size.encoding == "ucs2":
        assert size.units == vector["utf16_code_units"]
        checked += 1
    if "message_size_bits" in vector and size.encoding == "gsm7":
        assert size.units * 7 == vector["message_size_bits"]
        checked += 1
    if "non_gsm_characters" in vector:
        assert non_gsm_characters(text) == vector["non_gsm_characters"]
        checked += 1
    if vector["name"] in FROM_SPEC:
        assert (size.encoding, size.units, size.segments) == FROM_SPEC[vector["name"]]
        checked += 1
    assert checked, "every vector must check something dmops computes"


def test_every_vector_that_needs_an_expectation_from_spec_has_one() -> None:
    names = {v["name"] for v in VECTORS}
    assert set(FROM_SPEC) <= names


def test_one_emoji_turns_a_message_ucs2_and_triples_the_cost() -> None:
    text = "Flash sale today only: 50% off everything in store and online, while stocks last! Reply STOP to opt out"
    assert measure(text).encoding == "gsm7" and measure(text).segments == 1
    assert measure(text + " 🎉").encoding == "ucs2" and measure(text + " 🎉").segments == 2


def test_chinese_is_ucs2_and_empty_is_one_segment() -> None:
    assert measure("【好物商城】双12限时闪购，回复TD退订") == SmsSize("ucs2", 1, 20)
    assert measure("【好物商城】双12限时闪购，回复TD退订" * 4) == SmsSize("ucs2", 2, 80)  # 67 per part
    assert measure("").segments == 1


def test_escape_pair_is_never_split_across_parts() -> None:
    assert measure("a" * 152 + "€" + "a" * 10).segments == 2  # the pair moves whole to part 2
    assert measure("a" * 152 + "€" + "a" * 152).segments == 3


def test_parts_fill_to_exactly_153_septets_or_67_units() -> None:
    assert measure("a" * 306) == SmsSize("gsm7", 2, 306)  # 2 x 153
    assert measure("a" * 307).segments == 3
    assert measure("á" * 134) == SmsSize("ucs2", 2, 134)  # 2 x 67
    assert measure("á" * 135).segments == 3


def test_only_characters_beyond_the_basic_plane_take_two_units() -> None:
    assert measure("\uffff") == SmsSize("ucs2", 1, 1)  # the last BMP code point: one UTF-16 unit
    assert measure("\U00010000") == SmsSize("ucs2", 1, 2)  # the first astral one: a surrogate pair
