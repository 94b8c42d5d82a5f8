"""The `openai` provider: OpenAI's image API, or any server that speaks it (`base_url`).

One `generate` is exactly one provider HTTP call: the SDK's own retries are off (`max_retries=0`, otherwise a
429 hides several paid-for calls behind one) and the caller's retry policy decides what happens next.

How an unusable answer is classified:
- a body that is not JSON, or JSON that is not an images response (a proxy's HTML page, a truncated body)
  -> ProviderUnavailableError, retryable: the transport failed, the provider may well be fine next time;
- a well-formed response whose image is missing, empty or does not decode -> InvalidProviderOutputError,
  not retryable by default: the provider produced it (and probably billed it), and would likely do so again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Literal

import httpx
import openai
from openai.types import Image as ApiImage
from openai.types import ImagesResponse

from generator.adapters.providers.base import (
    ContentPolicyError,
    GeneratedImage,
    ImageSpec,
    InvalidProviderOutputError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ProviderUsage,
    RateLimitedError,
    retry_after_from_headers,
    verify_image_bytes,
)

Quality = Literal["standard", "hd", "low", "medium", "high", "auto"]
Size = tuple[int, int]

DEFAULT_TIMEOUT_S = 120.0  # generation often takes 10–60 s
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024

SUPPORTED_SIZES: dict[str, tuple[Size, ...]] = {
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "dall-e-2": ((256, 256), (512, 512), (1024, 1024)),
    # gpt-image-1 also takes "auto"; never chosen, because the cost estimate needs a known size.
    "gpt-image-1": ((1024, 1024), (1536, 1024), (1024, 1536)),
}
OPENAI_MODELS: tuple[str, ...] = tuple(SUPPORTED_SIZES)

# Per model: the qualities it accepts, the first being the one sent when the spec has none. dall-e-2 has no
# quality option, so nothing is sent and prices are listed under "standard".
_QUALITIES: dict[str, tuple[Quality, ...]] = {
    "dall-e-3": ("standard", "hd"),
    "dall-e-2": (),
    "gpt-image-1": ("medium", "low", "high", "auto"),
}
# GPT image models return base64 only and reject `response_format`.
_BASE64_ONLY_MODELS = frozenset({"gpt-image-1"})

# Public list prices per image, USD.
_PRICE_PER_IMAGE_USD: dict[tuple[str, str, str], float] = {
    ("dall-e-3", "standard", "1024x1024"): 0.040,
    ("dall-e-3", "standard", "1792x1024"): 0.080,
    ("dall-e-3", "standard", "1024x1792"): 0.080,
    ("dall-e-3", "hd", "1024x1024"): 0.080,
    ("dall-e-3", "hd", "1792x1024"): 0.120,
    ("dall-e-3", "hd", "1024x1792"): 0.120,
    ("dall-e-2", "standard", "1024x1024"): 0.020,
    ("dall-e-2", "standard", "512x512"): 0.018,
    ("dall-e-2", "standard", "256x256"): 0.016,
    ("gpt-image-1", "low", "1024x1024"): 0.011,
    ("gpt-image-1", "medium", "1024x1024"): 0.042,
    ("gpt-image-1", "high", "1024x1024"): 0.167,
    ("gpt-image-1", "low", "1536x1024"): 0.016,
    ("gpt-image-1", "medium", "1536x1024"): 0.063,
    ("gpt-image-1", "high", "1536x1024"): 0.25,
    ("gpt-image-1", "low", "1024x1536"): 0.016,
    ("gpt-image-1", "medium", "1024x1536"): 0.063,
    ("gpt-image-1", "high", "1024x1536"): 0.25,
}
# gpt-image-1 bills tokens; when the response reports them they beat the per-image estimate.
_INPUT_USD_PER_TOKEN = 5.0 / 1_000_000
_OUTPUT_USD_PER_TOKEN = 40.0 / 1_000_000
_CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})


@dataclass(frozen=True)
class PlannedRequest:
    model: str
    size: Size
    quality: Quality | None

    @property
    def size_param(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"

    @property
    def base64_only(self) -> bool:
        return self.model in _BASE64_ONLY_MODELS


class OpenAIProvider:
    """OpenAI image generation through the official SDK, one HTTP call per `generate`."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        download_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=default_timeout_s
        )
        # A separate client for image URLs: they are pre-signed and must not receive the API key.
        self._downloads = download_client or httpx.AsyncClient(
            timeout=default_timeout_s, follow_redirects=True
        )
        self._owns_downloads = download_client is None

    async def generate(self, spec: ImageSpec, *, timeout_s: float) -> GeneratedImage:
        request = plan_request(spec)
        try:
            # The SDK's timeout bounds each read; this bounds the whole call, download included, so a server
            # that trickles bytes or never answers still ends on time.
            async with asyncio.timeout(timeout_s):
                response = await self._call_api(request, spec.prompt, timeout_s)
                image = _first_image(response)
                data = await self._image_bytes(image)
        except TimeoutError as error:
            raise ProviderTimeoutError(f"provider did not answer within {timeout_s}s") from error
        verify_image_bytes(data)
        return GeneratedImage(data=data, revised_prompt=image.revised_prompt, usage=_usage(request, response))

    def list_price_usd(self, spec: ImageSpec) -> float:
        try:
            return estimated_cost_usd(plan_request(spec))
        except ProviderConfigError:  # refused before any network call: nothing is billed
            return 0.0

    async def aclose(self) -> None:
        await self._client.close()
        if self._owns_downloads:
            await self._downloads.aclose()

    async def _call_api(self, request: PlannedRequest, prompt: str, timeout_s: float) -> ImagesResponse:
        try:
            response: object = await self._client.images.generate(
                model=request.model,
                prompt=prompt,
                n=1,
                size=request.size_param,
                quality=openai.omit if request.quality is None else request.quality,
                response_format=openai.omit if request.base64_only else "b64_json",
                timeout=timeout_s,
            )
        except openai.APIError as error:
            raise mapped_error(error) from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            # The SDK lets a 200 with an unparseable JSON body escape as the raw decode error.
            raise ProviderUnavailableError(f"provider answered with invalid JSON: {error}") from error
        if not isinstance(response, ImagesResponse):
            # Without a JSON content type the SDK hands back the body as text instead of raising.
            raise ProviderUnavailableError("provider answered with something other than JSON")
        return response

    async def _image_bytes(self, image: ApiImage) -> bytes:
        if image.b64_json:
            return _decoded_base64(image.b64_json)
        if image.url:
            # Provider URLs expire (about an hour for OpenAI): fetch now, never store the URL.
            return await self._download(image.url)
        raise InvalidProviderOutputError("provider response has neither b64_json nor url")

    async def _download(self, url: str) -> bytes:
        try:
            async with self._downloads.stream("GET", url) as response:
                _check_download_status(response.status_code)
                return await _read_capped(response)
        except httpx.TimeoutException as error:
            raise ProviderTimeoutError(f"image download timed out: {error}") from error
        except httpx.HTTPError as error:
            raise ProviderUnavailableError(f"image download failed: {error}") from error


