"""Settings: the secrets have no defaults; local runs, tests and benchmarks make their own."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import ValidationError, model_validator

from writer_images.secrets import SecretBox
from writer_images.settings import (
    ServiceSettings,
    SiteSecretsSettings,
    development_secrets,
    load_settings,
    use_development_secrets,
)


def test_a_service_that_holds_site_credentials_will_not_start_without_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WI_SECRETS_KEY", raising=False)
    with pytest.raises(ValidationError, match="secrets_key"):
        SiteSecretsSettings(_env_file=None)


@pytest.mark.parametrize(
    "key",
    [
        "change-me",
        base64.urlsafe_b64encode(b"0" * 16).decode(),  # a valid encoding of too few bytes
        "b2XHj9u4m0sBSnw2tYQ8k0pQ5r1Wm9kq8v1mN3cZ7aE",  # a key without its padding
    ],
)
def test_a_key_that_is_no_fernet_key_is_refused_with_how_to_make_one(key: str) -> None:
    with pytest.raises(ValidationError, match=r"not a Fernet key.*openssl rand"):
        SiteSecretsSettings(secrets_key=key, _env_file=None)


def test_development_secrets_are_new_each_time_and_usable() -> None:
    first, second = development_secrets(), development_secrets()
    assert first.keys() == second.keys() == {"WI_SECRETS_KEY", "WI_JWT_SECRET"}
    assert all(first[name] != second[name] for name in first)
    assert len(first["WI_JWT_SECRET"]) >= 32
    box = SecretBox(SiteSecretsSettings(secrets_key=first["WI_SECRETS_KEY"], _env_file=None).secrets_key)
    assert box.open(box.seal("application password")) == "application password"


def test_development_secrets_fill_only_what_neither_the_environment_nor_dotenv_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WI_JWT_SECRET", "an operator's own secret, 32 bytes or more")
    monkeypatch.delenv("WI_SECRETS_KEY")
    use_development_secrets()
    assert os.environ["WI_JWT_SECRET"] == "an operator's own secret, 32 bytes or more"
    SecretBox(os.environ["WI_SECRETS_KEY"])  # a key was made, and it is a Fernet key

    monkeypatch.delenv("WI_SECRETS_KEY")
    key_in_dotenv = development_secrets()["WI_SECRETS_KEY"]
    (tmp_path / ".env").write_text(f"WI_SECRETS_KEY={key_in_dotenv}\n")
    use_development_secrets()
    assert os.environ["WI_SECRETS_KEY"] == key_in_dotenv, ".env's key, exported for services run elsewhere"


def test_a_command_line_exits_naming_each_variable_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    monkeypatch.delenv("WI_SECRETS_KEY")
    monkeypatch.setenv("WI_DB_POOL_MAX", "many")
    with pytest.raises(SystemExit) as exit_:
        load_settings(SiteSecretsSettings)
    message = str(exit_.value.code)
    assert "WI_SECRETS_KEY: Field required" in message
    assert "WI_DB_POOL_MAX: Input should be a valid integer" in message
    assert "make -s secrets" in message


class _Paired(ServiceSettings):
    """A check across two settings: its error has no single variable."""

    db_pool_min: int = 1

    @model_validator(mode="after")
    def _min_below_max(self) -> _Paired:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("db_pool_min is above db_pool_max")
        return self


def test_an_error_about_the_settings_as_a_whole_is_reported_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WI_DB_POOL_MIN", "20")
    with pytest.raises(SystemExit, match="settings: Value error, db_pool_min is above db_pool_max"):
        load_settings(_Paired)
