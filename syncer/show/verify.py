"""``syncer verify``: the completeness report, a row per stream, or its JSON document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer.show.console import console, requests_json

if TYPE_CHECKING:
    from syncer.results import StreamVerify, VerifyResult

__all__ = ["print_verify_result", "verify_json"]


def verify_json(result: VerifyResult, outcome: str, code: int) -> dict[str, Any]:
    streams = [
        {
            "stream": s.stream,
            "outcome": s.outcome,
            "result": s.verdict,
            "method": s.method,
            "source_count": s.source_count,
            "warehouse_count": s.warehouse_count,
            "missing": s.missing,
            "extra": s.extra,
            "repaired": s.repaired,
            "unrepaired": s.unrepaired,
            "requests": s.http.requests,
            "planned_requests": s.planned,
            "warning": s.warning,
            "error": s.error,
        }
        for s in result.streams
    ]
    return {
        "command": "verify",
        "source": result.source,
        "run_id": result.run_id,
        "outcome": outcome,
        "exit_code": code,
        "repair": result.repair,
        "planned_requests": result.planned,
        "streams": streams,
        **requests_json(result.http),
        "errors": result.errors,
        "warnings": result.warnings,
        "elapsed_s": round(result.elapsed_s, 3),
    }


def _result(s: StreamVerify) -> str:
    if s.outcome not in ("succeeded", "running"):
        return str(s.outcome)
    if s.verdict == "verified":
        return "✓"
    if s.verdict == "not_verified":
        return "– not verified"
    return str(s.verdict)


def print_verify_result(result: VerifyResult) -> None:
    from rich.table import Table

    title = f"verify {result.source} (run {result.run_id})"
    table = Table(title=title + ("" if result.repair else ", --no-repair"))
    columns = (
        "stream",
        "result",
        "by",
        "source",
        "warehouse",
        "missing",
        "extra",
        "repaired",
        "requests",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("stream", "result", "by") else "right"
        )
    for s in result.streams:
        table.add_row(
            f"{result.source}.{s.stream}",
            _result(s),
            s.method,
            "-" if s.source_count is None else str(s.source_count),
            "-" if s.warehouse_count is None else str(s.warehouse_count),
            str(s.missing),
            str(s.extra),
            str(s.repaired),
            str(s.http.requests),
        )
    out = console()
    out.print(table)
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    found = sum(s.missing + s.extra for s in result.streams)
    repaired = sum(s.repaired for s in result.streams)
    http = result.http
    out.print(
        f"{found} differences found, {repaired} repaired; {http.requests} requests "
        f"(planned {result.planned} if nothing differed; {http.rate_limited} answered 429), "
        f"{result.elapsed_s:.1f}s in all"
    )
