"""``syncer streams SOURCE``: a source's catalog, a row per stream, or its JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncer.show.console import console, print_json

__all__ = ["print_streams", "streams_json"]


def streams_json(rows: Sequence[dict[str, Any]]) -> None:
    """The catalog as one JSON document: a list of objects, one per stream
    (docs/operations.md, "JSON output")."""
    print_json(list(rows))


def print_streams(source: str, vendor: str, rows: Sequence[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"streams of {source} ({vendor})")
    for column in ("stream", "path", "strategy", "table", "view", "deletions", "webhook", "on"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["stream"],
            r["path"] or "-",
            r["strategy_text"] or "-",
            r["table"],
            r["view"] or "-",
            r["deletions"] or "-",
            ", ".join(r["webhook_targets"]) or "-",
            "yes" if r["enabled"] else "no",
        )
    out = console()
    out.print(table)
    on = sum(1 for r in rows if r["enabled"])
    if on < len(rows):
        out.print(
            escape(
                f"{on} of {len(rows)} streams synced; add others with enable_streams in "
                f"[sources.{source}] (reports and details are opt-in)"
            )
        )
