"""The real-WordPress fixture: what tests of the publisher and sync can count on."""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from writer_images.testing import wordpress
from writer_images.testing.wordpress import (
    MariaDBServer,
    WordPressSite,
    private_mariadb,
    start_wordpress_site,
    wordpress_available,
)

pytestmark = [pytest.mark.wordpress, pytest.mark.slow]


def png(width: int = 4, height: int = 4) -> bytes:
    """A small valid PNG (WordPress runs GD over uploads, so the bytes must decode)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_site_answers_the_rest_index(wordpress_site: WordPressSite) -> None:
    index = httpx.get(f"{wordpress_site.rest_url}/")

    assert index.status_code == 200
    assert "wp/v2" in index.json()["namespaces"]
    assert wordpress_site.bridge_secret is None


def test_application_passwords_authenticate_admin_and_editor(wordpress_site: WordPressSite) -> None:
    for auth, role in ((wordpress_site.admin_auth, "administrator"), (wordpress_site.editor_auth, "editor")):
        me = httpx.get(f"{wordpress_site.rest_url}/wp/v2/users/me", params={"context": "edit"}, auth=auth)

        assert me.status_code == 200
        assert me.json()["roles"] == [role]


def test_a_wrong_application_password_gets_401(wordpress_site: WordPressSite) -> None:
    me = httpx.get(
        f"{wordpress_site.rest_url}/wp/v2/users/me", auth=(wordpress_site.admin_user, "wrong password")
    )

    assert me.status_code == 401


def test_media_upload_with_content_disposition_is_stored_and_served(wordpress_site: WordPressSite) -> None:
    image = png()

    uploaded = httpx.post(
        f"{wordpress_site.rest_url}/wp/v2/media",
        content=image,
        headers={"Content-Type": "image/png", "Content-Disposition": 'attachment; filename="pixel.png"'},
        auth=wordpress_site.editor_auth,
    )

    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["media_type"] == "image"
    served = httpx.get(uploaded.json()["source_url"])
    assert served.status_code == 200
    assert served.content == image


def test_media_upload_without_content_disposition_is_refused(wordpress_site: WordPressSite) -> None:
    refused = httpx.post(
        f"{wordpress_site.rest_url}/wp/v2/media",
        content=png(),
        headers={"Content-Type": "image/png"},
        auth=wordpress_site.editor_auth,
    )

    assert refused.status_code == 400
    assert refused.json()["code"] == "rest_upload_no_content_disposition"


def test_leaving_the_context_stops_the_server_and_drops_the_database(
    tmp_path: Path, mariadb: MariaDBServer
) -> None:
    with start_wordpress_site(tmp_path, mariadb=mariadb) as site:
        assert httpx.get(f"{site.rest_url}/").status_code == 200
        assert mariadb.database_exists(site.db_name)
        port = int(site.base_url.rsplit(":", 1)[1])

    assert not mariadb.database_exists(site.db_name)
    assert not site.root_dir.exists()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_wordpress_is_available_on_this_machine(mariadb: MariaDBServer) -> None:
    wordpress_available(mariadb)


def test_a_machine_without_a_mariadb_server_gets_a_private_one_that_serves_wordpress(tmp_path: Path) -> None:
    with private_mariadb(tmp_path / "mariadb") as server:
        assert server.port != MariaDBServer().port
        with start_wordpress_site(tmp_path / "site", mariadb=server) as site:
            assert httpx.get(f"{site.rest_url}/").status_code == 200
            assert server.database_exists(site.db_name)
            assert site.run_sql("SELECT COUNT(*) FROM wp_users").strip() == "2", "admin and editor"
    assert not server.answers(), "the private server stops with its context"


def test_missing_wordpress_files_fail_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(wordpress, "WORDPRESS_SOURCE", tmp_path / "no-wordpress")

    with pytest.raises(RuntimeError, match="no-wordpress"):
        wordpress_available()


def test_missing_php_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(RuntimeError, match="php"):
        wordpress_available()
