"""Freshness in ``syncer status``: the age math, its wording, and the ``stale_after`` key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncer.configfile import load_settings
from syncer.durations import format_age
from syncer.errors import ConfigError
from syncer.store.status import Freshness, StreamStatus, freshness

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
DAY = 86400.0


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


# --- the age math ------------------------------------------------------------------------------


def test_ages_are_seconds_from_now() -> None:
    fresh = freshness(NOW, ago(hours=2, minutes=5), ago(minutes=3), DAY)
    assert fresh == Freshness(
        newest_record_age_s=7500.0, since_success_s=180.0, stale=False, stale_after_s=DAY
    )


def test_a_stream_is_stale_once_its_last_success_is_older_than_stale_after() -> None:
    assert not freshness(NOW, None, ago(seconds=3600), 3600.0).stale  # exactly at the limit
    assert freshness(NOW, None, ago(seconds=3601), 3600.0).stale
    assert freshness(NOW, ago(minutes=1), ago(hours=2), 3600.0).stale  # new records don't help


def test_a_stream_that_never_succeeded_is_stale() -> None:
    fresh = freshness(NOW, ago(minutes=1), None, DAY)
    assert fresh.since_success_s is None
    assert fresh.stale


def test_a_quiet_stream_with_old_records_is_fresh_when_it_synced_recently() -> None:
    fresh = freshness(NOW, ago(days=400), ago(minutes=10), DAY)
    assert fresh.newest_record_age_s == 400 * DAY
    assert not fresh.stale


def test_an_empty_table_has_no_newest_record_age() -> None:
    fresh = freshness(NOW, None, ago(minutes=10), DAY)
    assert fresh.newest_record_age_s is None
    assert not fresh.stale


def test_a_stream_the_source_does_not_sync_is_never_stale() -> None:
    fresh = freshness(NOW, None, None, DAY, expected=False)
    assert not fresh.stale
    assert not fresh.expected


def test_a_record_from_a_clock_ahead_of_ours_is_age_zero_not_negative() -> None:
    assert freshness(NOW, NOW + timedelta(minutes=5), NOW, DAY).newest_record_age_s == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45.9, "45s"),
        (59, "59s"),
        (60, "1m"),
        (3 * 60 + 59, "3m"),
        (3599, "59m"),
        (3600, "1h"),
        (2 * 3600 + 5 * 60 + 30, "2h 5m"),
        (86399, "23h 59m"),
        (86400, "1d"),
        (4 * 86400 + 59 * 60, "4d"),
        (4 * 86400 + 3 * 3600, "4d 3h"),
        (400 * 86400, "400d"),
        (-5, "0s"),
    ],
)
def test_format_age_shows_at_most_two_units_rounded_down(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def status(fresh: Freshness, newest: datetime | None) -> StreamStatus:
    return StreamStatus(
        source="moco",
        stream="projects",
        watermark=None,
        in_progress=False,
        last_success_at=None,
        last_run_outcome=None,
        last_run_at=None,
        last_error=None,
        rows=3,
        rejected=0,
        newest_record_at=newest,
        freshness=fresh,
    )


def test_json_carries_the_ages_the_flag_and_the_threshold() -> None:
    newest = ago(seconds=12.3456)
    document = status(freshness(NOW, newest, None, 7200.0), newest).to_json()
    assert document["newest_record_at"] == newest.isoformat()
    assert document["newest_record_age_s"] == 12.346
    assert document["since_success_s"] is None
    assert document["stale"] is True
    assert document["stale_after_s"] == 7200.0
    assert document["rows"] == 3  # the fields that were there stay
    assert document["last_success_at"] is None


# --- the stale_after key -----------------------------------------------------------------------

ENV = {"MOCO_API_KEY": "k", "MOCA_API_TOKEN": "t"}
MOCO = '[sources.moco]\ntype = "moco"\nbase_url = "https://a.mocoapp.com/api/v1"\n'
MOCO += 'api_key_env = "MOCO_API_KEY"\n'
MOCA = '[sources.moca]\ntype = "moca"\nbase_url = "https://api.mocaplatform.com/v2"\n'
MOCA += 'token_env = "MOCA_API_TOKEN"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_stale_after_defaults_to_a_day_for_every_source_type(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MOCO + MOCA), ENV)
    assert settings.source("moco").stale_after_s == DAY
    assert settings.source("moca").stale_after_s == DAY


def test_stale_after_is_read_as_a_duration(tmp_path: Path) -> None:
    text = MOCO + 'stale_after = "2h"\n' + MOCA + "stale_after = 90\n"
    settings = load_settings(write(tmp_path, text), ENV)
    assert settings.source("moco").stale_after_s == 7200.0
    assert settings.source("moca").stale_after_s == 90.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"soon"', 'sources.moco.stale_after: invalid duration "soon"'),
        ('"2"', 'sources.moco.stale_after: invalid duration "2": add a unit'),
        ("0", "sources.moco.stale_after: must be longer than zero"),
        ("true", "sources.moco.stale_after: expected a duration"),
    ],
)
def test_a_bad_stale_after_names_the_key_and_the_fix(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, MOCO + f"stale_after = {value}\n"), ENV)
    assert info.value.exit_code == 2
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(message), info.value.problems
