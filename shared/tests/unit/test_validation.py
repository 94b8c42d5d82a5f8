"""NulFreeModel: text Postgres could not store is refused on its field, alone or in a list."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError

from writer_images.validation import NulFreeModel


class Body(NulFreeModel):
    title: str
    tags: list[str] = Field(default_factory=list)
    count: int = 0


def test_text_without_nul_passes_unchanged() -> None:
    assert Body(title="Lisbon", tags=["tram"], count=2).model_dump() == {
        "title": "Lisbon",
        "tags": ["tram"],
        "count": 2,
    }


@pytest.mark.parametrize(("field", "value"), [("title", "Lis\x00bon"), ("tags", ["ok", "tr\x00am"])])
def test_a_nul_in_text_or_in_a_list_of_text_is_refused_on_its_field(field: str, value: object) -> None:
    body = {"title": "Lisbon", field: value}
    with pytest.raises(ValidationError) as refused:
        Body.model_validate(body)

    [error] = refused.value.errors()
    assert error["loc"][0] == field
    assert "NUL" in error["msg"]
