"""A real HTTP server speaking OpenAI's image API, for tests and benchmarks.

The real `openai` SDK talks to it over real sockets (`base_url=fake.base_url`), so timeouts, retries and
error parsing are exercised for real. Faults are scripted per call:

    with FakeOpenAI.start() as fake:
        fake.script(rate_limited(retry_after_s=1), ok(latency_s=0.2))  # the next two calls
        fake.set_default(ok())                                          # every call after those
        ...
        assert fake.total_calls == 2

Threaded (one thread per connection) so that latency tests measure the client's concurrency, not ours.
Standard library only: images are tiny deterministic PNGs, encoded once per size.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_GENERATIONS_PATH = "/v1/images/generations"
_FILES_PREFIX = "/files/"
_MODEL_SIZES: dict[str, tuple[str, ...]] = {
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "gpt-image-1": ("1024x1024", "1536x1024", "1024x1536", "auto"),
}
_BASE64_ONLY_MODELS = frozenset({"gpt-image-1"})
# Output tokens OpenAI reports for gpt-image-1 at 1024x1024, by quality (used to fake `usage`).
_GPT_IMAGE_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "auto": 1056}


# --- behaviours ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one generation call."""

    latency_s: float = 0.0
    status: int = 200
    body: bytes | None = None  # replaces the normal answer when set
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False  # never answer; released by `reset()` or `stop()`
    respond_with_url: bool = False  # like a compatible server that ignores response_format=b64_json


def ok(latency_s: float = 0.0) -> Behaviour:
    return Behaviour(latency_s=latency_s)


def error_body(message: str, *, error_type: str, code: str | None) -> bytes:
    """OpenAI's error JSON shape."""
    return json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()


def fail_with(
    status: int,
    body: bytes | Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    latency_s: float = 0.0,
) -> Behaviour:
    if body is None:
        body = error_body(f"fake failure {status}", error_type="server_error", code=None)
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return Behaviour(latency_s=latency_s, status=status, body=body, headers=tuple((headers or {}).items()))


def rate_limited(retry_after_s: float = 1, *, retry_after_ms: int | None = None) -> Behaviour:
    headers = {"retry-after": _number(retry_after_s)}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    body = error_body(
        "Rate limit reached for images per minute.", error_type="requests", code="rate_limit_exceeded"
    )
    return fail_with(429, body, headers)


def server_error(status: int = 500) -> Behaviour:
    return fail_with(status, error_body("The server had an error.", error_type="server_error", code=None))


def content_policy(
    message: str = "Your request was rejected as a result of our safety system.",
) -> Behaviour:
    body = error_body(message, error_type="invalid_request_error", code="content_policy_violation")
    return fail_with(400, body)


def malformed_json() -> Behaviour:
    """A 200 whose JSON body is cut short, as a dying proxy would send it."""
    return Behaviour(body=b'{"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgo')


def garbage_image() -> Behaviour:
    """A well-formed 200 whose base64 decodes to bytes that are not an image."""
    not_an_image = base64.b64encode(b"this is not an image at all").decode()
    return Behaviour(body=json.dumps({"created": 1700000000, "data": [{"b64_json": not_an_image}]}).encode())


def hang() -> Behaviour:
    return Behaviour(hang=True)


