"""Fire times every replica agrees on: intervals aligned to the epoch, cron as written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncer.config import JobSettings
from syncer.scheduler import _due, latest_fire, next_fire, next_run


def every(seconds: float) -> JobSettings:
    return JobSettings(id="j", run="sync moco", every_s=seconds, cron=None)


def cron(expr: str, timezone: str = "UTC") -> JobSettings:
    return JobSettings(id="j", run="sync moco", every_s=None, cron=expr, timezone=timezone)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_interval_fire_times_are_multiples_of_the_interval_since_the_epoch() -> None:
    job = every(900)
    assert latest_fire(job, at("2026-12-01 10:07:31")) == at("2026-12-01 10:00:00")
    assert latest_fire(job, at("2026-12-01 10:15:00")) == at("2026-12-01 10:15:00")
    assert next_fire(job, at("2026-12-01 10:07:31")) == at("2026-12-01 10:15:00")
    assert next_fire(job, at("2026-12-01 10:15:00")) == at("2026-12-01 10:30:00")
    # 7 s does not divide a minute: still multiples of 7 s since 1970-01-01 00:00 UTC.
    fire = latest_fire(every(7), at("2026-12-01 10:07:31.5"))
    assert fire is not None
    assert (fire - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % 7 == 0
    assert timedelta(0) <= at("2026-12-01 10:07:31.5") - fire < timedelta(seconds=7)


def test_replicas_started_at_different_moments_agree_on_every_fire_time() -> None:
    job = every(2.5)
    first, second = at("2026-12-01 10:00:00.3"), at("2026-12-01 10:00:01.9")
    assert latest_fire(job, first) == latest_fire(job, second)
    times_a, times_b = [], []
    a, b = first, second
    for _ in range(5):
        a, b = next_fire(job, a), next_fire(job, b)  # type: ignore[assignment]
        times_a.append(a)
        times_b.append(b)
    assert times_a == times_b


def test_cron_fire_times_are_the_crons_in_its_time_zone() -> None:
    job = cron("*/15 * * * *")
    assert next_fire(job, at("2026-12-01 10:07:31")) == at("2026-12-01 10:15:00")
    assert next_fire(job, at("2026-12-01 10:15:00")) == at("2026-12-01 10:30:00")
    nightly = cron("0 3 * * *", "Europe/Berlin")
    fire = next_fire(nightly, at("2026-12-01 10:00:00"))
    assert fire is not None
    assert fire.astimezone(UTC) == at("2026-12-02 02:00:00")  # 03:00 in Berlin (CET)
    assert latest_fire(job, at("2026-12-01 10:07:31")) is None


def test_missed_ticks_collapse_into_the_latest_one() -> None:
    job = every(60)
    fire, following = _due(job, at("2026-12-01 10:00:00"), at("2026-12-01 10:03:30"))
    assert (fire, following) == (at("2026-12-01 10:03:00"), at("2026-12-01 10:04:00"))
    quarter = cron("*/15 * * * *")
    fire, following = _due(quarter, at("2026-12-01 10:00:00"), at("2026-12-01 10:50:00"))
    assert (fire, following) == (at("2026-12-01 10:45:00"), at("2026-12-01 11:00:00"))


def test_next_run_for_status() -> None:
    now = at("2026-12-01 10:07:31")
    assert next_run(every(900), None, now) == now  # runs at daemon start
    assert next_run(every(900), at("2026-12-01 10:00:00"), now) == at("2026-12-01 10:15:00")
    assert next_run(every(900), at("2026-12-01 09:00:00"), now) == now  # overdue
    assert next_run(cron("0 * * * *"), None, now) == at("2026-12-01 11:00:00")


def test_the_metrics_host_comes_from_the_flag_the_environment_or_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from syncer.cli import build_parser

    monkeypatch.delenv("SYNCER_METRICS_HOST", raising=False)
    assert build_parser().parse_args(["run"]).metrics_host == "127.0.0.1"
    monkeypatch.setenv("SYNCER_METRICS_HOST", "0.0.0.0")
    assert build_parser().parse_args(["run"]).metrics_host == "0.0.0.0"
    assert build_parser().parse_args(["webhooks", "serve"]).metrics_host == "0.0.0.0"
    args = build_parser().parse_args(["run", "--metrics-host", "::", "--metrics-port", "9100"])
    assert (args.metrics_host, args.metrics_port) == ("::", 9100)
