"""A run over a source's streams, a sync or a sweep: its table and its JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer.show.console import console, requests_json

if TYPE_CHECKING:
    from syncer.results import SweepResult, SyncResult


def print_sync_result(result: SyncResult) -> None:
    from rich.table import Table

    table = Table(title=f"sync {result.source} (run {result.run_id})")
    columns = (
        "stream",
        "outcome",
        "pages",
        "requests",
        "records",
        "changed",
        "deleted",
        "rejected",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("stream", "outcome") else "right")
    for s in result.streams:
        resumed = s.resumed_after_pages
        outcome = s.outcome + (f" (resumed after {resumed} pages)" if resumed else "")
        table.add_row(
            f"{result.source}.{s.stream}",
            outcome,
            str(s.pages),
            str(s.http.requests),
            str(s.records),
            str(s.upserted),
            str(s.deleted),
            str(s.rejected),
        )
    out = console()
    out.print(table)
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    rejected = sum(s.rejected for s in result.streams)
    if rejected:
        out.print(
            f"[yellow]warning:[/yellow] {rejected} records could not be stored; they and "
            f"their reasons are in "
            f"syncer.rejected_records (see `syncer status`)"
        )
    http = result.http
    out.print(
        f"{http.requests} requests ({http.retries} retried, {http.rate_limited} answered 429), "
        f"{http.waited_s:.1f}s waiting for the rate limit (summed over streams), "
        f"{result.elapsed_s:.1f}s in all"
    )


def print_sweep_result(result: SweepResult) -> None:
    from rich.table import Table

    table = Table(title=f"sweep {result.source} (run {result.run_id})")
    columns = ("stream", "outcome", "checked", "requests", "deleted", "restored", "withheld")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stream", "outcome") else "right")
    for s in result.streams:
        table.add_row(
            f"{result.source}.{s.stream}",
            s.outcome,
            str(s.checked),
            str(s.http.requests),
            str(s.deleted),
            str(s.restored),
            str(s.withheld),
        )
    out = console()
    out.print(table)
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    http = result.http
    out.print(
        f"{http.requests} requests ({http.retries} retried, {http.rate_limited} answered 429), "
        f"{http.waited_s:.1f}s waiting for the rate limit, {result.elapsed_s:.1f}s in all"
    )


def _streams_json(
    command: str,
    result: SyncResult | SweepResult,
    outcome: str,
    code: int,
    streams: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document of a run over a source's streams (a sync, a sweep)."""
    return {
        "command": command,
        "source": result.source,
        "run_id": result.run_id,
        "outcome": outcome,
        "exit_code": code,
        "streams": streams,
        **requests_json(result.http),
        "errors": result.errors,
        "warnings": result.warnings,
        "elapsed_s": round(result.elapsed_s, 3),
    }


def sync_json(result: SyncResult, outcome: str, code: int) -> dict[str, Any]:
    streams = [
        {
            "stream": s.stream,
            "outcome": s.outcome,
            "pages": s.pages,
            "requests": s.http.requests,
            "records": s.records,
            "changed": s.upserted,
            "deleted": s.deleted,
            "rejected": s.rejected,
            "resumed_after_pages": s.resumed_after_pages,
            "error": s.error,
        }
        for s in result.streams
    ]
    return _streams_json("sync", result, outcome, code, streams)


def sweep_json(result: SweepResult, outcome: str, code: int) -> dict[str, Any]:
    streams = [
        {
            "stream": s.stream,
            "outcome": s.outcome,
            "checked": s.checked,
            "requests": s.http.requests,
            "deleted": s.deleted,
            "restored": s.restored,
            "withheld": s.withheld,
            "error": s.error,
        }
        for s in result.streams
    ]
    return _streams_json("sweep", result, outcome, code, streams)
