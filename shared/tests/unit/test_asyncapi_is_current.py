from __future__ import annotations

from pathlib import Path

from writer_images.asyncapi import render
from writer_images.events import all_contracts

DOC = Path(__file__).parents[3] / "docs" / "asyncapi.yaml"


def test_committed_asyncapi_matches_the_event_contracts() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m writer_images.asyncapi > docs/asyncapi.yaml"


def test_every_contract_has_a_channel_and_a_dlq() -> None:
    text = render()
    for contract in all_contracts():
        assert f"address: {contract.topic}\n" in text
        assert f"address: {contract.topic}.dlq\n" in text
