"""What every benchmark shares: ratio lines, percentiles, a JSON result per run, and reading a process's
CPU time and memory from /proc (`CpuMeter`: core-ms per unit of work by group of processes)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from writer_images.settings import ServiceSettings

RESULTS = Path(__file__).parent / "results"

# Services under benchmark wait on Kafka fetches as in production. tansu, the local broker, answers a
# waiting fetch only at its deadline, so the tests' 20 ms (`short_group_timeouts`) makes every idle consumer
# poll 50 times a second, costing broker and service CPU that Apache Kafka, which answers a waiting fetch as
# soon as data arrives, never costs. A busy consumer is not slowed: a fetch with data waiting returns at once.
PRODUCTION_FETCH_WAIT = {
    "WI_KAFKA_FETCH_MAX_WAIT_MS": str(ServiceSettings.model_fields["kafka_fetch_max_wait_ms"].default)
}


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    fields = _proc_stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def session_pids(session_id: int) -> list[int]:
    """Every process of a session: a service started with `start_new_session` and all it forked."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[3]) == session_id:
                pids.append(int(entry.name))
    return pids


def percentile(samples: list[float], pct: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "n": len(ms),
    }


POLL_FLOOR_S = 0.05  # how finely a run's end is seen
POLL_CEILING_S = 1.0


def poll_pause(done: int, total: int, elapsed_s: float) -> float:
    """How long a run waits before it reads its read model again: half of what the rest should take at the
    rate so far, within [50 ms, 1 s]. Every poll is work for the machine under test (the API path's grouped
    view read 20 times a second cost the pipeline ≈5 % of its throughput in an A/B), so polls are sparse
    while much is left, and 50 ms apart near the end, which is the resolution of the run's end time. Every
    driver polls this way, ours and the peer's."""
    if done <= 0 or elapsed_s <= 0:
        return 4 * POLL_FLOOR_S
    left_s = (total - done) * elapsed_s / done
    return min(POLL_CEILING_S, max(POLL_FLOOR_S, left_s / 2))


def ratio_line(
    label: str, ours: float, baseline: float, baseline_name: str, unit: str, goal: str = ""
) -> str:
    ratio = ours / baseline if baseline else float("inf")
    line = f"{label}: {ours:,.1f} {unit} vs {baseline_name} {baseline:,.1f} {unit} → ratio {ratio:.2f}×"
    if goal:
        line += f" (goal {goal})"
    print(line, flush=True)
    return line


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    result = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"→ {path}", flush=True)
    return path


async def backend_pids(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


@dataclass
class CpuMeter:
    """CPU seconds used by named groups of processes between `start()` and `stop()` (robust to a busy
    machine, unlike wall time). A process that appears in between counts from its birth."""

    dsn: str
    sessions: dict[str, int]  # name → session id of a service process (the leader's pid)
    extra: dict[str, list[int]]
    _before: dict[int, float] = field(default_factory=dict)

    async def groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for name, session_id in self.sessions.items():
            groups[f"{name} main process"] = [session_id]
            groups[f"{name} workers"] = [p for p in session_pids(session_id) if p != session_id]
        return {**groups, "postgres backends": await backend_pids(self.dsn), **self.extra}

    async def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pids in (await self.groups()).values() for pid in pids}

    async def stop(self, per: int) -> dict[str, float]:
        """Core-milliseconds per unit (image) by group, and their total."""
        used = {
            name: sum(max(0.0, cpu_seconds(pid) - self._before.get(pid, 0.0)) for pid in pids) * 1000 / per
            for name, pids in (await self.groups()).items()
        }
        used["total"] = sum(used.values())
        return {name: round(ms, 2) for name, ms in used.items()}
