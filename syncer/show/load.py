"""A load into a destination: its table and summary lines, and its JSON document."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncer.show.console import console

if TYPE_CHECKING:
    from syncer.results import LoadResult


def print_released(released: int) -> None:
    """``--release-held``: how many held events the load is about to send."""
    console().print(f"released {released} held events; this load sends them")


def print_load_result(result: LoadResult, dry_run: Path | None) -> None:
    from rich.table import Table

    out = console()
    verb = "would send" if dry_run else "sent"
    table = Table(title=f"load {result.destination}" + (" (dry run)" if dry_run else ""))
    for column in ("model", verb):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in _models_of(result):
        table.add_row(model, str(result.sent.get(model, 0)))
    out.print(table)
    summary = result.to_json()
    out.print(
        f"{summary['batches']} requests, {summary['bytes']} bytes "
        f"(mean {summary['mean_body_bytes']}, max {summary['max_body_bytes']} per body), "
        f"{summary['rate_limited']} answered 429, {summary['server_errors']} answered 5xx, "
        f"{result.waited_s:.1f}s waiting for the rate limit, {result.elapsed_s:.1f}s in all"
    )
    if result.dead_letters:
        reasons = ", ".join(f"{rule}: {n}" for rule, n in sorted(result.dead_letters.items()))
        where = "" if dry_run else " (see `syncer status` and syncer.dead_letters)"
        out.print(f"dead letters: {reasons}{where}")
    vendor = result.vendor or result.destination
    rows = " and ".join(result.once) or "rows"  # what a second send may duplicate ("events")
    if result.possibly_duplicated:
        out.print(
            f"possible duplicates: {result.possibly_duplicated} {rows} sent again after a "
            f"request carrying them got no answer ({vendor} does not deduplicate {rows})"
        )
    if result.held:
        out.print(
            f"{result.held} {rows} held: their request got no answer and may have arrived; "
            f"send them with `syncer load {result.destination} --release-held`"
        )
    if result.truncated:
        cuts = ", ".join(f"{label}: {n}" for label, n in sorted(result.truncated.items()))
        out.print(f"cut to {vendor}'s limits on values and names: {cuts}")
    if result.lowered_limits:
        lowered = ", ".join(f"{unit} {n}" for unit, n in sorted(result.lowered_limits.items()))
        out.print(
            f"{vendor} throttled bodies within rate_limit: sent at most {lowered} per window; "
            f"lower [destinations.{result.destination}.rate_limit] to the account's limits"
        )
    if dry_run:
        out.print(f"bodies written to {dry_run}/")
        if result.truncations:
            out.print(f"each truncated value or name: {dry_run}/truncations.jsonl")


def _models_of(result: LoadResult) -> tuple[str, ...]:
    """The destination's models in its order; those that sent something if none are known."""
    return result.models or tuple(sorted(result.sent))


def load_json(result: LoadResult, outcome: str, code: int) -> dict[str, Any]:
    summary = result.to_json()
    return {
        "command": "load",
        "destination": result.destination,
        "run_id": result.run_id,
        "dry_run": result.dry_run,
        "outcome": outcome,
        "exit_code": code,
        "models": {m: {"sent": result.sent.get(m, 0)} for m in _models_of(result)},
        "requests": summary["batches"],
        **{k: v for k, v in summary.items() if k not in ("sent",)},
        "waited_s": round(result.waited_s, 3),
        "errors": [result.error] if result.error else [],
        "warnings": [],
        "elapsed_s": round(result.elapsed_s, 3),
    }
