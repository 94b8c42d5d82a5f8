"""Format conversion and renditions of generated images.

CPU-bound and pure: callers run these functions in the render pool, so they take and return only picklable
values (bytes and frozen dataclasses).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

from generator.adapters.providers.base import PILLOW_DECODE_ERRORS, InvalidProviderOutputError

ImageFormat = Literal["jpg", "png", "webp"]

CONTENT_TYPES: dict[ImageFormat, str] = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_PILLOW_FORMATS: dict[ImageFormat, str] = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_JPEG_BACKGROUND = (255, 255, 255)  # transparent areas become white, as on a typical article page
_LOSSY_QUALITY = 85


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    width: int
    height: int
    format: ImageFormat
    content_type: str


@dataclass(frozen=True)
class RenditionSpec:
    name: str
    max_width: int | None


@dataclass(frozen=True)
class Rendition:
    name: str
    image: EncodedImage


DEFAULT_RENDITIONS: tuple[RenditionSpec, ...] = (
    RenditionSpec("desktop", 1280),
    RenditionSpec("mobile", 640),
)


def convert(data: bytes, image_format: ImageFormat, max_width: int | None = None) -> EncodedImage:
    """Re-encode `data` as `image_format`, scaled down to `max_width` if wider; metadata is dropped."""
    return _encode(_scaled(decode(data), max_width), image_format)


def render_renditions(
    data: bytes,
    image_format: ImageFormat,
    renditions: Sequence[RenditionSpec] = DEFAULT_RENDITIONS,
) -> list[Rendition]:
    """One encoded image per rendition, each scaled from the original (decoded once) for the best quality.

    Renditions that come out at the same width (a small original is never upscaled) share one encoding.
    """
    original = decode(data)
    encoded_by_width: dict[int, EncodedImage] = {}
    result = []
    for spec in renditions:
        width = original.width if spec.max_width is None else min(spec.max_width, original.width)
        if width not in encoded_by_width:
            encoded_by_width[width] = _encode(_scaled(original, spec.max_width), image_format)
        result.append(Rendition(spec.name, encoded_by_width[width]))
    return result


def decode(data: bytes) -> Image.Image:
    """Fully decoded image, upright; InvalidProviderOutputError for empty, truncated or non-image bytes."""
    if not data:
        raise InvalidProviderOutputError("image is empty")
    try:
        # verify() catches corruption cheaply but leaves the image unusable, hence the second open.
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except PILLOW_DECODE_ERRORS as error:
        raise InvalidProviderOutputError(f"image does not decode ({type(error).__name__})") from error
    # Phones and some editors store rotation in EXIF; apply it now because the metadata is dropped on save.
    return ImageOps.exif_transpose(image)


def _scaled(image: Image.Image, max_width: int | None) -> Image.Image:
    if max_width is None or image.width <= max_width:
        return image  # never upscale: it only adds bytes and blur
    height = max(1, round(image.height * max_width / image.width))
    # reducing_gap: shrink by whole factors first, then Lanczos; much faster on large inputs, same look.
    return image.resize((max_width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode(image: Image.Image, image_format: ImageFormat) -> EncodedImage:
    prepared = _with_mode_for(image, image_format)
    prepared.info = {}  # strip metadata (EXIF, ICC, text chunks): Pillow copies some of it from info on save
    buffer = io.BytesIO()
    prepared.save(buffer, format=_PILLOW_FORMATS[image_format], **_save_options(image_format))
    return EncodedImage(
        data=buffer.getvalue(),
        width=prepared.width,
        height=prepared.height,
        format=image_format,
        content_type=CONTENT_TYPES[image_format],
    )


def _save_options(image_format: ImageFormat) -> dict[str, object]:
    if image_format == "jpg":
        return {"quality": _LOSSY_QUALITY, "progressive": True, "optimize": True}
    if image_format == "webp":
        return {"quality": _LOSSY_QUALITY, "method": 4}
    return {"optimize": False}


def _with_mode_for(image: Image.Image, image_format: ImageFormat) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if image_format == "jpg":
        return _flattened(image) if has_alpha else image.convert("RGB")
    keeps_mode = image.mode in ("RGB", "RGBA") or (
        # Palette or grey transparency lives in `info`, which is cleared on save, so those become RGBA.
        image_format == "png" and image.mode in ("L", "LA", "P") and "transparency" not in image.info
    )
    if keeps_mode:
        return image.copy()  # a copy, so clearing `info` never touches the caller's image
    return image.convert("RGBA" if has_alpha else "RGB")


def _flattened(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, _JPEG_BACKGROUND)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
