"""The peer the seed runs: a Celery + Redis worker pool, one task per image doing the same render,
storing the files and marking the image row generated in Postgres. With BENCH_PEER_RETAIN_FREED_MEMORY set,
its processes keep freed memory as the generator's render workers do.

Started by bench_generation as `celery -A bench.celery_peer worker`; settings come from the environment.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
from celery import Celery
from celery.signals import worker_process_init

from generator.adapters.imaging import RenditionSpec, render_renditions
from generator.adapters.providers.local import render_prompt_png
from generator.adapters.render_pool import retain_freed_memory
from writer_images.blobstore import FilesystemBlobStore

app = Celery("bench_peer", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/15"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    task_acks_late=True,  # the at-least-once setting a fair peer would use
    worker_hijack_root_logger=False,
)

PLAN = [RenditionSpec("original", None), RenditionSpec("desktop", 1280), RenditionSpec("mobile", 640)]
_state: dict[str, Any] = {}


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _open_connection(**_: Any) -> None:
    if os.environ.get("BENCH_PEER_RETAIN_FREED_MEMORY"):
        retain_freed_memory()
    loop = asyncio.new_event_loop()
    _state["loop"] = loop
    _state["conn"] = loop.run_until_complete(asyncpg.connect(os.environ["BENCH_PEER_DSN"]))
    _state["blobs"] = FilesystemBlobStore(Path(os.environ["BENCH_PEER_BLOB_DIR"]))


@app.task(name="bench.generate_image")  # type: ignore[untyped-decorator]
def generate_image(image_id: int, prompt: str, width: int, height: int) -> None:
    blobs: FilesystemBlobStore = _state["blobs"]
    png = render_prompt_png(prompt, width, height)
    keys = [blobs.put_sync(r.image.data, extension="jpg").key for r in render_renditions(png, "jpg", PLAN)]
    loop: asyncio.AbstractEventLoop = _state["loop"]
    loop.run_until_complete(
        _state["conn"].execute(
            "UPDATE peer_images SET status = 'generated', blob_keys = $2 WHERE id = $1", image_id, keys
        )
    )
