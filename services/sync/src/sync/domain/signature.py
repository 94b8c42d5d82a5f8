"""Webhook signatures as the bridge plugin makes them (Standard Webhooks style, secret used as UTF-8).

`webhook-signature: v1,<base64 HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{raw body}")>`; several
space-separated signatures are accepted (a sender rotating its secret signs with both).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


class SignatureError(Exception):
    """The webhook is not authentic or not fresh. `reason` is for logs only, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedHeaders:
    webhook_id: str
    timestamp: str
    signature: str


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The signature header value for a body (what the plugin sends; tests and benchmarks use it too)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_timestamp(timestamp: str, *, now: float, tolerance_s: int) -> None:
    """Refuse a timestamp that is not an integer or lies more than `tolerance_s` from now (replay window)."""
    # str.isdigit() also accepts "²" or Arabic-Indic digits, which int() then refuses or reads: ASCII only.
    if not (0 < len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit()):
        raise SignatureError("timestamp is not unix seconds")
    if abs(now - int(timestamp)) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance window")


def verify(secret: str, headers: SignedHeaders, body: bytes) -> None:
    """Constant-time comparison against every `v1,` signature offered; raises `SignatureError`."""
    expected = sign(secret, headers.webhook_id, headers.timestamp, body).encode()
    matched = False
    for offered in headers.signature.split(" "):
        # Compare every candidate (no early exit) so timing does not tell which one matched.
        matched |= hmac.compare_digest(expected, offered.strip().encode())
    if not matched:
        raise SignatureError("signature mismatch")
