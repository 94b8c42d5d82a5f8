"""Outbound URL guard (SSRF): only http(s), and no private, loopback or link-local addresses
unless configuration allows them (local runs and tests talk to WordPress on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class UnsafeUrlError(ValueError):
    pass


def check_url_shape(url: str) -> str:
    """Scheme and host only (no DNS): for validating input at the API."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError as exc:  # an unbalanced "[" or "]", a bad port
        raise UnsafeUrlError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError("only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeUrlError("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrlError("credentials in the URL are not allowed")
    return url.rstrip("/")


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def check_url(url: str, *, allow_private: bool) -> str:
    """Shape, then every address the host resolves to; refuses private ranges unless allowed."""
    check_url_shape(url)
    if allow_private:
        return url
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeUrlError(f"the host {host!r} does not resolve") from exc
    for info in infos:
        if _is_private(str(info[4][0])):
            raise UnsafeUrlError(f"the host {host!r} resolves to a private or loopback address")
    return url
