from __future__ import annotations

from writer_images.consumer import ConsumerConfig
from writer_images.retry import RetryPolicy


def test_a_batch_whose_every_message_fails_to_the_end_is_handled_within_the_poll_interval() -> None:
    config = ConsumerConfig("g", max_records=200, retry=RetryPolicy(max_attempts=5, base_s=0.2, max_s=30.0))
    # Each message: five attempts, four backoffs of at most 0.2, 0.4, 0.8 and 1.6 s.
    longest_batch_s = 200 * (0.2 + 0.4 + 0.8 + 1.6)

    assert config.max_poll_interval_ms() / 1000 > longest_batch_s
    assert config.max_poll_interval_ms() / 1000 > 300  # more than Kafka's default, which this batch exceeds


def test_a_consumer_with_short_retries_keeps_kafkas_default_poll_interval() -> None:
    config = ConsumerConfig("g", max_records=10, retry=RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.01))

    assert config.max_poll_interval_ms() == 300_000
