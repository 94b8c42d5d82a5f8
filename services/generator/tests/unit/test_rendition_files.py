"""Renditions written to the blob store by the render worker: only their descriptions come back."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from generator.adapters.imaging import DEFAULT_RENDITIONS, RenditionSpec
from generator.adapters.rendition_files import render_renditions_to_files
from writer_images.blobstore import FilesystemBlobStore

PLAN = [RenditionSpec("original", None), *DEFAULT_RENDITIONS]


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_each_rendition_is_in_the_blob_store_as_described(tmp_path: Path) -> None:
    stored = render_renditions_to_files(png(2000, 1000), "jpg", PLAN, str(tmp_path))

    store = FilesystemBlobStore(tmp_path)
    assert [(r.name, r.width, r.height) for r in stored] == [
        ("original", 2000, 1000),
        ("desktop", 1280, 640),
        ("mobile", 640, 320),
    ]
    for rendition in stored:
        data = store.path_of(rendition.blob_key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rendition.sha256
        assert len(data) == rendition.bytes
        assert rendition.content_type == "image/jpeg"
        assert Image.open(io.BytesIO(data)).size == (rendition.width, rendition.height)


def test_renditions_sharing_an_encoding_share_one_file(tmp_path: Path) -> None:
    stored = render_renditions_to_files(png(512, 512), "webp", PLAN, str(tmp_path))

    assert len({r.blob_key for r in stored}) == 1
    assert len(list(tmp_path.rglob("*.webp"))) == 1
