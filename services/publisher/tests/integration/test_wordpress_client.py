"""The WordPress client against a real WordPress: credential diagnoses and guarded redirects."""

from __future__ import annotations

import pytest

from publisher.adapters.wordpress import ClientConfig, SiteConnection, WordPressClients, WordPressError
from writer_images.infra.ports import free_port
from writer_images.testing.wordpress import WordPressSite

pytestmark = [pytest.mark.slow, pytest.mark.wordpress]


async def _check(
    base_url: str, username: str, password: str, *, allow_private: bool = True
) -> tuple[str, str]:
    clients = WordPressClients(ClientConfig(allow_private_urls=allow_private, timeout_s=5))
    try:
        client = await clients.for_site(SiteConnection(1, base_url, username, password))
        result = await client.check_credentials()
        return result.code, result.message
    except WordPressError as error:
        return error.code, error.message
    finally:
        await clients.aclose()


async def test_right_credentials_pass(wordpress_site: WordPressSite) -> None:
    code, message = await _check(
        wordpress_site.base_url, wordpress_site.editor_user, wordpress_site.editor_app_password
    )
    assert code == "ok" and "Editor" in message


async def test_a_wrong_application_password_is_reported_as_such(wordpress_site: WordPressSite) -> None:
    code, message = await _check(wordpress_site.base_url, "editor", "abcd efgh ijkl mnop qrst uvwx")
    assert code in ("bad_credentials", "not_authenticated") and "application password" in message


async def test_a_host_that_strips_the_authorization_header_is_named(
    wordpress_site: WordPressSite, faulty_proxy
) -> None:
    with faulty_proxy(wordpress_site.base_url, strip_authorization=True) as host:
        code, message = await _check(host.url, wordpress_site.editor_user, wordpress_site.editor_app_password)
    assert code == "not_authenticated" and "Authorization header" in message


async def test_a_site_that_is_not_wordpress_is_named(faulty_proxy) -> None:
    with faulty_proxy("http://127.0.0.1:9", status_for_all=404) as not_wordpress:
        code, _ = await _check(not_wordpress.url, "editor", "x")
    assert code == "not_wordpress"


async def test_an_unreachable_site_is_named() -> None:
    code, message = await _check(f"http://127.0.0.1:{free_port()}", "editor", "x")
    assert code == "unreachable" and "cannot reach" in message


async def test_private_addresses_are_refused_unless_allowed(wordpress_site: WordPressSite) -> None:
    code, _ = await _check(wordpress_site.base_url, "editor", "x", allow_private=False)
    assert code == "unsafe_url"
