"""What every benchmark shares: ratio lines, percentiles, a JSON result per run, and reading a process's
CPU time and memory from /proc."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

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
