"""`make run` (writer_images.devstack): Ctrl-C at any moment stops promptly and leaves nothing behind;
`make clean` takes the database `make run` made on the shared server with it.

Each case runs the launcher in a subprocess (it installs signal handlers) with a real tansu broker on a
known port; what would need Postgres or the real services is replaced by the driver script.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from writer_images import devstack
from writer_images.infra.ports import free_port, wait_for_port
from writer_images.infra.postgres import create_database, drop_database, with_database


def _listening(port: int) -> bool:
    try:
        wait_for_port(port, timeout_s=0.3)
    except TimeoutError:
        return False
    return True


def _kill_leftovers(marker: str) -> list[int]:
    """Kill (and name) processes whose command line holds `marker`: what the launcher left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "devstack" not in cmdline:
            found.append(int(entry.name))
            os.kill(int(entry.name), signal.SIGKILL)
    return found


def _launch(tmp_path: Path, kafka_port: int, patches: str) -> subprocess.Popen[str]:
    driver = textwrap.dedent(
        """
        import sys
        from writer_images import devstack
        {patches}
        raise SystemExit(devstack.main(sys.argv[1:]))
        """
    ).format(patches=textwrap.dedent(patches))
    env = {**os.environ, "WI_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    return subprocess.Popen(
        [sys.executable, "-c", driver, "--var", str(tmp_path), "--kafka-port", str(kafka_port), "--no-demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_ctrl_c_while_topics_are_created_stops_the_broker(tmp_path: Path) -> None:
    port = free_port()
    # Ctrl-C arrives while the topics are being created, right after the broker started.
    launcher = _launch(
        tmp_path,
        port,
        """
        import asyncio, os, signal

        async def interrupted(*_args):
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.2)

        devstack.ensure_topics = interrupted
        devstack.SERVICES = ()
        """,
    )
    try:
        output, _ = launcher.communicate(timeout=30)
    finally:
        launcher.kill()
    leftovers = _kill_leftovers(f"tcp://127.0.0.1:{port}")
    assert not leftovers, f"broker left running after Ctrl-C:\n{output}"
    assert not _listening(port)


def test_ctrl_c_while_waiting_for_a_service_stops_at_once(tmp_path: Path) -> None:
    port = free_port()
    # A service that never answers /healthz (it exits at once): the launcher would wait 60 s for it.
    launcher = _launch(
        tmp_path,
        port,
        f"""
        devstack.SERVICES = (devstack.ServiceSpec("never-ready", "this", {free_port()}),)
        devstack._runnable = lambda spec: True
        """,
    )
    try:
        wait_for_port(port, timeout_s=20)
        time.sleep(1.0)
        os.killpg(launcher.pid, signal.SIGINT)
        started = time.monotonic()
        output, _ = launcher.communicate(timeout=15)
        assert time.monotonic() - started < 10, output
    finally:
        launcher.kill()
        leftovers = _kill_leftovers(f"tcp://127.0.0.1:{port}")
    assert "stopped." in output
    assert not leftovers, f"broker left running after Ctrl-C:\n{output}"


def _database_exists(server: str, name: str) -> bool:
    async def check() -> bool:
        conn = await asyncpg.connect(server)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    return asyncio.run(check())


@pytest.fixture
def make_run_database(pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway database standing in for the one `make run` makes on the shared server."""
    name = f"wi_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(create_database(pg_server_dsn, name))
    monkeypatch.setattr(devstack, "DATABASE", name)
    monkeypatch.setattr(devstack, "SHARED_SERVER", pg_server_dsn)
    monkeypatch.delenv("WI_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    yield name
    asyncio.run(drop_database(pg_server_dsn, name))


def test_make_clean_drops_the_database_make_run_made_on_the_shared_server(
    pg_server_dsn: str, make_run_database: str
) -> None:
    # `make clean` deletes var/ (the blobs); the database that points at them must go with it, or the
    # next `make run` finds the demo account "already present" with every image missing.
    assert devstack.main(["--drop-database"]) == 0
    assert not _database_exists(pg_server_dsn, make_run_database)
    assert devstack.main(["--drop-database"]) == 0  # nothing to drop is fine


def test_make_clean_leaves_a_configured_database_alone(
    pg_server_dsn: str, make_run_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WI_DATABASE_URL", with_database(pg_server_dsn, make_run_database))

    assert devstack.main(["--drop-database"]) == 0
    assert _database_exists(pg_server_dsn, make_run_database)


def test_make_clean_calls_the_database_drop() -> None:
    root = Path(__file__).resolve().parents[3]
    dry_run = subprocess.run(["make", "-n", "clean"], cwd=root, capture_output=True, text=True, check=True)
    assert "writer_images.devstack --drop-database" in dry_run.stdout


def test_make_run_makes_its_secrets_once_keeps_them_private_and_reuses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("WI_SECRETS_KEY")
    monkeypatch.delenv("WI_JWT_SECRET")
    path = tmp_path / "secrets.env"
    first = devstack.local_secrets(path)
    assert first.keys() == {"WI_SECRETS_KEY", "WI_JWT_SECRET"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Another run: the same secrets, so the tokens it issued and the site credentials it sealed still work.
    assert devstack.local_secrets(path) == first


def test_make_run_uses_the_secrets_the_environment_or_dotenv_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WI_JWT_SECRET", "an operator's own secret, 32 bytes or more")
    monkeypatch.delenv("WI_SECRETS_KEY")
    kept = devstack.local_secrets(tmp_path / "secrets.env")
    assert kept["WI_JWT_SECRET"] == "an operator's own secret, 32 bytes or more"
    (tmp_path / ".env").write_text("WI_SECRETS_KEY=the operator's key, in .env\n")
    assert devstack.local_secrets(tmp_path / "secrets.env") == {
        "WI_JWT_SECRET": "an operator's own secret, 32 bytes or more",
        "WI_SECRETS_KEY": "the operator's key, in .env",  # handed on: a service may not run where .env is
    }
