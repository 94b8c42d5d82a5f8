"""Input models' shared rules: what every service refuses at its edge, before Postgres would."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator


class NulFreeModel(BaseModel):
    """A model whose text, alone or in a list, never carries a NUL character: Postgres text cannot hold one,
    so a NUL would otherwise surface as a server error at the write instead of 422 on its field."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and "\x00" in t for t in texts):
            raise ValueError("must not contain NUL characters")
        return value
