"""Masking of personal data for messages and logs (shown whole only with ``--show-pii``)."""

from __future__ import annotations


def mask_email(value: str) -> str:
    """``li.lei@qq.com`` -> ``l***@qq.com``."""
    local, at, domain = value.strip().rpartition("@")
    if not at:
        return mask_text(value)
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    """``+8613800138000`` -> ``+86*******8000``: the first three and last four characters stay."""
    text = value.strip()
    if len(text) <= 7:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 7) + text[-4:]


def mask_text(value: str) -> str:
    """Any other personal value: its first character, then asterisks."""
    text = value.strip()
    return (text[:1] + "***") if text else ""


def mask_id(value: str) -> str:
    """A contact id: the first two and last two characters stay."""
    if len(value) <= 4:
        return value[:1] + "*" * (len(value) - 1)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def mask(value: str, kind: str, show_pii: bool = False) -> str:
    """Mask ``value`` as its kind (``email``, ``phone``, ``id``, other) unless ``show_pii``."""
    if show_pii:
        return value
    if kind == "email":
        return mask_email(value)
    if kind == "phone":
        return mask_phone(value)
    if kind == "id":
        return mask_id(value)
    return mask_text(value)
