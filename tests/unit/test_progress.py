"""Progress of long runs, rendered from given figures: shares, time left, lines and the table."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from typing import Any

import pytest
from rich.console import Console

from syncer import progress
from syncer.durations import format_rounded
from syncer.errors import ConfigError
from syncer.progress import Board, Figures, figures_of, records_left, stream_text, time_left
from syncer.results import LoadResult, StreamSweep
from syncer.runners.sync import StreamResult


def stream(name: str, *, pages: int, records: int, left: int | None, requests: int) -> Any:
    result = StreamResult(name, pages=pages, records=records, left=left)
    result.http.requests = requests
    return result


def running(name: str, left_requests: int, requests: int = 0) -> Figures:
    return Figures(
        name, "running", requests, requests * 100, left_requests * 100, requests, left_requests
    )


def test_records_left_comes_from_the_current_querys_total() -> None:
    assert records_left(10_000, 1, 100, False) == 9_900  # a keyset step: page 1 of its query
    assert records_left(10_000, 9, 100, False) == 9_100  # a sprint's last page
    assert records_left(50, 1, 100, False) == 0
    assert records_left(None, 1, 100, False) is None
    assert records_left(10_000, 1, 100, True) == 0


def test_streams_share_the_rate_until_the_shortest_is_done() -> None:
    # 1 request/s shared: both advance at 0.5/s until a is done (20 s), then b alone (20 s more).
    eta = time_left([running("a", 10), running("b", 30)], 1.0, elapsed_s=1.0)
    assert eta == {"a": 20.0, "b": 40.0}


def test_a_pace_slower_than_the_limit_wins() -> None:
    # A limit of 10/s would take 0.5 s; the stream made 10 requests in 100 s: 50 s.
    eta = time_left([running("slow", 5, requests=10)], 10.0, elapsed_s=100.0)
    assert eta == {"slow": pytest.approx(50.0)}


def test_without_a_limit_or_a_pace_there_is_no_estimate() -> None:
    assert time_left([running("a", 5, requests=1)], None, elapsed_s=10.0) == {}
    finished = Figures("b", "succeeded", 3, 250, 0, 3, 0)
    assert time_left([finished], 1.0, elapsed_s=10.0) == {}


def test_a_sync_stream_in_figures_and_words() -> None:
    f = figures_of(stream("activities", pages=10, records=1_000, left=9_000, requests=10))
    assert (f.state, f.fraction, f.left_requests) == ("running", 0.1, 90)
    eta = time_left([f], 1.0, elapsed_s=1.0)
    assert stream_text(f, eta["activities"]) == (
        "10 pages, 1,000 records, 10% of ~10,000, about 1m 30s left"
    )


def test_streams_waiting_done_and_failed() -> None:
    assert figures_of(StreamResult("projects")).state == "waiting"
    done = figures_of(StreamResult("users", outcome="succeeded", pages=3, records=250))
    assert (done.fraction, stream_text(done, None)) == (1.0, "succeeded, 3 pages, 250 records")
    failed = figures_of(StreamResult("deals", outcome="failed", pages=1, records=100, left=50))
    assert stream_text(failed, None) == "failed, 1 pages, 100 records"
    unknown = figures_of(stream("offers", pages=2, records=200, left=None, requests=2))
    assert unknown.fraction is None
    assert stream_text(unknown, None) == "2 pages, 200 records"


def test_a_sweep_stream_counts_ids_and_requests_of_100() -> None:
    sweep = StreamSweep("activities", checked=300, total=1_000)
    sweep.http.requests = 3
    f = figures_of(sweep)
    assert (f.unit, f.left, f.left_requests, f.fraction) == ("ids", 700, 7, 0.3)
    assert stream_text(f, 7.0) == "3 requests, 300 ids, 30% of ~1,000, about 7s left"
    assert figures_of(StreamSweep("projects")).state == "waiting"


def test_durations_read_naturally() -> None:
    assert format_rounded(45.4) == "45s"
    assert format_rounded(870) == "14m 30s"
    assert format_rounded(2 * 3600 + 5 * 60 + 59) == "2h 05m"


def test_plain_lines_report_running_streams_each_time_and_an_end_once() -> None:
    a = stream("activities", pages=1, records=100, left=900, requests=1)
    b = StreamResult("projects")
    board = Board("sync", "moco", 1.0, items=[a, b])
    out = io.StringIO()
    plain = progress._Plain(board, out)
    plain.tick()
    a.pages, a.records, a.left, a.http.requests = 2, 200, 800, 2
    plain.tick()
    a.outcome, a.left, a.pages, a.records = "succeeded", 0, 10, 1_000
    plain.tick()
    plain.tick()
    assert out.getvalue().splitlines() == [
        "sync moco.activities: 1 pages, 100 records, 10% of ~1,000, about 9s left",
        "sync moco.activities: 2 pages, 200 records, 20% of ~1,000, about 8s left",
        "sync moco.activities: succeeded, 10 pages, 1,000 records",
    ]


def test_plain_lines_of_a_load() -> None:
    result = LoadResult(
        "moengage",
        dry_run=False,
        body_sizes=[90_000, 95_000],
        models=("users", "devices", "events"),
    )
    result.sent = Counter(users=1_000, events=2_500)
    result.dead_letters = Counter(reserved_attribute=3)
    out = io.StringIO()
    progress._Plain(Board("load", "moengage", None, items=[result]), out).tick()
    assert out.getvalue() == (
        "load moengage: 1,000 users, 0 devices, 2,500 events sent in 2 requests, 3 dead letters\n"
    )


def test_the_live_table_shows_each_stream_with_its_share() -> None:
    items = [
        stream("activities", pages=25, records=2_500, left=7_500, requests=25),
        StreamResult("users", outcome="succeeded", pages=1, records=40),
    ]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(progress.table(Board("sync", "moco", 1.0, items=items), 0.0))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "activities" in text
    assert "25% of ~10,000" in text
    assert "25 pages, 2,500 records, about" in text
    assert "succeeded, 1 pages, 40 records" in text


def test_a_bad_period_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.PERIOD_ENV, "soon")
    with pytest.raises(ConfigError, match=progress.PERIOD_ENV):
        progress.period_s()
    monkeypatch.setenv(progress.PERIOD_ENV, "2s")
    assert progress.period_s() == 2.0


async def test_a_run_watched_inside_the_block_is_shown_and_outside_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(progress.PERIOD_ENV, "0.01")
    result = stream("activities", pages=1, records=100, left=900, requests=1)
    progress.watch([result])  # no command asked: nothing happens
    out = io.StringIO()
    async with progress.showing("sync", "moco", rate_per_s=1.0, live=False, out=out) as board:
        progress.watch([result])
        assert board.items == [result]
        async with asyncio.timeout(60):
            while "sync moco.activities: 1 pages" not in out.getvalue():
                await asyncio.sleep(0.01)
    quiet = io.StringIO()
    async with progress.showing("sync", "moco", enabled=False, out=quiet) as board:
        progress.watch([result])
        await asyncio.sleep(0.05)
    assert board.items == []
    assert quiet.getvalue() == ""


async def test_the_commands_show_nothing_with_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from argparse import Namespace

    from syncer.cli import _progress

    monkeypatch.setenv(progress.PERIOD_ENV, "0.01")
    result = stream("activities", pages=1, records=100, left=900, requests=1)
    async with _progress(Namespace(json=True, verbose=False), "sync", "moco", 1.0) as board:
        progress.watch([result])
        await asyncio.sleep(0.05)
    assert board.items == []  # nothing watched: nothing polled, nothing written
    async with _progress(Namespace(verbose=False), "sync", "moco", 1.0) as board:
        progress.watch([result])
    assert board.items == [result]
