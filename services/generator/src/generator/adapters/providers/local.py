"""The `local` provider: a deterministic picture drawn from the prompt, no network, no cost.

Rendering and PNG encoding are CPU-bound, so they run in the render pool's worker processes
(`adapters.render_pool`); the event loop only waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import textwrap
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from typing import Any, TypeVar

from PIL import Image, ImageDraw, ImageFont

from generator.adapters.providers.base import (
    GeneratedImage,
    ImageSpec,
    ProviderConfigError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUsage,
)
from generator.adapters.render_pool import RenderPool

T = TypeVar("T")

LOCAL_MODEL = "local-v1"
MAX_SIDE_PX = 4096  # a 4096² RGB canvas is 48 MB; anything larger is a configuration mistake
_SHAPE_COUNT = 6
_TEXT_COLOUR = (255, 255, 255)
_TEXT_SHADOW = (0, 0, 0)
_RAMP_TURNS = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
)


def render_prompt_png(prompt: str, width: int, height: int) -> bytes:
    """A PNG of `width`×`height` drawn from the prompt: same prompt and size, same bytes.

    Pure and module-level so the render pool can run it (and benchmarks can call it directly).
    """
    _check_size(width, height)
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    canvas = _gradient(seed, width, height)
    draw = ImageDraw.Draw(canvas)
    _draw_shapes(draw, seed, width, height)
    _draw_prompt(draw, prompt, width, height)
    buffer = io.BytesIO()
    # Level 1: these flat pictures compress almost as well, several times faster than the default 6.
    canvas.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _check_size(width: int, height: int) -> None:
    if not (0 < width <= MAX_SIDE_PX and 0 < height <= MAX_SIDE_PX):
        raise ProviderConfigError(f"size {width}x{height} outside 1..{MAX_SIDE_PX} px per side")


def _colour(seed: bytes, offset: int) -> tuple[int, int, int]:
    return seed[offset], seed[offset + 1], seed[offset + 2]


def _gradient(seed: bytes, width: int, height: int) -> Image.Image:
    # Pillow's built-in 256×256 ramp, turned and stretched, blends two colours without a per-pixel loop.
    ramp = Image.linear_gradient("L").transpose(_RAMP_TURNS[seed[6] % len(_RAMP_TURNS)])
    mask = ramp.resize((width, height), Image.Resampling.BILINEAR)
    start = Image.new("RGB", (width, height), _colour(seed, 0))
    end = Image.new("RGB", (width, height), _colour(seed, 3))
    return Image.composite(start, end, mask)


def _draw_shapes(draw: ImageDraw.ImageDraw, seed: bytes, width: int, height: int) -> None:
    for index in range(_SHAPE_COUNT):
        base = 7 + index * 4  # 4 seed bytes per shape; 7 + 6*4 = 31 < 32 bytes of sha256
        centre_x = seed[base] * width // 255
        centre_y = seed[base + 1] * height // 255
        radius = max(1, (seed[base + 2] % 64 + 16) * min(width, height) // 256)
        box = (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius)
        colour = _colour(seed, (base + 3) % 29)
        if seed[base + 3] % 2:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)


def _draw_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int) -> None:
    font_px = max(8, min(width, height) // 20)
    font = _font(font_px)
    chars_per_line = max(8, int(width * 0.9) // max(1, font_px // 2))
    lines = textwrap.wrap(prompt, width=chars_per_line, max_lines=8, placeholder=" …") or [""]
    text = "\n".join(lines)
    origin = (width // 20, height // 20)
    shadow = (origin[0] + max(1, font_px // 16), origin[1] + max(1, font_px // 16))
    draw.multiline_text(shadow, text, font=font, fill=_TEXT_SHADOW)
    draw.multiline_text(origin, text, font=font, fill=_TEXT_COLOUR)


@lru_cache(maxsize=16)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Loading the font is a large share of a small render; each worker keeps its few sizes.
    return ImageFont.load_default(size=size_px)


def _render_then(
    prompt: str, width: int, height: int, finish: Callable[..., T], finish_args: tuple[Any, ...]
) -> T:
    return finish(render_prompt_png(prompt, width, height), *finish_args)


class LocalProvider:
    """Renders in the given render pool; the pool's creator shuts it down."""

    name = "local"

    def __init__(self, render_pool: RenderPool) -> None:
        self._pool = render_pool

    async def generate(self, spec: ImageSpec, *, timeout_s: float) -> GeneratedImage:
        data = await self._run(spec, timeout_s, render_prompt_png, spec.prompt, spec.width, spec.height)
        usage = ProviderUsage(images=1, input_tokens=None, output_tokens=None, estimated_cost_usd=0.0)
        return GeneratedImage(data=data, revised_prompt=None, usage=usage)

    def list_price_usd(self, spec: ImageSpec) -> float:
        return 0.0

    async def generate_and_finish(
        self, spec: ImageSpec, finish: Callable[..., T], *finish_args: Any, timeout_s: float
    ) -> T:
        """Render, then hand the bytes to `finish(data, *finish_args)` in the same worker.

        One trip to the pool instead of two (render, then convert): the PNG never crosses a process
        boundary. `finish` must be a module-level function, as everything the pool runs.
        """
        return await self._run(
            spec, timeout_s, _render_then, spec.prompt, spec.width, spec.height, finish, finish_args
        )

    async def aclose(self) -> None:
        """Nothing to release: the pool belongs to whoever created it."""

    async def _run(self, spec: ImageSpec, timeout_s: float, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the render pool for `spec`, after checking its model and size."""
        if spec.model != LOCAL_MODEL:
            raise ProviderConfigError(f"local provider has no model {spec.model!r} (only {LOCAL_MODEL!r})")
        _check_size(spec.width, spec.height)
        try:
            async with asyncio.timeout(timeout_s):
                return await self._pool.run(fn, *args)
        except TimeoutError as error:
            raise ProviderTimeoutError(f"local render took longer than {timeout_s}s") from error
        except BrokenProcessPool as error:
            # The worker died under this render; the pool has replaced it for the retry.
            raise ProviderUnavailableError(f"a render worker died: {error}") from error
