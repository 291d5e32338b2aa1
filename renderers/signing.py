"""Signatures of issued documents (Ed25519), and the verification code printed on them.

The only module that imports `cryptography`. A host keeps an Ed25519 private key (a PEM file,
`guichet keys generate`) and publishes its public key; every issued document then carries a
signature over what identifies it and what it says:

    message = "guichet-document-v1\\n" + reference + "\\n" + document id + "\\n"
              + SHA-256 (hex) of the document's content

The content is the document's text as it was issued (rendered at the step and kept in the
case's history), in UTF-8, normalised so that copying it around does not change it: Unicode
NFC, line ends LF, no trailing white space at its end (`content_digest`).

The verification code a person can type (and the QR code's payload) is

    GV1.<reference>.<document id>.<112 base32 characters, in groups of 4>

where the base32 part (RFC 4648 alphabet A-Z 2-7, no padding) holds 70 bytes: the first 4
bytes of the content's SHA-256, the 64-byte signature and a 2-byte check (the first 2 bytes of
the SHA-256 of everything before it in the code). When typed, case, spaces and hyphens in the
base32 part do not matter, and 0, 1 and 8 are read as O, I and B. The check tells a mistyped
code from a forged one; the digest prefix tells an edited document from a bad signature.

`verify(code, content, public_key)` never raises on bad input: it answers a `Verdict`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

VERSION = "GV1"
_DOMAIN = b"guichet-document-v1\n"
_PREFIX_BYTES = 4
_SIGNATURE_BYTES = 64
_CHECK_BYTES = 2
_PAYLOAD_BYTES = _PREFIX_BYTES + _SIGNATURE_BYTES + _CHECK_BYTES  # 70 bytes: 112 characters
_PAYLOAD_CHARS = _PAYLOAD_BYTES * 8 // 5
#: The longest code read (longer input is refused before any work) and the largest content
#: and key file accepted.
MAX_CODE_CHARS = 512
MAX_CONTENT_CHARS = 1_048_576
MAX_KEY_BYTES = 16_384
_REFERENCE = re.compile(r"[A-Z0-9][A-Z0-9-]{0,62}")
_DOCUMENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TYPED = str.maketrans({"0": "O", "1": "I", "8": "B", "-": None, " ": None})


class KeyProblem(ValueError):
    """A key file or text that is not a usable Ed25519 key (the message says why)."""


def content_digest(content: str) -> bytes:
    """The SHA-256 of a document's content as signed: NFC, LF line ends, no trailing white
    space at its end, in UTF-8."""
    text = unicodedata.normalize("NFC", content.replace("\r\n", "\n").replace("\r", "\n"))
    return hashlib.sha256(text.rstrip().encode("utf-8")).digest()


def _message(reference: str, document_id: str, digest: bytes) -> bytes:
    return _DOMAIN + f"{reference}\n{document_id}\n{digest.hex()}".encode()


def _check(head: str, prefix: bytes, signature: bytes) -> bytes:
    return hashlib.sha256(head.encode() + prefix + signature).digest()[:_CHECK_BYTES]


def _grouped(text: str, size: int = 4) -> str:
    return "-".join(text[i:i + size] for i in range(0, len(text), size))


class Signer:
    """An Ed25519 private key that signs issued documents."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> Signer:
        """A new random key (tests, `guichet keys generate`)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, path: str | Path) -> Signer:
        """The key in a PEM file (PKCS#8, unencrypted); KeyProblem when it is not one."""
        data = _read_key(path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyProblem(f"{path}: not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyProblem(f"{path}: not an Ed25519 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def public_pem(self) -> bytes:
        """The public key to publish (SubjectPublicKeyInfo PEM)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, reference: str, document_id: str, content: str) -> str:
        """The verification code of the document `document_id` of case `reference` whose
        content (its text as issued) is `content`."""
        if not _REFERENCE.fullmatch(reference) or not _DOCUMENT.fullmatch(document_id):
            raise ValueError("a reference (A-Z, 0-9, -) and a document id (a-z, 0-9, _) "
                             "of at most 64 characters are needed")
        digest = content_digest(content)
        signature = self._key.sign(_message(reference, document_id, digest))
        head = f"{VERSION}.{reference}.{document_id}"
        prefix = digest[:_PREFIX_BYTES]
        payload = prefix + signature + _check(head, prefix, signature)
        return f"{head}.{_grouped(base64.b32encode(payload).decode())}"


def qr_payload(code: str) -> str:
    """What the QR code printed on a document holds: its verification code."""
    return code


@dataclass(frozen=True)
class Verdict:
    """What `verify` found. `ok` only when the document is authentic and unchanged; `reason`
    is one of authentic, format, mistyped, key, changed, signature; `message` says it in one
    line."""

    ok: bool
    reason: str
    message: str
    reference: str | None = None
    document_id: str | None = None


@dataclass(frozen=True)
class _Code:
    reference: str
    document_id: str
    prefix: bytes
    signature: bytes
    check: bytes


def _parse(code: str) -> _Code | Verdict:
    """The parts of a code, or the Verdict saying why it is not one."""
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        return Verdict(False, "format", f"not a verification code (at most {MAX_CODE_CHARS} "
                                        "characters)")
    parts = "".join(code.split()).split(".")
    if len(parts) != 4 or parts[0].upper() != VERSION:
        return Verdict(False, "format", f"not a verification code (expected "
                                        f"{VERSION}.REFERENCE.DOCUMENT.CODE)")
    _, reference, document_id, encoded = parts
    reference = reference.upper()
    if not _REFERENCE.fullmatch(reference) or not _DOCUMENT.fullmatch(document_id):
        return Verdict(False, "format", "not a verification code (its reference or document "
                                        "id is malformed)")
    encoded = encoded.upper().translate(_TYPED)
    try:
        payload = base64.b32decode(encoded) if len(encoded) == _PAYLOAD_CHARS else b""
    except (binascii.Error, ValueError):
        payload = b""
    if len(payload) != _PAYLOAD_BYTES:
        return Verdict(False, "mistyped", f"the code's last part is not {_PAYLOAD_CHARS} "
                                          "characters of A-Z and 2-7: mistyped or incomplete",
                       reference, document_id)
    prefix = payload[:_PREFIX_BYTES]
    signature = payload[_PREFIX_BYTES:_PREFIX_BYTES + _SIGNATURE_BYTES]
    return _Code(reference, document_id, prefix, signature, payload[-_CHECK_BYTES:])


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM text; KeyProblem when it is not one."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_KEY_BYTES:
        raise KeyProblem("not a public key (too large)")
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyProblem("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyProblem("not an Ed25519 public key")
    return key


def verify(code: str, content: str, public_key: bytes | str | Ed25519PublicKey) -> Verdict:
    """Whether `content` is the document `code` was issued for, signed by `public_key` (PEM
    text, or a key): authentic and unchanged, or why not. Never raises on bad input."""
    parsed = _parse(code)
    if isinstance(parsed, Verdict):
        return parsed
    reference, document_id = parsed.reference, parsed.document_id
    head = f"{VERSION}.{reference}.{document_id}"
    if _check(head, parsed.prefix, parsed.signature) != parsed.check:
        return Verdict(False, "mistyped", "the code's check does not match: mistyped, or not "
                                          "a code Guichet printed", reference, document_id)
    try:
        key = public_key if isinstance(public_key, Ed25519PublicKey) \
            else load_public_key(public_key)
    except KeyProblem as exc:
        return Verdict(False, "key", str(exc), reference, document_id)
    if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
        return Verdict(False, "changed", "the content is not a document's text (at most "
                                         f"{MAX_CONTENT_CHARS:,} characters)",
                       reference, document_id)
    digest = content_digest(content)
    try:
        key.verify(parsed.signature, _message(reference, document_id, digest))
    except InvalidSignature:
        if digest[:_PREFIX_BYTES] != parsed.prefix:
            return Verdict(False, "changed", f"the content of {document_id} of {reference} "
                                             "is not the text that was signed: it was changed",
                           reference, document_id)
        return Verdict(False, "signature", "the signature is not valid for this public key: "
                                           "forged, or signed with another key",
                       reference, document_id)
    return Verdict(True, "authentic", f"authentic and unchanged: {document_id} of "
                                      f"{reference}", reference, document_id)


def _read_key(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise KeyProblem(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_KEY_BYTES:
        raise KeyProblem(f"{path}: not a key file (larger than {MAX_KEY_BYTES} bytes)")
    return data


def read_public_key(path: str | Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file; KeyProblem when it cannot be read or is not one."""
    try:
        return load_public_key(_read_key(path))
    except KeyProblem as exc:
        message = str(exc)
        raise KeyProblem(message if message.startswith(str(path)) else f"{path}: {message}"
                        ) from None

