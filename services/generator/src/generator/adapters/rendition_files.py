"""Renditions encoded and written to the filesystem blob store inside a render worker.

Only keys, sizes and digests travel back to the event loop, not image bytes: the event loop neither
unpickles the encodings nor hops to a thread to hash and write them, which was most of its per-image work
with the fast local provider. Module-level functions: the render pool runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from generator.adapters.imaging import ImageFormat, Rendition, RenditionSpec, render_renditions
from writer_images.blobstore import CONTENT_TYPES, FilesystemBlobStore, StoredBlob
from writer_images.events import Rendition as StoredRendition


def render_renditions_to_files(
    data: bytes, image_format: ImageFormat, plan: Sequence[RenditionSpec], blob_root: str
) -> list[StoredRendition]:
    """`render_renditions`, each distinct encoding written once to the blob store under `blob_root`."""
    store = FilesystemBlobStore(Path(blob_root))
    return _store(render_renditions(data, image_format, plan), image_format, store)


def _store(
    renditions: Sequence[Rendition], image_format: ImageFormat, store: FilesystemBlobStore
) -> list[StoredRendition]:
    # Renditions that share one encoding (a small original is never upscaled) are written once.
    blobs: dict[int, StoredBlob] = {}
    stored = []
    for rendition in renditions:
        encoding = id(rendition.image)
        if encoding not in blobs:
            blobs[encoding] = store.put_sync(rendition.image.data, extension=image_format)
        blob = blobs[encoding]
        stored.append(
            StoredRendition(
                name=rendition.name,
                blob_key=blob.key,
                width=rendition.image.width,
                height=rendition.image.height,
                format=image_format,
                content_type=CONTENT_TYPES[image_format],
                bytes=blob.size,
                sha256=blob.sha256,
            )
        )
    return stored
