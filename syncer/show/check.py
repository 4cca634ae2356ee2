"""``syncer check``: a row per check (what it found and the fix), or its JSON document; and
``syncer migrate``'s line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer.show.console import console

if TYPE_CHECKING:
    from syncer.check import CheckReport


def check_json(report: CheckReport, code: int) -> dict[str, Any]:
    return {
        "command": "check",
        "outcome": "succeeded" if report.ok else "failed",
        "exit_code": code,
        "checks": [r.to_json() for r in report.rows],
        "errors": [f"{r.check}: {r.detail}" for r in report.rows if r.status == "failed"],
        "warnings": [],
        "elapsed_s": round(report.elapsed_s, 3),
    }


def print_check(report: CheckReport) -> None:
    from rich.table import Table

    table = Table(title="syncer check")
    for column in ("", "check", "found", "fix"):
        table.add_column(column)
    marks = {"ok": "[green]✓[/]", "failed": "[bold red]✗[/]", "not_checked": "–"}
    for r in report.rows:
        table.add_row(marks[r.status], r.check, r.detail, r.fix or "")
    console().print(table)


def print_migrated(url: str) -> None:
    """``syncer migrate`` done: the database (its secrets redacted) and where it stands."""
    from syncer.store.database import redact

    print(f"database {redact(url)} is at the newest migration")
