"""A backfill: its progress (a bar on a terminal, else a line per window), its summary line,
and its JSON document."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from syncer.show.console import requests_json

if TYPE_CHECKING:
    from syncer.results import BackfillProgress, BackfillResult


def summary(result: BackfillResult) -> str:
    """The one line a finished backfill is reported with."""
    return (
        f"backfill {result.source}.{result.stream}: {result.outcome}; windows "
        f"{result.windows_done} done, {result.windows_skipped} already done before, of "
        f"{result.windows_total}; {result.records} records, {result.upserted} changed, "
        f"{result.elapsed_s:.1f}s"
    )


def print_summary(result: BackfillResult) -> None:
    print(summary(result))


def progress_lines(source: str, stream: str) -> Callable[[BackfillProgress], None]:
    """A progress callback printing a line each time a window is done (and at the end)."""
    last = [0]

    def show(p: BackfillProgress) -> None:
        done = p.windows_done + p.windows_skipped
        if done != last[0] or p.window is None:
            last[0] = done
            print(
                f"backfill {source}.{stream}: window {done}/{p.windows_total}, "
                f"{p.records} records, {p.records_per_s:.0f}/s",
                flush=True,
            )

    return show


@contextlib.contextmanager
def progress(source: str, stream: str, *, show: bool) -> Iterator[Callable[[Any], None] | None]:
    """A backfill's progress: a bar on a terminal, else a line per window, none unless
    ``show``."""
    if not show:
        yield None
        return
    if not sys.stdout.isatty():
        yield progress_lines(source, stream)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[records]} records, {task.fields[rate]}/s"),
    )
    bar.start()
    task = bar.add_task(f"backfill {source}.{stream}", total=None, records=0, rate=0)

    def advance(p: BackfillProgress) -> None:
        bar.update(
            task,
            total=p.windows_total,
            completed=p.windows_done + p.windows_skipped,
            records=p.records,
            rate=f"{p.records_per_s:.0f}",
        )

    try:
        yield advance
    finally:
        bar.stop()


def backfill_json(result: BackfillResult, outcome: str, code: int) -> dict[str, Any]:
    return {
        "command": "backfill",
        "source": result.source,
        "stream": result.stream,
        "backfill_id": result.backfill_id,
        "outcome": outcome,
        "exit_code": code,
        "range_start": result.range_start.isoformat(),
        "range_end": result.range_end.isoformat(),
        "windows": {
            "total": result.windows_total,
            "done": result.windows_done,
            "skipped": result.windows_skipped,
        },
        "pages": result.pages,
        "records": result.records,
        "changed": result.upserted,
        "rejected": result.rejected,
        **requests_json(result.http),
        "errors": [result.error] if result.error else [],
        "warnings": [],
        "elapsed_s": round(result.elapsed_s, 3),
    }