def plan_request(spec: ImageSpec) -> PlannedRequest:
    """The model, size and quality to send, or ProviderConfigError before any network call."""
    sizes = SUPPORTED_SIZES.get(spec.model)
    if sizes is None:
        raise ProviderConfigError(f"openai provider has no model {spec.model!r} (one of {OPENAI_MODELS})")
    if spec.width <= 0 or spec.height <= 0:
        raise ProviderConfigError(f"size {spec.width}x{spec.height} must be positive")
    size = closest_supported_size(sizes, spec.width, spec.height)
    return PlannedRequest(model=spec.model, size=size, quality=_quality_for(spec.model, spec.quality))


def closest_supported_size(supported: tuple[Size, ...], width: int, height: int) -> Size:
    """Closest aspect ratio first (the generator crops and resizes later); then the smallest size that
    covers the request, so nothing is upscaled and nothing bigger is paid for; else the largest."""
    wanted_ratio = math.log(width / height)

    def preference(size: Size) -> tuple[float, bool, int]:
        ratio_gap = round(abs(math.log(size[0] / size[1]) - wanted_ratio), 6)
        covers = size[0] >= width and size[1] >= height
        area = size[0] * size[1]
        return ratio_gap, not covers, area if covers else -area

    return min(supported, key=preference)


