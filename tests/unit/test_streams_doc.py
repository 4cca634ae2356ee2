"""``docs/streams.md`` is what ``tools/streams_doc.py`` writes from the stream catalogs: a
catalog changed without a rerun fails here, naming the command to rerun."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from syncer.catalog import Catalog
from syncer.sources.moco.catalog import PATH
from tools import streams_doc

PAGE = Path(__file__).resolve().parents[2] / "docs" / "streams.md"


def test_docs_streams_md_is_what_the_tool_writes_from_the_catalogs() -> None:
    assert PAGE.read_text(encoding="utf-8") == streams_doc.render(), (
        "docs/streams.md is out of date: run python -m tools.streams_doc"
    )


def test_every_stream_of_both_catalogs_has_a_row() -> None:
    text = streams_doc.render()
    moco = Catalog.load(PATH)
    for stream in (*moco, *streams_doc.MOCA):
        assert f"| `{stream.name}` | `{stream.path}` |" in text


def test_a_catalog_change_changes_the_page() -> None:
    moco = Catalog.load(PATH)
    todos = moco["todos"]
    changed = moco.with_stream(replace(todos, enabled=not todos.enabled))
    assert streams_doc.render(moco=changed) != streams_doc.render()
    added = moco.with_stream(replace(todos, name="todo_lists", path="/todo_lists"))
    assert "| `todo_lists` | `/todo_lists` |" in streams_doc.render(moco=added)


def test_the_page_says_what_each_stream_carries() -> None:
    text = streams_doc.render()
    assert (
        "| `activities` | `/activities` | `sorted` | `id` (bigint) | `moco.activities` "
        "| `moco_views.activities` | sweep by ids | `Activity` | yes |"
    ) in text
    assert "| `project_tasks` | `/projects/{project_id}/tasks` | `unsorted`, per project |" in text
    assert "| `report_utilization` | `/report/utilization` | `report` | per month: `date`, " in text
    assert "| `invoice_details` | `/invoices/{id}` | `detail` | `id` of `invoices` |" in text
    assert "| `segments` | `/apps/{app_id}/segments` | `listing`, per app | `id` (text) |" in text
