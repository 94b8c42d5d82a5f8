"""A token bucket per provider key in Postgres, so every generator instance draws from the same bucket.

Taking a token is one short transaction (row lock, refill by elapsed database time, take); waiting for a
token happens outside any transaction, so a slow provider tier never holds a connection or a lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from generator.domain.rules import take_token


@dataclass(frozen=True)
class Limit:
    per_minute: float  # 0: unlimited
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_minute <= 0


class PostgresTokenBucket:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def acquire(self, key: str, limit: Limit) -> float:
        """Wait until a token for `key` is taken; returns the seconds waited."""
        if limit.unlimited:
            return 0.0
        waited = 0.0
        while True:
            wait_s = await self.try_take(key, limit)
            if wait_s <= 0:
                return waited
            await asyncio.sleep(wait_s)
            waited += wait_s

    async def try_take(self, key: str, limit: Limit) -> float:
        """Take a token now (returns 0) or return how long until one is due."""
        capacity = max(1, limit.burst)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO rate_buckets (key, tokens, updated_at) VALUES ($1, $2, clock_timestamp())
                ON CONFLICT (key) DO NOTHING
                """,
                key,
                float(capacity),
            )
            row = await conn.fetchrow(
                "SELECT tokens, updated_at, clock_timestamp() AS now FROM rate_buckets WHERE key = $1 FOR UPDATE",
                key,
            )
            assert row is not None
            elapsed_s = (row["now"] - row["updated_at"]).total_seconds()
            state = take_token(row["tokens"], elapsed_s, capacity=capacity, per_second=limit.per_minute / 60)
            await conn.execute(
                "UPDATE rate_buckets SET tokens = $2, updated_at = $3 WHERE key = $1",
                key,
                state.tokens,
                row["now"],
            )
        return state.wait_s
