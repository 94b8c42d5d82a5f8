"""Run the whole product locally: `python -m writer_images.devstack` (what `make run` calls).

Starts a tansu broker, uses `WI_DATABASE_URL`/`DATABASE_URL` or the server on 127.0.0.1:5432 or
else a private PostgreSQL cluster under `var/pgdata`, creates the topics, starts every service that
exists as a supervised subprocess, seeds the demo account once, and prints the URLs. Ctrl-C (or
SIGTERM) stops every child process group; nothing is left behind.

Secrets: `WI_SECRETS_KEY` and `WI_JWT_SECRET` from the environment or `.env`, else made once and kept in
`var/secrets.env` (mode 0600), so that tokens and sealed site credentials outlive a restart.

`--drop-database` (what `make clean` runs) drops the database it made on the shared server: the blobs
live in var/, so a database that outlives them points at images that are gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from writer_images.infra.broker import TansuBroker
from writer_images.infra.ports import free_port
from writer_images.infra.postgres import (
    DEFAULT_SERVER,
    drop_database,
    ensure_database,
    postgres_server,
    server_reachable,
)
from writer_images.kafka import ensure_topics
from writer_images.settings import configured_secrets, development_secrets

DATABASE = "writer_images"  # on the shared server; a private cluster lives (and dies) in var/pgdata
SHARED_SERVER = DEFAULT_SERVER  # what postgres_server() tries first


def _configured_database_url() -> str | None:
    return os.environ.get("WI_DATABASE_URL") or os.environ.get("DATABASE_URL")


def drop_shared_database() -> None:
    """Drop the database `make run` made on the shared server; a configured database is the user's own."""
    if _configured_database_url():
        print("WI_DATABASE_URL/DATABASE_URL is set: leaving that database alone")
        return
    if asyncio.run(server_reachable(SHARED_SERVER)):
        asyncio.run(drop_database(SHARED_SERVER, DATABASE))
        print(f"dropped database {DATABASE} (if it existed) on {SHARED_SERVER}")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    port: int


SERVICES = (
    ServiceSpec("images-api", "images_api", 8000),
    ServiceSpec("generator", "generator", 8001),
    ServiceSpec("publisher", "publisher", 8002),
    ServiceSpec("sync", "sync", 8003),
)


def local_secrets(path: Path) -> dict[str, str]:
    """The services' secrets: those the environment or `.env` sets, else those kept in `path` (made and
    written there, 0600, on first use)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text("".join(f"{name}={value}\n" for name, value in development_secrets().items()))
    kept = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {**kept, **configured_secrets()}


def _runnable(spec: ServiceSpec) -> bool:
    return importlib.util.find_spec(f"{spec.package}.__main__") is not None


class Supervisor:
    """Keeps each service running (restarts a crashed one with backoff) until asked to stop."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self.stopping = False

    def start(self, spec: ServiceSpec) -> None:
        env = {**os.environ, **self.env, "WI_HTTP_PORT": str(spec.port), "WI_SERVICE_NAME": spec.name}
        log = open(self.log_dir / f"{spec.name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.children[spec.name] = subprocess.Popen(
            [sys.executable, "-m", spec.package],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def watch(self, specs: list[ServiceSpec]) -> None:
        by_name = {s.name: s for s in specs}
        while not self.stopping:
            time.sleep(0.5)
            for name, child in list(self.children.items()):
                if child.poll() is not None and not self.stopping:
                    count = self.restarts.get(name, 0) + 1
                    self.restarts[name] = count
                    print(
                        f"! {name} exited with {child.returncode}; restarting (#{count}), see var/log/{name}.log"
                    )
                    self.pause(min(30, 2**count))
                    if not self.stopping:
                        self.start(by_name[name])

    def pause(self, seconds: float) -> None:
        """Sleep, but wake as soon as a stop is asked for (Ctrl-C must not wait out a backoff)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        self.stopping = True
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)


def _wait_healthy(port: int, supervisor: Supervisor, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not supervisor.stopping:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--var", type=Path, default=Path("var"), help="state directory (blobs, logs, pgdata)")
    parser.add_argument("--kafka-port", type=int, default=0, help="broker port (default: a free one)")
    parser.add_argument("--no-demo", action="store_true", help="do not seed the demo account")
    parser.add_argument(
        "--drop-database",
        action="store_true",
        help=f"drop the {DATABASE} database on the shared server and exit (part of `make clean`)",
    )
    args = parser.parse_args(argv)
    if args.drop_database:
        drop_shared_database()
        return 0

    var: Path = args.var.resolve()
    (var / "log").mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    supervisor = Supervisor(env, var / "log")

    # Installed before anything starts: a Ctrl-C at any moment only asks to stop, and every step below
    # checks it, so whatever was started (broker, private Postgres, services) is stopped in `finally`.
    def shutdown(*_: object) -> None:
        supervisor.stopping = True

    def stopped() -> bool:  # a call, not the attribute: the signal handler changes it behind the type checker
        return supervisor.stopping

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    postgres = contextlib.ExitStack()
    broker: TansuBroker | None = None
    try:
        database_url = _configured_database_url()
        if not database_url:  # the local server if it answers, else a private cluster in var/pgdata
            server = postgres.enter_context(postgres_server(var / "pgdata"))
            database_url = asyncio.run(ensure_database(server, DATABASE))
        if stopped():
            return 0
        broker = TansuBroker(port=args.kafka_port or free_port(), log_path=var / "log" / "tansu.log")
        broker.start()
        asyncio.run(ensure_topics(broker.bootstrap, 3))
        if stopped():
            return 0

        env.update(
            {
                "WI_DATABASE_URL": database_url,
                "WI_KAFKA_BOOTSTRAP": broker.bootstrap,
                "WI_BLOB_DIR": str(var / "blobs"),
                "WI_ALLOW_PRIVATE_URLS": "true",
                "WI_KAFKA_SESSION_TIMEOUT_MS": "2000",
                "WI_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
                "WI_KAFKA_FETCH_MAX_WAIT_MS": "20",
                "WI_PUBLIC_BASE_URL": "http://127.0.0.1:8000",
                "WI_LOG_JSON": "true",
                **local_secrets(var / "secrets.env"),
            }
        )
        specs = [s for s in SERVICES if _runnable(s)]
        for spec in specs:
            supervisor.start(spec)
        healthy = {s.name: _wait_healthy(s.port, supervisor) for s in specs}
        if stopped():
            return 0
        demo = ""
        if healthy.get("images-api") and not args.no_demo:
            seeded = subprocess.run(
                [sys.executable, "-m", "images_api", "seed-demo"],
                env={**os.environ, **env},
                check=False,
                capture_output=True,
                text=True,
            )
            demo = seeded.stdout.strip() or seeded.stderr.strip()[-500:]
            if stopped():  # the terminal's Ctrl-C interrupted the seeding too
                return 0
        print("\nWriter Images is running:")
        print(f"  broker (tansu)   {broker.bootstrap}")
        print(f"  postgres         {database_url}")
        for spec in specs:
            state = "ready" if healthy[spec.name] else "NOT READY (see var/log)"
            print(f"  {spec.name:<16} http://127.0.0.1:{spec.port}  [{state}]")
        if "images-api" in healthy:
            print("  web page         http://127.0.0.1:8000/")
            print("  API docs         http://127.0.0.1:8000/docs")
            print(f"  demo             {demo or 'not seeded (--no-demo)'}")
        print(f"  logs             {var / 'log'}\nCtrl-C stops everything.", flush=True)
        supervisor.watch(specs)
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
        if broker is not None:
            broker.stop()
        postgres.close()
        print("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
