"""How long a text is as an SMS: GSM-7 (160 characters in one message) or UCS-2 (70).

A text made only of the GSM 03.38 alphabet is sent in GSM-7: 160 characters per message, the
characters of its extension table (`^ { } \\ [ ~ ] |` and `€`) counting twice. A single other
character (`ç`, `ê`, `’`, `«`, an emoji) sends the whole text in UCS-2: 70 UTF-16 units.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The GSM 03.38 basic alphabet (the escape character aside).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
#: The extension table: each character takes two (an escape and itself).
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM7_LIMIT = 160
UCS2_LIMIT = 70


@dataclass(frozen=True)
class SmsLength:
    """A text's length as one SMS counts it, the most one message holds in its encoding, and
    the characters that made it UCS-2 (none for GSM-7)."""

    length: int
    limit: int
    outside_gsm7: tuple[str, ...] = ()

    @property
    def encoding(self) -> str:
        return "UCS-2" if self.outside_gsm7 else "GSM-7"

    @property
    def fits(self) -> bool:
        return self.length <= self.limit


def sms_length(text: str) -> SmsLength:
    """How `text` counts as an SMS."""
    outside = tuple(dict.fromkeys(c for c in text
                                  if c not in GSM7_BASIC and c not in GSM7_EXTENSION))
    if outside:
        units = len(text.encode("utf-16-le")) // 2
        return SmsLength(units, UCS2_LIMIT, outside)
    return SmsLength(sum(2 if c in GSM7_EXTENSION else 1 for c in text), GSM7_LIMIT)
