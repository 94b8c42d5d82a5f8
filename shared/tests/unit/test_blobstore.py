from __future__ import annotations

from pathlib import Path

import pytest

from writer_images.blobstore import BlobNotFoundError, FilesystemBlobStore


async def test_same_bytes_same_key_and_reads_back(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    first = await store.put(b"image-bytes", extension="jpg")
    second = await store.put(b"image-bytes", extension="jpg")
    assert first == second
    assert first.key.endswith(f"{first.sha256}.jpg")
    assert await store.get(first.key) == b"image-bytes"
    assert not list(tmp_path.rglob(".tmp-*")), "no temp files left behind"


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "ab/cd/../../x.jpg", "/abs/path/x.jpg", "ab/cd", "ab/cd/x y.jpg"]
)
async def test_keys_cannot_escape_the_store(tmp_path: Path, key: str) -> None:
    with pytest.raises(BlobNotFoundError):
        await FilesystemBlobStore(tmp_path).get(key)


async def test_missing_blob_is_not_found(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    with pytest.raises(BlobNotFoundError):
        await store.get("ab/cd/abcd.jpg")
    assert await store.exists("ab/cd/abcd.jpg") is False
