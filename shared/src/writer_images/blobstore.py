"""Blob store: image bytes by key. Filesystem by default (content-addressed by sha256).

Keys look like `ab/cd/<sha256>.<ext>`: the same bytes always get the same key, so a retried
write is a no-op and two services agree on a key without talking. images-api serves blobs to
authorised users; the publisher reads them by key; the generator writes them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str
    size: int


class BlobNotFoundError(KeyError):
    pass


class BlobStore(Protocol):
    async def put(self, data: bytes, *, extension: str) -> StoredBlob: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...


def blob_key(sha256: str, extension: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if (
        len(parts) != 3
        or any(p in ("", ".", "..") for p in parts)
        or not all(c.isalnum() or c in "._" for p in parts for c in p)
    ):
        raise BlobNotFoundError(key)
    return key


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, key: str) -> Path:
        return self.root / _safe_key(key)

    async def put(self, data: bytes, *, extension: str) -> StoredBlob:
        return await asyncio.to_thread(self.put_sync, data, extension=extension)

    def put_sync(self, data: bytes, *, extension: str) -> StoredBlob:
        """`put` for a worker process or thread (blocking)."""
        digest = hashlib.sha256(data).hexdigest()
        key = blob_key(digest, extension)
        path = self.root / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # write-then-rename: a reader never sees half a file, a crash leaves only a temp file
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return StoredBlob(key=key, sha256=digest, size=len(data))

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path_of(key).read_bytes)
        except FileNotFoundError:
            raise BlobNotFoundError(key) from None

    async def exists(self, key: str) -> bool:
        try:
            return self.path_of(key).exists()
        except BlobNotFoundError:
            return False
