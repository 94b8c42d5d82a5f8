"""Absolute, short-lived signed URLs for blobs, so that a browser's <img> can load them without a header."""

from __future__ import annotations

import time
from urllib.parse import quote

from images_api.adapters.security import media_expiry, media_signature


class MediaSigner:
    def __init__(self, public_base_url: str, secret: str, ttl_s: int) -> None:
        self._base = public_base_url.rstrip("/")
        self._secret = secret
        self._ttl_s = ttl_s

    def url_for(self, account_id: int, blob_key: str | None, now: float | None = None) -> str | None:
        if not blob_key:
            return None
        exp = media_expiry(time.time() if now is None else now, self._ttl_s)
        sig = media_signature(self._secret, account_id, blob_key, exp)
        return f"{self._base}/v1/media/{quote(blob_key)}?acc={account_id}&exp={exp}&sig={sig}"
