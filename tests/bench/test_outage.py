"""The outage benchmark at a tiny size, so that it keeps running against the real queue."""

from __future__ import annotations

from bench.outage import bytes_per_queued_sample, simulate, table
from tsf_adapter.config import QueueConfig


async def test_a_ten_minute_outage_at_the_defaults_loses_nothing() -> None:
    outcome = await simulate(3, 600.0, QueueConfig())
    assert outcome.per_forecast == 3 * 19
    assert outcome.produced == outcome.delivered == 2 * 57  # forecasts 30 s and 330 s in
    assert (outcome.dropped, outcome.in_order) == ({}, True)
    assert outcome.peak_length == 2 * 57


async def test_past_the_bound_and_the_age_limit_the_oldest_go_and_order_holds() -> None:
    small = QueueConfig(capacity=120, max_samples_per_send=60)
    outcome = await simulate(3, 70 * 60.0, small)
    assert outcome.produced == 14 * 57
    assert outcome.dropped.keys() == {"queue_full", "too_old"}
    assert outcome.delivered + sum(outcome.dropped.values()) == outcome.produced
    assert outcome.in_order
    assert outcome.peak_length <= 120 + 57  # capacity, and the put that made room


async def test_the_report_has_a_row_per_outcome() -> None:
    outcome = await simulate(3, 60.0, QueueConfig())
    text = table([outcome], {3: bytes_per_queued_sample(3, rounds=2)})
    assert len(text.splitlines()) == 3
    assert text.splitlines()[2].startswith("| 3 | 1 min | 57 | 57 | 57 (100%) | 0 | 0 | none | yes |")
