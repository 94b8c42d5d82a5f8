"""The one retry policy: exponential backoff with full jitter, capped, honouring Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 60.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempts count from 1).

        A server's Retry-After wins when it asks for longer than our own backoff would wait.
        """
        ceiling = self.longest_delay(attempt)
        backoff = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            return max(backoff, min(retry_after_s, self.max_s * 10))
        return backoff

    def longest_delay(self, attempt: int) -> float:
        """The most our own backoff waits after attempt `attempt` (the jitter draws up to it)."""
        return min(self.max_s, self.base_s * 2.0 ** max(0, attempt - 1))

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare from APIs we call)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
