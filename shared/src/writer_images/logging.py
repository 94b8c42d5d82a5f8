"""One logging setup: structlog rendering JSON lines that carry request_id/correlation_id/event_id.

Context is bound with `structlog.contextvars`, so every line logged while a request or an event
is handled carries its ids without passing them around.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

bind_context = structlog.contextvars.bind_contextvars
clear_context = structlog.contextvars.clear_contextvars
bound_context = structlog.contextvars.bound_contextvars


def configure_logging(service: str, level: str = "INFO", *, json: bool = True) -> None:
    """One JSON line per event on stderr, from our structlog loggers and from libraries' stdlib loggers.

    Our own loggers take structlog's fast path (a level-filtering bound logger writing bytes rendered by
    orjson): a hot path such as the webhook receiver logs every request, and the stdlib route (LogRecord,
    handler, formatter) cost several times more per line. Libraries' stdlib records are rendered by the same
    processors through a `ProcessorFormatter`, so both kinds of line look alike.
    """
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    structlog.configure(
        processors=[
            *shared,
            _name_the_logger,
            structlog.processors.format_exc_info,
            _renderer(json, as_bytes=True),
        ],
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(json, as_bytes=False),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    structlog.contextvars.bind_contextvars(service=service)
    for noisy in ("aiokafka", "kafka", "faststream", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _renderer(json: bool, *, as_bytes: bool) -> structlog.types.Processor:
    if not json:
        console = structlog.dev.ConsoleRenderer(colors=False)
        if not as_bytes:
            return console
        return lambda logger, name, event: console(logger, name, event).encode()
    if as_bytes:
        return structlog.processors.JSONRenderer(serializer=orjson.dumps, default=str)
    return structlog.processors.JSONRenderer(serializer=_dumps_text, default=str)


def _dumps_text(value: Any, **kwargs: Any) -> str:
    return orjson.dumps(value, **kwargs).decode()


def get_logger(name: str) -> Any:
    """A bound logger that names its module in every line (`logger`), as stdlib loggers do."""
    # structlog.get_logger reserves the keyword `logger`: bind under another key, renamed when rendered.
    return structlog.get_logger(logger_name=name)


def _name_the_logger(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event
