"""The outbox relay against real Postgres and the real tansu broker."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from writer_images import events, topics
from writer_images.events import decode_envelope, make_event
from writer_images.kafka import kafka_producer
from writer_images.outbox import Outbox, OutboxRelay
from writer_images.testing.kafka_tools import collect
from writer_images.testing.processes import ServiceProcess
from writer_images.testing.waiting import eventually


def _site_event(correlation_id: str, site_id: int = 1, name: str = "Blog") -> events.OutgoingEvent:
    payload = events.SiteChanged(
        site_id=site_id,
        site_key=f"k{site_id}",
        name=name,
        base_url="https://blog.example",
        username="bot",
        application_password_encrypted="x",
        webhook_secret_encrypted="y",
        revision=1,
    )
    return make_event(payload, account_id=1, correlation_id=correlation_id)


def _of(correlation_id: str) -> Any:
    def keep(record: ConsumerRecord[Any, Any]) -> bool:
        return dict(record.headers).get("correlation_id") == correlation_id.encode()

    return keep


async def _write(pool: asyncpg.Pool, schema: str, outgoing: list[events.OutgoingEvent]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await Outbox(schema).write(conn, outgoing)


async def test_committed_event_reaches_a_real_consumer_exactly_as_typed(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    outgoing = _site_event(correlation, site_id=77)
    await _write(pool, schema, [outgoing])
    producer = kafka_producer(kafka_bootstrap, client_id="t")
    await producer.start()
    try:
        assert await OutboxRelay(pool, schema, producer).relay_once() == 1
    finally:
        await producer.stop()

    received = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=_of(correlation), until=lambda r: len(r) >= 1
    )

    envelope, payload = decode_envelope(received[0].value)
    assert envelope.event_id == outgoing.event_id
    assert isinstance(payload, events.SiteChanged) and payload.site_id == 77
    assert received[0].key == b"77"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_batch_is_sent_in_the_order_it_was_written(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    written = [_site_event(correlation, site_id=5) for _ in range(20)]  # one key: one partition, in order
    for event in written:
        await _write(pool, schema, [event])
    producer = kafka_producer(kafka_bootstrap, client_id="t")
    await producer.start()
    try:
        assert await OutboxRelay(pool, schema, producer).relay_once() == 20
    finally:
        await producer.stop()

    received = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=_of(correlation), until=lambda r: len(r) >= 20
    )

    assert [decode_envelope(r.value)[0].event_id for r in received] == [e.event_id for e in written]


class _BrokerAway:
    """A producer whose every send fails, as when the broker is unreachable."""

    async def send(self, *_: object, **__: object) -> asyncio.Future[None]:
        raise ConnectionError("broker away")


async def test_a_batch_that_could_not_be_sent_stays_in_the_outbox(
    service_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = service_schema
    await _write(pool, schema, [_site_event(f"c-{uuid.uuid4()}") for _ in range(3)])

    with pytest.raises(ConnectionError):
        await OutboxRelay(pool, schema, _BrokerAway()).relay_once()  # type: ignore[arg-type]

    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 3


async def test_an_event_the_broker_cannot_take_is_dead_lettered_and_the_rows_behind_it_still_go(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    before, too_large, after = (
        _site_event(correlation, site_id=31),
        _site_event(correlation, site_id=32, name="x" * 40_000),
        _site_event(correlation, site_id=33),
    )
    for event in (before, too_large, after):
        await _write(pool, schema, [event])
    # A producer that takes at most 20 KB per record stands for a broker with a small message.max.bytes.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, max_request_size=20_000, enable_idempotence=False, acks="all"
    )
    await producer.start()
    try:
        relay = OutboxRelay(pool, schema, producer)
        while await relay.backlog():
            await relay.relay_once()
    finally:
        await producer.stop()

    delivered = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=_of(correlation), until=lambda r: len(r) >= 2
    )
    assert {decode_envelope(r.value)[0].event_id for r in delivered} == {before.event_id, after.event_id}
    letters = await collect(
        kafka_bootstrap,
        [topics.dlq_topic(topics.SITE_CHANGED)],
        keep=lambda r: str(too_large.event_id).encode() in r.value,
        until=lambda r: len(r) >= 1,
    )
    letter = orjson.loads(letters[0].value)
    assert "MessageSizeTooLargeError" in letter["reason"]
    assert letter["original"]["bytes"] == len(too_large.value)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


class _RefusesBatchesWithALargeRecord:
    """A producer standing for a broker that refuses a partition's whole batch when one record in it is larger
    than its limit: every record sent in the same pass fails with it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pass: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self.delivered: list[tuple[str, bytes]] = []

    async def send(self, topic: str, *, value: bytes, **_: object) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._pass:
            asyncio.get_running_loop().call_soon(self._answer_pass)
        self._pass.append((topic, value, future))
        return future

    def _answer_pass(self) -> None:
        sent, self._pass = self._pass, []
        refused = any(len(value) > self._limit for _, value, _ in sent)
        for topic, value, future in sent:
            if refused:
                future.set_exception(MessageSizeTooLargeError())
            else:
                self.delivered.append((topic, value))
                future.set_result(None)


