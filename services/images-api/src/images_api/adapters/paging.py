"""Listing queries with optional filters: numbered parameters bound one value at a time, and offset pages
with their total. One way for every list the API serves (the grouped view adds keyset cursors on top)."""

from __future__ import annotations

from typing import Any

import asyncpg


class Params:
    """The values of a statement's numbered parameters ($1, $2, …), bound in the order the SQL is built."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def bind(self, value: Any) -> str:
        """Add `value` and return its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"


async def offset_page(
    conn: asyncpg.Connection,
    *,
    select: str,
    count_from: str,
    where: str,
    order_by: str,
    params: Params,
    page: int,
    page_size: int,
) -> tuple[int, list[asyncpg.Record]]:
    """How many rows of `count_from` match `where`, and page `page` (from 1) of `select … WHERE where`
    in `order_by` order. `select` and `count_from` must match the same rows for `where`."""
    count: int = await conn.fetchval(f"SELECT count(*) FROM {count_from} WHERE {where}", *params.values)
    limit, offset = params.bind(page_size), params.bind((page - 1) * page_size)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"{select} WHERE {where} ORDER BY {order_by} LIMIT {limit} OFFSET {offset}", *params.values
    )
    return count, rows
