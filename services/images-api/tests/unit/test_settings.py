"""images-api settings: the size asked of the local provider is an operator's choice, within its limit; the
token secret is the operator's own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from images_api.settings import MODEL_SIZES, ImagesApiSettings


def test_the_local_size_is_configurable_and_other_models_keep_theirs() -> None:
    sizes = ImagesApiSettings(local_image_size="512x512").model_sizes()
    assert sizes["local-v1"] == (512, 512)
    assert sizes["dall-e-3"] == MODEL_SIZES["dall-e-3"]
    assert ImagesApiSettings().model_sizes()["local-v1"] == MODEL_SIZES["local-v1"]


@pytest.mark.parametrize("size", ["512", "0x512", "512x512x3", "5000x512", "512 x 512"])
def test_a_local_size_the_provider_cannot_render_is_refused(size: str) -> None:
    with pytest.raises(ValidationError):
        ImagesApiSettings(local_image_size=size)


def test_the_api_will_not_start_without_a_token_secret_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WI_JWT_SECRET")
    with pytest.raises(ValidationError, match="jwt_secret"):
        ImagesApiSettings(_env_file=None)
    with pytest.raises(ValidationError, match="at least 32 characters"):
        ImagesApiSettings(jwt_secret="short", _env_file=None)
