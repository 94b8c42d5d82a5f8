"""One settings pattern for every service: environment variables prefixed `WI_`, `.env` supported."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TypeVar

from cryptography.fernet import Fernet
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service needs; each service subclasses it and adds its own fields."""

    model_config = SettingsConfigDict(env_prefix="WI_", env_file=".env", extra="ignore")

    service_name: str = "writer-images"
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/writer_images",
        description="asyncpg DSN; `host=` may be a Unix socket directory",
    )
    db_pool_min: int = 1
    db_pool_max: int = 10
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = 3
    # Short group timeouts make joins and rebalances fast on tansu and in tests (see ENVIRONMENT.md).
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    # Apache Kafka answers a waiting fetch as soon as data arrives; tansu waits the full time, so
    # local runs and tests set this low (20 ms) or every hop would cost up to this much latency.
    kafka_fetch_max_wait_ms: int = 500
    # After a wake-up the outbox relay waits this long before claiming, so that many small transactions
    # leave as one batch (Kafka's linger.ms, one level up); 0 relays at once.
    outbox_linger_s: float = 0.0
    blob_dir: Path = Path("var/blobs")
    log_level: str = "INFO"
    log_json: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    allow_private_urls: bool = False
    consumer_group: str = Field(default="", description="Kafka consumer group; empty means the service name")
    consumer_max_attempts: int = 5
    consumer_backoff_base_s: float = 0.2
    consumer_backoff_max_s: float = 30.0
    # How long a handled event's id is remembered (`inbox.InboxPruner`): keep it above the topics' retention,
    # or an event the broker still holds could be delivered again after its id was forgotten.
    inbox_retention_s: int = Field(default=14 * 24 * 3600, ge=24 * 3600)


class SiteSecretsSettings(ServiceSettings):
    """Settings of a service that seals or opens site credentials (images-api seals; publisher and sync open).

    The key has no default: a published one would let anyone who reads this repository open every stored
    application password. `development_secrets()` makes one for local runs and tests."""

    secrets_key: str = Field(
        description="Fernet key (32 url-safe base64-encoded bytes), the same in every service that has it"
    )

    @field_validator("secrets_key")
    @classmethod
    def _a_fernet_key(cls, key: str) -> str:
        try:
            Fernet(key.encode())
        except ValueError:
            raise ValueError(
                "not a Fernet key: 32 url-safe base64-encoded bytes, e.g. from `openssl rand -base64 32 | tr '+/' '-_'`"
            ) from None
        return key


def development_secrets() -> dict[str, str]:
    """New random values for the settings that have no default (`WI_SECRETS_KEY`, `WI_JWT_SECRET`), for a
    local stack, a test session or a benchmark; production sets its own."""
    return {"WI_SECRETS_KEY": Fernet.generate_key().decode(), "WI_JWT_SECRET": secrets.token_urlsafe(48)}


class _Secrets(BaseSettings):
    """The secrets as a service would find them (the environment, then `.env`)."""

    model_config = ServiceSettings.model_config
    secrets_key: str = ""
    jwt_secret: str = ""


def configured_secrets() -> dict[str, str]:
    """The secrets a service started here would find (the environment, then `.env`); unset ones are absent."""
    return {f"WI_{name.upper()}": value for name, value in _Secrets().model_dump().items() if value}


def use_development_secrets() -> None:
    """Export the secrets for this process and the services it starts, wherever they run: those the
    environment or `.env` sets, else new ones."""
    os.environ.update({**development_secrets(), **configured_secrets()})


class JobSettings(ServiceSettings):
    """Settings of a service that runs durable jobs (`writer_images.jobs`)."""

    job_concurrency: int = 8
    job_lease_s: float = 60.0
    job_poll_interval_s: float = 1.0
    job_max_attempts: int = 5
    job_backoff_base_s: float = 1.0
    job_backoff_max_s: float = 60.0
    # How long a finished job's row stays for operators to read (`jobs.FinishedJobsPruner`).
    job_retention_s: int = Field(default=14 * 24 * 3600, ge=3600)


Settings = TypeVar("Settings", bound=ServiceSettings)


def load_settings(settings_type: type[Settings]) -> Settings:
    """A service's settings from its environment, or an exit that names each variable to fix (a command
    line's way; a traceback of pydantic's internals told an operator less)."""
    try:
        return settings_type()
    except ValidationError as error:
        problems = "\n".join(f"  {_variable(problem['loc'])}: {problem['msg']}" for problem in error.errors())
        raise SystemExit(
            f"{settings_type.__name__}: these settings are missing or not valid\n{problems}\n"
            "(set them in the environment or in .env; `make -s secrets` prints new secrets)"
        ) from None


def _variable(location: tuple[int | str, ...]) -> str:
    """The environment variable a settings error is about (a check of the whole model has none)."""
    return f"WI_{str(location[0]).upper()}" if location else "settings"
