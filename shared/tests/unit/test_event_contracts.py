from __future__ import annotations

import pytest
from pydantic import BaseModel

from writer_images import events, topics
from writer_images.events import MalformedEventError, decode_envelope, make_event
from writer_images.testing.examples import EXAMPLES


def test_every_registered_contract_has_an_example() -> None:
    assert {c.model for c in events.all_contracts()} == set(EXAMPLES)


@pytest.mark.parametrize("model", list(EXAMPLES), ids=lambda m: m.__name__)
def test_every_event_round_trips_through_its_envelope(model: type[events.Payload]) -> None:
    payload = model.model_validate(EXAMPLES[model])
    outgoing = make_event(payload, account_id=5, correlation_id="req-1", causation_id="cause-1")

    envelope, decoded = decode_envelope(outgoing.value)

    assert decoded == payload
    assert envelope.event_id == outgoing.event_id
    assert (envelope.account_id, envelope.correlation_id, envelope.causation_id) == (5, "req-1", "cause-1")
    assert outgoing.topic in topics.MAIN_TOPICS


def test_content_events_are_keyed_by_content_and_site_events_by_site() -> None:
    generated = make_event(
        events.ImageGenerated.model_validate(EXAMPLES[events.ImageGenerated]),
        account_id=1,
        correlation_id="c",
    )
    site = make_event(
        events.SiteChanged.model_validate(EXAMPLES[events.SiteChanged]), account_id=1, correlation_id="c"
    )
    assert (generated.key, site.key) == ("42", "3")


def test_an_event_larger_than_a_broker_takes_is_refused_when_it_is_made() -> None:
    example = EXAMPLES[events.ContentPublishRequested]
    fits = example | {"html": "é" * ((events.MAX_EVENT_BYTES - 10_000) // 2)}  # two bytes per character
    too_large = example | {"html": "é" * (events.MAX_EVENT_BYTES // 2)}

    made = make_event(events.ContentPublishRequested.model_validate(fits), account_id=1, correlation_id="c")
    with pytest.raises(events.EventTooLargeError, match=r"content\.publish\.requested would be"):
        make_event(events.ContentPublishRequested.model_validate(too_large), account_id=1, correlation_id="c")
    assert len(made.value) <= events.MAX_EVENT_BYTES


def test_event_ids_are_time_ordered() -> None:
    ids = [events.new_event_id() for _ in range(50)]
    assert ids == sorted(ids)
    assert all(i.version == 7 for i in ids)


@pytest.mark.parametrize("raw", [b"not json", b"{}", b'{"event_id": "x"}'])
def test_garbage_is_a_malformed_event(raw: bytes) -> None:
    with pytest.raises(MalformedEventError):
        decode_envelope(raw)


def test_unknown_type_or_version_is_malformed() -> None:
    payload = events.SiteChanged.model_validate(EXAMPLES[events.SiteChanged])
    outgoing = make_event(payload, account_id=1, correlation_id="c")
    tampered = outgoing.value.replace(b'"version":1', b'"version":99')
    with pytest.raises(MalformedEventError, match="unknown event type"):
        decode_envelope(tampered)


def test_payloads_reject_unknown_fields() -> None:
    data = {**EXAMPLES[events.ImageGenerationFailed], "surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        events.ImageGenerationFailed.model_validate(data)


def test_topic_registry_has_a_dlq_twin_for_every_topic() -> None:
    names = {t.name for t in topics.all_topics(3)}
    assert all(topics.dlq_topic(t) in names for t in topics.MAIN_TOPICS)
    assert isinstance(events.Envelope, type) and issubclass(events.Envelope, BaseModel)
