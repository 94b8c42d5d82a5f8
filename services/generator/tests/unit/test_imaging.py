"""Format conversion and renditions: what reaches the blob store and, later, WordPress."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generator.adapters.imaging import (
    DEFAULT_RENDITIONS,
    ImageFormat,
    RenditionSpec,
    convert,
    render_renditions,
)
from generator.adapters.providers import InvalidProviderOutputError

PILLOW_NAMES = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
EXIF_ORIENTATION = 0x0112
EXIF_ARTIST = 0x013B


def encoded(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def landscape(width: int = 2000, height: int = 1000) -> bytes:
    return encoded(Image.new("RGB", (width, height), (30, 120, 200)))


@pytest.mark.parametrize(
    ("image_format", "content_type"),
    [("jpg", "image/jpeg"), ("png", "image/png"), ("webp", "image/webp")],
)
def test_converts_to_each_format_at_full_size(image_format: ImageFormat, content_type: str) -> None:
    result = convert(landscape(), image_format, max_width=None)

    assert (result.format, result.content_type) == (image_format, content_type)
    assert (result.width, result.height) == (2000, 1000)
    assert opened(result.data).format == PILLOW_NAMES[image_format]
    assert opened(result.data).size == (2000, 1000)


def test_convert_scales_down_to_max_width_keeping_the_aspect_ratio() -> None:
    result = convert(landscape(1792, 1024), "jpg", max_width=1280)

    assert (result.width, result.height) == (1280, 731)
    assert opened(result.data).size == (1280, 731)


def test_renditions_are_desktop_1280_and_mobile_640_wide() -> None:
    renditions = render_renditions(landscape(2000, 1000), "webp", DEFAULT_RENDITIONS)

    sizes = {rendition.name: opened(rendition.image.data).size for rendition in renditions}
    assert sizes == {"desktop": (1280, 640), "mobile": (640, 320)}


def test_a_small_image_is_never_upscaled() -> None:
    renditions = render_renditions(landscape(300, 200), "jpg", DEFAULT_RENDITIONS)

    assert [(r.name, r.image.width, r.image.height) for r in renditions] == [
        ("desktop", 300, 200),
        ("mobile", 300, 200),
    ]


def test_a_rendition_without_max_width_keeps_the_original_size() -> None:
    [original] = render_renditions(landscape(1500, 900), "png", [RenditionSpec("original", None)])

    assert (original.name, original.image.width, original.image.height) == ("original", 1500, 900)


def test_transparent_areas_become_white_in_jpeg() -> None:
    transparent = Image.new("RGBA", (100, 100), (255, 0, 0, 0))

    result = convert(encoded(transparent), "jpg", max_width=None)

    image = opened(result.data)
    assert image.mode == "RGB"
    assert all(channel > 245 for channel in image.getpixel((50, 50)))  # type: ignore[union-attr]


@pytest.mark.parametrize("image_format", ["png", "webp"])
def test_png_and_webp_keep_transparency(image_format: ImageFormat) -> None:
    transparent = Image.new("RGBA", (100, 100), (255, 0, 0, 0))

    result = convert(encoded(transparent), image_format, max_width=None)

    assert opened(result.data).getchannel("A").getextrema() == (0, 0)


def test_palette_transparency_survives_png_conversion() -> None:
    palette = Image.new("P", (50, 50), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0])
    source = encoded(palette, transparency=0)

    result = convert(source, "png", max_width=None)

    assert opened(result.data).convert("RGBA").getpixel((10, 10)) == (255, 0, 0, 0)


def test_jpeg_is_progressive_quality_85_and_carries_no_metadata() -> None:
    exif = Image.Exif()
    exif[EXIF_ARTIST] = "someone's camera"
    source = encoded(Image.new("RGB", (400, 300), (10, 200, 10)), "JPEG", exif=exif.tobytes())

    result = convert(source, "jpg", max_width=None)

    image = opened(result.data)
    assert image.info.get("progressive") or image.info.get("progression")
    assert "exif" not in image.info
    assert not image.getexif()


def test_exif_orientation_is_applied_before_the_metadata_is_dropped() -> None:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to display"
    source = encoded(Image.new("RGB", (200, 100)), "JPEG", exif=exif.tobytes())

    result = convert(source, "jpg", max_width=None)

    assert (result.width, result.height) == (100, 200)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"definitely not an image", id="garbage"),
        pytest.param(landscape(64, 64)[:60], id="truncated-png"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, id="png-signature-only"),
    ],
)
def test_corrupt_input_is_invalid_provider_output(data: bytes) -> None:
    with pytest.raises(InvalidProviderOutputError) as raised:
        render_renditions(data, "jpg", DEFAULT_RENDITIONS)

    assert not raised.value.retryable
