from __future__ import annotations

from writer_images.retry import RetryPolicy, parse_retry_after


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=1.0, max_s=8.0)
    assert 0.5 <= policy.delay(1) <= 1.0
    assert 2.0 <= policy.delay(3) <= 4.0
    assert 4.0 <= policy.delay(9) <= 8.0


def test_retry_after_wins_when_longer_than_backoff() -> None:
    assert RetryPolicy(base_s=0.1, max_s=1.0).delay(1, retry_after_s=5.0) == 5.0


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)


def test_retry_after_header_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
