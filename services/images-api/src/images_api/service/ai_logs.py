"""AI function logs projected from the generator's `ai.function.called` events."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from images_api.adapters.paging import Params, offset_page


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
    params = Params()
    clauses = [f"account_id = {params.bind(account_id)}"]
    for column, value in (
        ("content_id", content_id),
        ("task_id", task_id),
        ("provider", provider),
        ("success", success),
    ):
        if value is not None:
            clauses.append(f"{column} = {params.bind(value)}")
    count, rows = await offset_page(
        conn,
        select="""
            SELECT id, call_id, task_id, image_id, content_id, function, provider, model, prompt, size,
                   latency_ms, images, input_tokens, output_tokens, estimated_cost_usd, success, error, called_at
            FROM ai_logs""",
        count_from="ai_logs",
        where=" AND ".join(clauses),
        order_by="id DESC",
        params=params,
        page=page,
        page_size=page_size,
    )
    results = [
        {**dict(r), "call_id": str(r["call_id"]), "task_id": str(r["task_id"]) if r["task_id"] else None}
        for r in rows
    ]
    return {"count": count, "results": results, "page": page, "page_size": page_size}