def estimated_cost_usd(request: PlannedRequest) -> float:
    """List price of one image; gpt-image "auto" quality is priced as "high" so estimates never run low."""
    quality = request.quality or "standard"
    if quality == "auto":
        quality = "high"
    return _PRICE_PER_IMAGE_USD.get((request.model, quality, request.size_param), 0.0)


def mapped_error(error: openai.APIError) -> ProviderError:
    """The SDK's exception as one of ours, with what the retry policy needs."""
    if isinstance(error, openai.APITimeoutError):  # before APIConnectionError: it is a subclass
        return ProviderTimeoutError(f"provider timed out: {error.message}")
    if isinstance(error, openai.APIConnectionError):
        return ProviderUnavailableError(f"cannot reach provider: {error.message}")
    if isinstance(error, openai.APIStatusError):
        return _mapped_status_error(error)
    return ProviderUnavailableError(f"unreadable provider response: {error.message}")


def _mapped_status_error(error: openai.APIStatusError) -> ProviderError:
    status = error.status_code
    message = _provider_message(error)
    retry_after_s = retry_after_from_headers(error.response.headers)
    if error.code == "insufficient_quota":
        # Also a 429, but out of credit: waiting does not help, an operator must top up.
        return ProviderConfigError(message, status_code=status)
    if isinstance(error, openai.RateLimitError):
        return RateLimitedError(message, retry_after_s=retry_after_s, status_code=status)
    if status >= 500 or status in (408, 409):
        return ProviderUnavailableError(message, retry_after_s=retry_after_s, status_code=status)
    if error.code in _CONTENT_POLICY_CODES:
        return ContentPolicyError(message, status_code=status)
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError):
        return ProviderConfigError(message, status_code=status)
    return ProviderError(message, retryable=False, status_code=status)


def _provider_message(error: openai.APIStatusError) -> str:
    # The SDK's own message is "Error code: 400 - {...}"; the provider's sentence is what a user can act on.
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    return error.message


def _quality_for(model: str, requested: str | None) -> Quality | None:
    accepted = _QUALITIES[model]
    if not accepted:
        if requested not in (None, "standard"):
            raise ProviderConfigError(f"{model} has no quality option (got {requested!r})")
        return None
    if requested is None:
        return accepted[0]
    for quality in accepted:
        if quality == requested:
            return quality
    raise ProviderConfigError(f"{model} quality must be one of {accepted}, not {requested!r}")


def _first_image(response: ImagesResponse) -> ApiImage:
    if not response.data:
        raise InvalidProviderOutputError("provider response has no image")
    return response.data[0]


def _decoded_base64(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidProviderOutputError(f"provider image is not valid base64: {error}") from error


def _check_download_status(status: int) -> None:
    if status >= 500 or status == 429:
        raise ProviderUnavailableError(f"image download answered {status}", status_code=status)
    if status >= 400:
        # The URL is specific to this image (expired or refused); only a new generation gives a new one.
        raise InvalidProviderOutputError(f"image download answered {status}", status_code=status)


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > MAX_DOWNLOAD_BYTES:
            raise InvalidProviderOutputError(f"image download exceeds {MAX_DOWNLOAD_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _usage(request: PlannedRequest, response: ImagesResponse) -> ProviderUsage:
    tokens = response.usage
    if tokens is None or not request.base64_only:
        return ProviderUsage(
            images=1, input_tokens=None, output_tokens=None, estimated_cost_usd=estimated_cost_usd(request)
        )
    cost = tokens.input_tokens * _INPUT_USD_PER_TOKEN + tokens.output_tokens * _OUTPUT_USD_PER_TOKEN
    return ProviderUsage(
        images=1,
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
        estimated_cost_usd=round(cost, 6),
    )
