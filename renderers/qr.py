"""QR codes as inline SVG (the only module that imports `segno`)."""

from __future__ import annotations

import segno

#: The longest payload encoded (a verification code is about 180 characters).
MAX_PAYLOAD_CHARS = 1024


def qr_svg(payload: str, *, scale: int = 3, title: str | None = None) -> str:
    """An `<svg>` element drawing `payload` as a QR code (error correction M, a quiet zone of
    4 modules), to embed in HTML as it is: no XML declaration, no external reference."""
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise ValueError(f"a QR payload is at most {MAX_PAYLOAD_CHARS} characters")
    code = segno.make(payload, error="m", micro=False)
    return str(code.svg_inline(scale=scale, border=4, dark="#000", light="#fff",
                               title=title, svgclass="qr", lineclass=None, omitsize=False))