def url_response(latency_s: float = 0.0) -> Behaviour:
    return Behaviour(latency_s=latency_s, respond_with_url=True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --- recorded calls and shared state --------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    model: str | None
    prompt: str | None
    size: str | None
    quality: str | None
    response_format: str | None
    n: int | None
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _State:
    """Everything handler threads share; every access holds `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    script: deque[Behaviour] = field(default_factory=deque)
    default: Behaviour = field(default_factory=ok)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[RecordedRequest] = field(default_factory=list)
    prompts: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    downloads: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    file_ids: itertools.count[int] = field(default_factory=itertools.count)

    def begin_call(self, request: RecordedRequest) -> tuple[Behaviour, threading.Event]:
        with self.lock:
            self.requests.append(request)
            if request.prompt is not None:
                self.prompts[request.prompt] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            behaviour = self.script.popleft() if self.script else self.default
            # Handed out now, so a later reset() releases exactly the calls that were hanging before it.
            return behaviour, self.release

    def end_call(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def store_file(self, data: bytes) -> str:
        with self.lock:
            file_id = f"img-{next(self.file_ids)}"
            self.files[file_id] = data
            return file_id

    def take_download(self, file_id: str) -> bytes | None:
        with self.lock:
            data = self.files.get(file_id)
            if data is not None:
                self.downloads += 1
            return data


# --- the server ----------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 would serialise a burst of concurrent clients

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout test) closes its socket under us: expected, not worth a traceback.
        pass


class FakeOpenAI:
    """A running fake; start with `FakeOpenAI.start()`, use as a context manager or call `stop()`."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._state = server.state

    @classmethod
    def start(cls, port: int = 0) -> FakeOpenAI:
        server = _Server(("127.0.0.1", port), _State())
        thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
        thread.start()
        return cls(server, thread)

    def stop(self) -> None:
        self._state.release.set()  # hanging handlers return instead of holding their threads
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- programming

    def script(self, *behaviours: Behaviour) -> None:
        """Answer the next calls with these behaviours, in order, then fall back to the default."""
        with self._state.lock:
            self._state.script.extend(behaviours)

    def set_default(self, behaviour: Behaviour) -> None:
        with self._state.lock:
            self._state.default = behaviour

    def reset(self) -> None:
        """Forget script, default, counters and files; release hanging calls."""
        with self._state.lock:
            self._state.release.set()
            self._state.release = threading.Event()
            self._state.script.clear()
            self._state.default = ok()
            self._state.requests.clear()
            self._state.prompts.clear()
            self._state.max_in_flight = self._state.in_flight
            self._state.downloads = 0
            self._state.files.clear()

    # -- observing

    @property
    def total_calls(self) -> int:
        with self._state.lock:
            return len(self._state.requests)

    @property
    def calls_per_prompt(self) -> dict[str, int]:
        with self._state.lock:
            return dict(self._state.prompts)

    @property
    def max_in_flight(self) -> int:
        with self._state.lock:
            return self._state.max_in_flight

    @property
    def in_flight(self) -> int:
        with self._state.lock:
            return self._state.in_flight

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def downloads(self) -> int:
        """GETs of `/files/<id>.png`, that is images fetched from a url response."""
        with self._state.lock:
            return self._state.downloads

    def wait_for_calls(self, count: int, timeout_s: float = 5.0) -> None:
        """Block until at least `count` generation calls arrived (for tests that race a client)."""
        deadline = time.monotonic() + timeout_s
        while self.total_calls < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.total_calls} calls after {timeout_s}s, expected {count}")
            time.sleep(0.005)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds 40 ms to each call.
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") != _GENERATIONS_PATH:
            self._send_json(
                404, error_body(f"Unknown path {self.path}", error_type="invalid_request_error", code=None)
            )
            return
        payload = self._read_json()
        behaviour, release = self.server.state.begin_call(self._recorded(payload))
        try:
            self._answer(behaviour, release, payload)
        finally:
            self.server.state.end_call()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        file_id = path.removeprefix(_FILES_PREFIX).removesuffix(".png")
        data = self.server.state.take_download(file_id) if path.startswith(_FILES_PREFIX) else None
        if data is None:
            self._send(404, b"not found", "text/plain")
            return
        self._send(200, data, "image/png")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest output is for failures

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return payload if isinstance(payload, dict) else {}

    def _recorded(self, payload: dict[str, Any]) -> RecordedRequest:
        def text(key: str) -> str | None:
            value = payload.get(key)
            return value if isinstance(value, str) else None

        count = payload.get("n")
        return RecordedRequest(
            model=text("model"),
            prompt=text("prompt"),
            size=text("size"),
            quality=text("quality"),
            response_format=text("response_format"),
            n=count if isinstance(count, int) else None,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=payload,
        )

    def _answer(self, behaviour: Behaviour, release: threading.Event, payload: dict[str, Any]) -> None:
        if behaviour.latency_s > 0:
            release.wait(behaviour.latency_s)
        if behaviour.hang:
            release.wait()
            self.close_connection = True  # leave without a response, as a stuck upstream would
            return
        if behaviour.body is not None or behaviour.status != 200:
            body = behaviour.body if behaviour.body is not None else b""
            self._send(behaviour.status, body, "application/json", dict(behaviour.headers))
            return
        self._generate(payload, behaviour.respond_with_url)

    def _generate(self, payload: dict[str, Any], force_url: bool) -> None:
        problem = _request_problem(payload, self.headers.get("authorization"))
        if problem is not None:
            status, body = problem
            self._send_json(status, body)
            return
        model = str(payload.get("model") or "dall-e-2")
        size = str(payload.get("size") or "1024x1024")
        png = tiny_png(*_dimensions(size))
        image: dict[str, Any] = {}
        if force_url or payload.get("response_format") == "url":
            image["url"] = (
                f"http://127.0.0.1:{self.server.server_address[1]}/files/{self.server.state.store_file(png)}.png"
            )
        else:
            image["b64_json"] = base64.b64encode(png).decode()
        if model == "dall-e-3":
            image["revised_prompt"] = f"A detailed illustration: {payload['prompt']}"
        answer: dict[str, Any] = {"created": int(time.time()), "data": [image]}
        if model in _BASE64_ONLY_MODELS:
            answer["usage"] = _gpt_image_usage(str(payload["prompt"]), str(payload.get("quality") or "auto"))
        self._send_json(200, json.dumps(answer).encode())

    def _send_json(self, status: int, body: bytes) -> None:
        self._send(status, body, "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.send_header("x-request-id", f"req_fake_{threading.get_ident()}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up first


def _request_problem(payload: dict[str, Any], authorization: str | None) -> tuple[int, bytes] | None:
    """What the real API would refuse, so the client's request shape is checked too."""
    if not authorization or not authorization.startswith("Bearer ") or len(authorization) <= len("Bearer "):
        return 401, error_body("Missing API key.", error_type="invalid_request_error", code="invalid_api_key")
    model = str(payload.get("model") or "dall-e-2")
    if model not in _MODEL_SIZES:
        return 404, error_body(
            f"The model '{model}' does not exist.", error_type="invalid_request_error", code="model_not_found"
        )
    if not isinstance(payload.get("prompt"), str) or not payload["prompt"]:
        return 400, error_body("'prompt' is required.", error_type="invalid_request_error", code=None)
    if model in _BASE64_ONLY_MODELS and "response_format" in payload:
        return 400, error_body(
            "Unknown parameter: 'response_format'.",
            error_type="invalid_request_error",
            code="unknown_parameter",
        )
    if str(payload.get("size") or "1024x1024") not in _MODEL_SIZES[model]:
        return 400, error_body(
            f"Invalid size for {model}.", error_type="invalid_request_error", code="invalid_size"
        )
    if model == "dall-e-3" and payload.get("n", 1) != 1:
        return 400, error_body("dall-e-3 supports n=1 only.", error_type="invalid_request_error", code=None)
    return None


def _dimensions(size: str) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    width, height = size.split("x")
    return int(width), int(height)


def _gpt_image_usage(prompt: str, quality: str) -> dict[str, Any]:
    text_tokens = max(1, len(prompt.split()))
    output_tokens = _GPT_IMAGE_OUTPUT_TOKENS.get(quality, _GPT_IMAGE_OUTPUT_TOKENS["auto"])
    return {
        "input_tokens": text_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + output_tokens,
    }


@lru_cache(maxsize=32)
def tiny_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of the given size: one colour per size, a darker band at the top; cached."""
    colour = bytes(((width * 7) % 256, (height * 13) % 256, ((width + height) * 3) % 256))
    band = bytes(channel // 2 for channel in colour)
    band_rows = max(1, height // 8)
    rows = [b"\x00" + band * width] * band_rows + [b"\x00" + colour * width] * (height - band_rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(b"".join(rows), 6)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )
