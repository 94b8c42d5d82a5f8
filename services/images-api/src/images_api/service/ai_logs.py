"""AI function logs projected from the generator's `ai.function.called` events."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def list_logs(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    content_id: int | None,
    task_id: uuid.UUID | None,
    provider: str | None,
    success: bool | None,
    page: int,
    page_size: int,
) -> dict[str, Any]:
    clauses = ["account_id = $1"]
    params: list[Any] = [account_id]
    for column, value in (
        ("content_id", content_id),
        ("task_id", task_id),
        ("provider", provider),
        ("success", success),
    ):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    where = " AND ".join(clauses)
    count: int = await conn.fetchval(f"SELECT count(*) FROM ai_logs WHERE {where}", *params)
    rows = await conn.fetch(
        f"""
        SELECT id, call_id, task_id, image_id, content_id, function, provider, model, prompt, size, latency_ms,
               images, input_tokens, output_tokens, estimated_cost_usd, success, error, called_at
        FROM ai_logs WHERE {where} ORDER BY id DESC LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}
        """,
        *params,
        page_size,
        (page - 1) * page_size,
    )
    results = [
        {**dict(r), "call_id": str(r["call_id"]), "task_id": str(r["task_id"]) if r["task_id"] else None}
        for r in rows
    ]
    return {"count": count, "results": results, "page": page, "page_size": page_size}
