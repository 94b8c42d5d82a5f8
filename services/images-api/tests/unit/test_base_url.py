"""A site's base URL: private, loopback and link-local hosts only where configuration allows them."""

from __future__ import annotations

import pytest

from images_api.service.sites import validate_base_url
from writer_images.http import AppError

PRIVATE = [
    "http://localhost:8080",
    "http://wp.localhost",
    "http://blog.local",
    "http://127.0.0.1",
    "http://10.1.2.3",
    "http://192.168.0.10:8080",
    "http://169.254.169.254",
    "http://[::1]:8080",
    "http://0.0.0.0",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_a_private_host_is_refused_on_the_field_unless_allowed(url: str) -> None:
    with pytest.raises(AppError) as refused:
        validate_base_url(url, allow_private=False)

    assert refused.value.status_code == 422
    assert list(refused.value.errors) == ["base_url"]
    assert validate_base_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url", ["https://blog.example.com/", "http://93.184.215.14", "https://[2606:4700::1111]"]
)
def test_a_public_host_is_accepted_and_loses_its_trailing_slash(url: str) -> None:
    assert validate_base_url(url, allow_private=False) == url.rstrip("/")
