"""Attached files: media type sniffing and content-addressed stores (engine/blobs.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from helpers import JPEG, PDF, PNG, TEXT

from engine.blobs import DirectoryBlobStore, MemoryBlobStore, digest, sniff


@pytest.mark.parametrize(("content", "media_type"), [
    (PDF, "application/pdf"),
    (b"%PDF-", "application/pdf"),
    (JPEG, "image/jpeg"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (PNG, "image/png"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
])
def test_sniff_recognises_pdf_jpeg_and_png_by_their_first_bytes(content: bytes,
                                                               media_type: str) -> None:
    assert sniff(content) == media_type


@pytest.mark.parametrize("content", [
    b"", TEXT, b"%PDF", b" %PDF-1.4", b"\xff\xd8", b"\x89PNG\r\n", b"GIF89a",
    b"<html><body>%PDF-1.4</body></html>", b"PK\x03\x04 a zip or docx", b"\x00" + PDF,
])
def test_sniff_refuses_anything_else(content: bytes) -> None:
    assert sniff(content) is None


def test_digest_is_the_sha256_hex() -> None:
    assert digest(PDF) == hashlib.sha256(PDF).hexdigest()


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_directory_store_puts_content_under_its_digest(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    key = store.put(PDF)
    assert key == hashlib.sha256(PDF).hexdigest()
    assert stored_files(tmp_path) == [tmp_path / "blobs" / key[:2] / key]
    assert store.get(key) == PDF
    assert DirectoryBlobStore(tmp_path / "blobs").get(key) == PDF  # another instance reads it


def test_directory_store_keeps_one_copy_of_identical_content(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    first = store.put(JPEG)
    modified = (tmp_path / first[:2] / first).stat().st_mtime_ns
    assert store.put(JPEG) == first
    other = store.put(PNG)
    assert other != first
    assert stored_files(tmp_path) == sorted([tmp_path / first[:2] / first,
                                             tmp_path / other[:2] / other])
    assert (tmp_path / first[:2] / first).stat().st_mtime_ns == modified


def test_directory_store_get_of_an_absent_digest_is_a_key_error(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    absent = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(KeyError) as excinfo:
        store.get(absent)
    assert excinfo.value.args == (absent,)


@pytest.mark.parametrize("key", [
    "../../etc/passwd",
    "ab/../../secret",
    "",
    "0" * 63,
    "0" * 65,
    "A" * 64,  # upper case is not how digests are written
    "g" * 64,
    "/" + "0" * 63,
    hashlib.sha256(PDF).hexdigest()[:62] + "/.",
])
def test_directory_store_refuses_a_key_that_is_not_a_hex_digest(tmp_path: Path,
                                                                 key: str) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    (tmp_path / "secret").write_bytes(b"outside the store")
    with pytest.raises(KeyError):
        store.get(key)
    assert not (tmp_path / "blobs").exists()


def test_directory_store_writes_atomically(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails half-way leaves neither a partial blob nor a temporary file."""
    store = DirectoryBlobStore(tmp_path)
    key = hashlib.sha256(PDF).hexdigest()

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put(PDF)
    monkeypatch.undo()
    assert stored_files(tmp_path) == []
    with pytest.raises(KeyError):
        store.get(key)
    assert store.put(PDF) == key
    assert stored_files(tmp_path) == [tmp_path / key[:2] / key]


def test_directory_store_never_shows_a_partial_blob(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the content is complete and flushed, nothing exists under the digest's name."""
    store = DirectoryBlobStore(tmp_path)
    key = hashlib.sha256(PNG).hexdigest()
    final = tmp_path / key[:2] / key
    seen: list[tuple[bool, bytes]] = []
    real_replace = os.replace

    def watch(source: str, target: str) -> None:
        seen.append((final.exists(), Path(source).read_bytes()))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watch)
    store.put(PNG)
    assert seen == [(False, PNG)]
    assert final.read_bytes() == PNG


def test_memory_store_puts_and_gets_by_digest() -> None:
    store = MemoryBlobStore()
    key = store.put(PNG)
    assert key == hashlib.sha256(PNG).hexdigest()
    assert store.get(key) == PNG
    with pytest.raises(KeyError):
        store.get(hashlib.sha256(b"absent").hexdigest())
