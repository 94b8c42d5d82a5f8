"""images-api settings: the size asked of the local provider is an operator's choice, within its limit."""

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
