"""Run one outbox relay as its own process (crash drills kill it with SIGKILL).

Usage: python -m writer_images.testing.relay_process DSN SCHEMA BOOTSTRAP BATCH_SIZE
"""

from __future__ import annotations

import asyncio
import sys

from writer_images.db import create_pool
from writer_images.kafka import kafka_producer
from writer_images.outbox import OutboxRelay


async def main(dsn: str, schema: str, bootstrap: str, batch_size: int) -> None:
    pool = await create_pool(dsn, schema, max_size=3)
    producer = kafka_producer(bootstrap, client_id=f"relay-{schema}")
    await producer.start()
    try:
        await OutboxRelay(pool, schema, producer, batch_size=batch_size, poll_interval_s=0.2).run()
    finally:
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
