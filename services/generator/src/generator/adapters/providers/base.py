"""The one interface every image provider implements, and the errors it may raise.

A provider makes exactly one provider call per `generate` and never retries by itself: the caller owns the
retry policy (backoff, Retry-After, dead-lettering), so every paid call is visible and counted.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from writer_images.retry import parse_retry_after


@dataclass(frozen=True)
class ImageSpec:
    """What to draw. Width and height are the wanted size; providers may return the closest they support."""

    prompt: str
    model: str
    width: int
    height: int
    quality: str | None = None


@dataclass(frozen=True)
class ProviderUsage:
    images: int
    input_tokens: int | None
    output_tokens: int | None
    estimated_cost_usd: float


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    revised_prompt: str | None
    usage: ProviderUsage


class ImageProvider(Protocol):
    name: str

    async def generate(self, spec: ImageSpec, *, timeout_s: float) -> GeneratedImage:
        """Make one provider call; raise a `ProviderError` subclass on failure."""
        ...

    def list_price_usd(self, spec: ImageSpec) -> float:
        """What one `generate` of `spec` costs at list price, known before the call: what a call cut off by
        a crash is counted as (the provider may have billed it); 0 for a spec the provider would refuse."""
        ...

    async def aclose(self) -> None:
        """Release connections the provider owns (not the render pool, which its creator owns)."""
        ...


class ProviderError(Exception):
    """A failed provider call, with what the retry policy needs to decide."""

    retryable_by_default = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.retryable_by_default if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.status_code = status_code


class RateLimitedError(ProviderError):
    retryable_by_default = True


class ProviderUnavailableError(ProviderError):
    """5xx, connection refused or reset, an unreadable response body: worth another try later."""

    retryable_by_default = True


class ProviderTimeoutError(ProviderError):
    retryable_by_default = True


class ContentPolicyError(ProviderError):
    """The provider refused the prompt; the message is shown to the user, who has to change the prompt."""


class InvalidProviderOutputError(ProviderError):
    """The provider answered but the image is empty or does not decode.

    Not retried by default: the call was probably billed, and the same request tends to give the same output.
    """


class ProviderConfigError(ProviderError):
    """Bad key, no access, unknown model or unsupported option: no retry fixes it, an operator must."""


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: OpenAI sends `retry-after-ms` (more precise) and `retry-after`."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass  # fall back to the seconds header
    return parse_retry_after(headers.get("retry-after"))


# What Pillow raises on truncated or garbage input: it is not consistent across formats.
PILLOW_DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


def verify_image_bytes(data: bytes) -> None:
    """Raise InvalidProviderOutputError unless `data` is a well-formed image (cheap: checks, no decode)."""
    if not data:
        raise InvalidProviderOutputError("provider returned an empty image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except PILLOW_DECODE_ERRORS as error:
        # Pillow's message embeds the repr of our buffer; the exception type says enough.
        raise InvalidProviderOutputError(
            f"provider returned an undecodable image ({type(error).__name__})"
        ) from error
