from __future__ import annotations

import pytest

from syncer.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        (" 15M ", 900.0),
    ],
)
def test_parse_duration_reads_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "15x", "m", "30m1h", "1m1m", "-5m", "1h 30m", "5 m"])
def test_parse_duration_rejects_malformed_text_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration(text)
    assert "e.g." in str(info.value)


def test_parse_duration_suggests_a_unit_for_a_bare_number() -> None:
    with pytest.raises(ValueError, match=r'add a unit .*"90s"'):
        parse_duration("90")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (900, "15m"), (5400, "1h30m"), (86400, "1d"), (1.5, "1.5s")],
)
def test_format_duration_writes_what_parse_duration_reads(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_format_duration_rejects_negative_seconds() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)
