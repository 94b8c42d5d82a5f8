"""Outbound URL guard (SSRF): only http(s), and no private, loopback or link-local addresses
unless configuration allows them (local runs and tests talk to WordPress on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
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
    if not _is_host_name_or_address(parts.hostname):
        raise UnsafeUrlError(f"{parts.hostname!r} is not a host name or an IP address")
    return url.rstrip("/")


# RFC 1123 labels, plus "_": not a host name character, but Docker's service and container names have it and
# resolvers answer for them.
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _is_host_name_or_address(host: str) -> bool:
    """An IP address, or a DNS name (`_LABEL`s; international names by their IDNA form; one trailing dot
    allowed): `a..b`, `-a.example` or a name with a space would only fail later, at the publisher's DNS
    lookup, long after the user saved it."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or over-long label, or a character IDNA refuses
        return False
    name = ascii_host.removesuffix(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def is_private_address(address: str) -> bool:
    """A private, loopback, link-local, multicast, reserved or unspecified IP address (ValueError for
    anything that is not an IP address)."""
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
        if is_private_address(str(info[4][0])):
            raise UnsafeUrlError(f"the host {host!r} resolves to a private or loopback address")
    return url