async def test_a_batch_refused_for_one_record_is_relayed_row_by_row_then_in_batches_again(
    service_schema: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    fine = [_site_event(correlation, site_id=i) for i in range(4)]
    too_large = _site_event(correlation, site_id=9, name="x" * 5_000)
    await _write(pool, schema, [fine[0], fine[1], too_large, fine[2], fine[3]])
    producer = _RefusesBatchesWithALargeRecord(limit=4_000)
    relay = OutboxRelay(pool, schema, producer)  # type: ignore[arg-type]

    assert await relay.relay_once() == 0  # refused as a batch: rolled back
    while await relay.relay_once():
        pass

    main = [orjson.loads(v)["event_id"] for t, v in producer.delivered if t == topics.SITE_CHANGED]
    dead = [orjson.loads(v) for t, v in producer.delivered if t == topics.dlq_topic(topics.SITE_CHANGED)]
    assert main == [str(e.event_id) for e in fine]
    assert [d["original"]["event_id"] for d in dead] == [str(too_large.event_id)]
    more = [_site_event(correlation, site_id=i) for i in range(10, 15)]
    await _write(pool, schema, more)
    assert await relay.relay_once() == 5  # back to batches


async def test_rolled_back_transaction_emits_nothing(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"

    async def business_change_that_fails() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await Outbox(schema).write(conn, [_site_event(correlation)])
            raise RuntimeError("the business change failed")

    with pytest.raises(RuntimeError):
        await business_change_that_fails()
    producer = kafka_producer(kafka_bootstrap, client_id="t")
    await producer.start()
    try:
        assert await OutboxRelay(pool, schema, producer).relay_once() == 0
    finally:
        await producer.stop()
    received = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=_of(correlation), until=lambda r: False, timeout_s=2.0
    )
    assert received == []


async def test_relay_wakes_on_commit_via_notify(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    producer = kafka_producer(kafka_bootstrap, client_id="t")
    await producer.start()
    relay = OutboxRelay(pool, schema, producer, poll_interval_s=30.0)  # polling alone would be far too slow
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)
        await _write(pool, schema, [_site_event(correlation)])
        received = await collect(
            kafka_bootstrap,
            [topics.SITE_CHANGED],
            keep=_of(correlation),
            until=lambda r: len(r) >= 1,
            timeout_s=10.0,
        )
        assert len(received) == 1
    finally:
        relay.stop()
        await task
        await producer.stop()


async def test_two_relays_together_publish_every_row_once_and_each_key_in_written_order(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    outgoing = [_site_event(correlation, site_id=i % 7) for i in range(3000)]
    for start in range(0, len(outgoing), 500):
        await _write(pool, schema, outgoing[start : start + 500])
    producers = [kafka_producer(kafka_bootstrap, client_id=f"t{i}") for i in range(2)]
    for p in producers:
        await p.start()
    relays = [OutboxRelay(pool, schema, p, batch_size=100, poll_interval_s=0.1) for p in producers]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        await _wait_until_backlog_below(pool, 1)
    finally:
        for r in relays:
            r.stop()
        await asyncio.gather(*tasks)
        for p in producers:
            await p.stop()
    # Everything is in the broker now; read it all (including any duplicate) before counting.
    received = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=_of(correlation), until=lambda r: False, timeout_s=3.0
    )
    ids = Counter(decode_envelope(r.value)[0].event_id for r in received)
    assert set(ids) == {e.event_id for e in outgoing}
    assert max(ids.values()) == 1
    for key in {e.key for e in outgoing}:
        arrived = [decode_envelope(r.value)[0].event_id for r in received if r.key == key.encode()]
        assert arrived == [e.event_id for e in outgoing if e.key == key]


@pytest.mark.slow
async def test_relay_killed_mid_batch_loses_nothing_and_inbox_applies_each_effect_once(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    outgoing = [_site_event(correlation, site_id=i) for i in range(5000)]
    for start in range(0, len(outgoing), 1000):
        await _write(pool, schema, outgoing[start : start + 1000])

    def relay() -> ServiceProcess:
        return ServiceProcess(
            "relay",
            ["-m", "writer_images.testing.relay_process", database_url, schema, kafka_bootstrap, "200"],
            env={},
            log_path=tmp_path / "relay.log",
        ).start()

    process = relay()
    for _ in range(3):  # kill it several times while batches are in flight
        await _wait_until_backlog_below(pool, 4500 - _ * 1000)
        process.kill9()
        process = relay()
    await _wait_until_backlog_below(pool, 1, timeout_s=60)
    process.stop()

    received = await collect(
        kafka_bootstrap,
        [topics.SITE_CHANGED],
        keep=_of(correlation),
        until=lambda r: len({decode_envelope(x.value)[0].event_id for x in r}) >= 5000,
        timeout_s=60.0,
    )
    arrived = [decode_envelope(r.value)[0].event_id for r in received]
    assert set(arrived) == {e.event_id for e in outgoing}, "every event arrives at least once"

    from writer_images import inbox  # the consumer side: redeliveries do nothing

    async with pool.acquire() as conn:
        for event_id in arrived:
            async with conn.transaction():
                if await inbox.claim(conn, event_id, "site.changed"):
                    await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event_id)
        effects = await conn.fetchval("SELECT count(*) FROM effects")
        distinct = await conn.fetchval("SELECT count(DISTINCT event_id) FROM effects")
    assert effects == distinct == 5000
    print(f"duplicates delivered after 3 SIGKILLs: {len(arrived) - 5000}", file=sys.stderr)


async def _wait_until_backlog_below(pool: asyncpg.Pool, limit: int, timeout_s: float = 30.0) -> None:
    await eventually(
        lambda: pool.fetchval("SELECT count(*) FROM outbox"),
        lambda backlog: backlog < limit,
        what=f"the outbox backlog dropping below {limit}",
        timeout_s=timeout_s,
        interval_s=0.005,
    )


async def _manual_vacuums(pool: asyncpg.Pool, schema: str) -> int:
    count: int = await pool.fetchval(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'outbox'", schema
    )
    return count


async def test_the_relay_vacuums_its_outbox_itself_after_every_so_many_deleted_rows(
    service_schema: tuple[str, asyncpg.Pool], kafka_bootstrap: str
) -> None:
    schema, pool = service_schema
    correlation = f"c-{uuid.uuid4()}"
    await _write(pool, schema, [_site_event(correlation, site_id=500 + n) for n in range(10)])
    producer = kafka_producer(kafka_bootstrap, client_id="t")
    await producer.start()
    try:
        relay = OutboxRelay(pool, schema, producer, batch_size=4, vacuum_every_rows=8)
        vacuums = []
        for _ in range(3):  # 4 rows, 8 rows (the vacuum's turn), 10 rows
            await relay.relay_once()
            vacuums.append(await _manual_vacuums(pool, schema))
    finally:
        await producer.stop()

    assert vacuums == [0, 1, 1]
    delivered = await collect(
        kafka_bootstrap, [topics.SITE_CHANGED], keep=_of(correlation), until=lambda r: len(r) >= 10
    )
    assert len(delivered) == 10
