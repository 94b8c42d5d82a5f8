from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from writer_images.secrets import SecretBox
from writer_images.urlguard import UnsafeUrlError, check_url, check_url_shape

KEY = "b2XHj9u4m0sBSnw2tYQ8k0pQ5r1Wm9kq8v1mN3cZ7aE="


@pytest.mark.parametrize(
    "url", ["ftp://blog.example", "file:///etc/passwd", "https://user:pw@blog.example", "http://"]
)
def test_only_plain_http_urls_are_accepted(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        check_url_shape(url)


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://blog.example]", "http://blog.example:99999", "http://blog.example:port"]
)
def test_a_url_urllib_cannot_take_apart_is_unsafe_not_a_crash(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        check_url_shape(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://a..b",
        "http://.blog.example",
        "http://-blog.example",
        "http://blog-.example",
        "http://my blog.example",
        "http://" + "a" * 64 + ".example",
        "http://" + ".".join(["a" * 63] * 4) + ".example",
    ],
)
def test_a_host_that_is_no_dns_name_is_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="not a host name or an IP address"):
        check_url_shape(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://blog.example",
        "https://Blog.Example.",
        "http://localhost:8080",
        "https://xn--bcher-kva.example",
        "https://bücher.example",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://wordpress_1:8080",  # a Docker container's name
        "https://" + "a" * 63 + ".example",
    ],
)
def test_host_names_and_addresses_are_accepted(url: str) -> None:
    assert check_url_shape(url) == url.rstrip("/")


async def test_loopback_and_private_addresses_are_refused_unless_allowed() -> None:
    for url in ("http://127.0.0.1:8080", "http://10.1.2.3", "http://169.254.169.254/latest", "http://[::1]/"):
        with pytest.raises(UnsafeUrlError, match="private or loopback"):
            await check_url(url, allow_private=False)
    assert await check_url("http://127.0.0.1:8080", allow_private=True) == "http://127.0.0.1:8080"


def test_secrets_round_trip_and_fail_with_another_key() -> None:
    sealed = SecretBox(KEY).seal("app pass word")
    assert "app pass" not in sealed
    assert SecretBox(KEY).open(sealed) == "app pass word"
    other = SecretBox(Fernet.generate_key().decode())
    with pytest.raises(ValueError, match="cannot be decrypted"):
        other.open(sealed)
