"""pytest fixtures for real WordPress sites (see `writer_images.testing.wordpress`).

`wordpress_site` is one plain site shared by the whole session; `wordpress_factory` starts sites with other
options (the bridge plugin pointing at a test's webhook receiver) and stops whatever is left at session end.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from writer_images.testing.wordpress import (
    MariaDBServer,
    WordPressSite,
    private_mariadb,
    start_wordpress_site,
)


class WordPressFactory:
    """Starts WordPress sites on demand; each runs until `stop(site)` or `close()`."""

    def __init__(self, base_dir: Path, mariadb: MariaDBServer) -> None:
        self._base_dir = base_dir
        self._mariadb = mariadb
        self._running: dict[str, contextlib.ExitStack] = {}

    def start(
        self,
        *,
        bridge_plugin: Path | None = None,
        webhook_url: str | None = None,
        bridge_secret: str | None = None,
        site_key: str = "site-1",
    ) -> WordPressSite:
        workdir = Path(tempfile.mkdtemp(prefix="site-", dir=self._base_dir))
        stack = contextlib.ExitStack()
        site = stack.enter_context(
            start_wordpress_site(
                workdir,
                bridge_plugin=bridge_plugin,
                webhook_url=webhook_url,
                bridge_secret=bridge_secret,
                site_key=site_key,
                mariadb=self._mariadb,
            )
        )
        self._running[site.db_name] = stack
        return site

    def stop(self, site: WordPressSite) -> None:
        stack = self._running.pop(site.db_name, None)
        if stack is not None:
            stack.close()

    def close(self) -> None:
        # Stop every site even when one teardown fails; the first failure is raised afterwards.
        with contextlib.ExitStack() as all_sites:
            for stack in self._running.values():
                all_sites.push(stack)
            self._running.clear()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """The machine's MariaDB on 127.0.0.1:3306 when it answers, else a private server for the session (as
    Postgres falls back to a private cluster): a machine without one still runs every WordPress test."""
    machine = MariaDBServer()
    if machine.answers():
        yield machine
        return
    with private_mariadb(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture(scope="session")
def wordpress_factory(
    tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDBServer
) -> Iterator[WordPressFactory]:
    factory = WordPressFactory(tmp_path_factory.mktemp("wordpress"), mariadb)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def wordpress_site(wordpress_factory: WordPressFactory) -> WordPressSite:
    """A plain WordPress (no bridge plugin) with an admin and an editor, both with application passwords."""
    return wordpress_factory.start()
