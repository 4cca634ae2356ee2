"""Write ``docs/streams.md`` from the stream catalogs: one table per source type.

    python -m tools.streams_doc            # rewrites docs/streams.md
    python -m tools.streams_doc --check    # exit 1 if the page is out of date

A catalog (``syncer.catalog``) is the one place a stream is declared: MOCO's is
``syncer/sources/moco/catalog.json`` (generated from MOCO's OpenAPI description by
``tools/moco_catalog.py``), MOCA's is ``syncer/sources/moca/catalog.py``. This tool writes, per
source type, each stream's path as the vendor documents it, its strategy, its key, its table
and view (in the built-in source's schemas), how its deletions are found, the webhook targets
that change it and whether it is synced by default, under a short header explaining the
strategies. The whole page is written here; ``tests/unit/test_streams_doc.py`` fails while it
differs from what this writes, so a catalog change without a rerun fails CI.

The shipped catalogs are read, never one named by ``SYNCER_MOCO_CATALOG``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from syncer.catalog import DELETIONS, STRATEGIES, Catalog, Stream
from syncer.sources.moca.catalog import CATALOG as MOCA
from syncer.sources.moco.catalog import PATH as MOCO_PATH

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "streams.md"
COMMAND = "python -m tools.streams_doc"

# What each strategy does, for the header (the catalog names them; syncer/extract/ reads them).
EXPLAINED: Mapping[str, str] = {
    "sorted": "the list takes `updated_after` and `sort_by`, and its records carry "
    "`updated_at`: a keyset walk by `updated_at` from the watermark, its order verified on "
    "every page (never assumed)",
    "unsorted": "`updated_after` without `sort_by`, or records without `updated_at`: one query "
    "from the watermark less the overlap, read by offset pages and watched for changes; the "
    "watermark is the server's clock when the query began",
    "listing": "paged, without `updated_after`: every page each run; what it no longer lists "
    "is deleted (behind the deletion guard), trusted only if nothing changed while it ran",
    "unpaged": "no `page` parameter: one request for the whole list each run, deletions by absence",
    "report": "rows without an id, asked for a period (`from`/`to` or `year`): kept per period, "
    "pulled again while the period is open (`report_months`, `report_open_months`)",
    "object": "one object, not a list: one request, one row",
    "detail": "one request per record of another stream that changed since its detail was "
    "read, at most `details_budget` a run",
}
DELETIONS_EXPLAINED: Mapping[str, str] = {
    "ids": "`syncer sweep` asks for the stored ids with the list's `ids` filter, 100 a request",
    "listing": "`syncer sweep` lists every id again (per parent record)",
    "sync": "the sync reads the whole list and finds them itself",
    "parent": "a detail row goes with its record",
    "none": "nothing to find: reports are pulled again per period, an object is one row",
}


def _code(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def key_of(stream: Stream) -> str:
    """A stream's key in its table, in words."""
    if stream.snapshots:
        unit = stream.period.unit if stream.period else ""
        per = f"per {unit}: " if unit in ("month", "year") else ""
        return per + (_code(stream.natural_key) or "the row")
    if stream.detail_of is not None:
        return f"`id` of `{stream.detail_of}`"
    return f"`id` ({stream.key_type})"


def strategy_of(stream: Stream) -> str:
    text = f"`{stream.strategy}`"
    if stream.parent is not None:
        text += f", per {stream.parent.param.removesuffix('_id')}"
    return text


def table(catalog: Catalog, schema: str) -> str:
    lines = [
        "| stream | path | strategy | key | table | view | deletions found by | webhook target "
        "| on by default |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in catalog:
        cells = [
            f"`{s.name}`",
            f"`{s.path}`",
            strategy_of(s),
            key_of(s),
            f"`{schema}.{s.name}`",
            f"`{schema}_views.{s.name}`",
            DELETIONS[s.deletions],
            _code(s.webhook_targets) or "–",
            "yes" if s.enabled else "no",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _bullets(items: Iterable[str]) -> str:
    """A Markdown list, each item wrapped at 96 characters, ``;`` between items."""
    texts = list(items)
    return "\n".join(
        textwrap.fill(
            text + (";" if i < len(texts) - 1 else ""),
            96,
            initial_indent="- ",
            subsequent_indent="  ",
            break_on_hyphens=False,
        )
        for i, text in enumerate(texts)
    )


def _counts(catalog: Catalog) -> str:
    on = len(catalog.defaults)
    return f"{len(catalog)} streams, {on} on by default"


def render(moco: Catalog | None = None, moca: Catalog | None = None) -> str:
    """The page for the shipped catalogs (or the ones given)."""
    moco = Catalog.load(MOCO_PATH) if moco is None else moco
    moca = MOCA if moca is None else moca
    unexplained = (set(STRATEGIES) ^ set(EXPLAINED)) | (set(DELETIONS) ^ set(DELETIONS_EXPLAINED))
    if unexplained:
        raise ValueError(f"explain in {__name__}: {sorted(unexplained)}")
    origin = moco.origin
    strategies = _bullets(f"`{k}` ({STRATEGIES[k]}): {EXPLAINED[k]}" for k in STRATEGIES)
    deletions = _bullets(f"{DELETIONS[k]}: {DELETIONS_EXPLAINED[k]}" for k in DELETIONS)
    return f"""# Streams

<!-- Written by `{COMMAND}` from the stream catalogs. Edit the catalogs (or the
tool), not this page: a test fails when the two disagree. -->

Every stream a source type can have: where the vendor lists it, how syncer reads it, its key,
the table that keeps it and the typed view over that table (for the built-in sources
`[sources.moco]` and `[sources.moca]`; a source of another name writes `<schema>.<stream>` and
`<schema>_views.<stream>`), how records deleted at the source are found, which webhook targets
change it, and whether it is synced unless the configuration says otherwise. `syncer streams
SOURCE` shows the same for a configured source, and `--json` as a list of objects
([operations](operations.md), "JSON output"); the tables and views are described in
[warehouse](warehouse.md).

A stream's **strategy** follows from the parameters its list documents:

{strategies}.

A strategy "per project" (or "per app", "per campaign") reads the list once per record of its
parent stream (`/projects/{{project_id}}/tasks`), the parents taken from the warehouse, each with
a position of its own; its table keeps the parent's id (MOCO: `_parent_id`, in the view
`project_id`). Every strategy commits a page with the stream's new position in one transaction,
so a run killed at any point resumes. How MOCO's walks are verified is in
[vendors/moco.md](vendors/moco.md), how MOCA is scanned in [vendors/moca.md](vendors/moca.md).

**Deletions found by**:

{deletions}.

**On by default**: the streams a source syncs when its `streams` key is left out. Choose others
with `streams`, add opt-in ones with `enable_streams` and leave some out with `disable_streams`
([configuration](configuration.md)).

## MOCO (`type = "moco"`)

{_counts(moco)}. The catalog is generated by `python -m tools.moco_catalog` from MOCO's
OpenAPI description, {origin.get("title", "")} {origin.get("version", "")}
(`tools/moco-openapi.json`, published at {origin.get("documentation", "")});
`SYNCER_MOCO_CATALOG` names another catalog to use instead.

{table(moco, "moco")}

## MOCA (`type = "moca"`)

{_counts(moca)}. MOCA's paths are inferred and configurable (`paths`; see
[vendors/moca.md](vendors/moca.md)); every list is read in full each run, or between full scans
by `updatedSince` where the server honours it.

{table(moca, "moca")}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        print(f"{PAGE} matches the catalogs")
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
