"""Where attached files live: content stored under its SHA-256; media type sniffed from bytes.

No user-supplied name or path ever reaches the filesystem: a blob's only name is its digest.
A host can pass any object with `put`, `get` and `delete` (e.g. an object-storage client)
instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def sniff(content: bytes) -> str | None:
    """The media type of `content` from its first bytes (PDF, JPEG, PNG), or None."""
    for signature, media_type in _SIGNATURES:
        if content.startswith(signature):
            return media_type
    return None


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class BlobStore(Protocol):
    """Content-addressed storage of attached files."""

    def put(self, content: bytes) -> str:
        """Store `content`; return its SHA-256 hex digest."""
        ...

    def get(self, sha256: str) -> bytes:
        """The content stored under `sha256` (KeyError when absent)."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the content stored under `sha256` (KeyError when absent). The engine asks
        it only when purging a case, for a file no case that is not purged still has."""
        ...


class MemoryBlobStore:
    """Blobs kept in memory: for tests, scenarios and simulations."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, content: bytes) -> str:
        key = digest(content)
        self._blobs[key] = content
        return key

    def get(self, sha256: str) -> bytes:
        return self._blobs[sha256]

    def delete(self, sha256: str) -> None:
        del self._blobs[sha256]


class DirectoryBlobStore:
    """Blobs as files `ab/abcdef…` under one directory, written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise KeyError(sha256)
        return self.root / sha256[:2] / sha256

    def put(self, content: bytes) -> str:
        key = digest(content)
        target = self._path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def get(self, sha256: str) -> bytes:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            raise KeyError(sha256) from None

    def delete(self, sha256: str) -> None:
        try:
            self._path(sha256).unlink()
        except FileNotFoundError:
            raise KeyError(sha256) from None
