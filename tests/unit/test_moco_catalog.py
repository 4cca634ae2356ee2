"""MOCO's catalog is what its OpenAPI description says, and every documented list is in it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import orjson

from syncer.catalog import Catalog, Stream
from tools import moco_catalog

ROOT = Path(__file__).resolve().parents[2]


def committed() -> Catalog:
    return Catalog.load(moco_catalog.CATALOG)


def spec() -> dict[str, object]:
    data: dict[str, object] = orjson.loads(moco_catalog.SPEC.read_bytes())
    return data


def test_the_committed_catalog_is_what_the_generator_makes_of_the_spec() -> None:
    made = moco_catalog.generate(moco_catalog.SPEC.read_bytes(), committed())
    assert made.dumps() == moco_catalog.CATALOG.read_bytes(), (
        "syncer/sources/moco/catalog.json is out of date: run python -m tools.moco_catalog"
    )


def test_the_catalog_names_the_spec_it_was_made_from() -> None:
    import hashlib

    origin = committed().origin
    assert origin["sha256"] == hashlib.sha256(moco_catalog.SPEC.read_bytes()).hexdigest()
    assert origin["title"] == "MOCO API v1 (beta)"


def _documented_lists() -> set[str]:
    """Every GET of the spec answering a JSON array, top-level or per project (read here
    without the generator's code)."""
    found = set()
    paths = spec()["paths"]
    assert isinstance(paths, dict)
    for path, item in paths.items():
        schema = item.get("get", {}).get("responses", {}).get("200", {})
        body = schema.get("content", {}).get("application/json", {}).get("schema", {})
        if body.get("type") != "array":
            continue
        holes = re.findall(r"\{\w+\}", path)
        if not holes or (path.startswith("/projects/{project_id}/") and len(holes) == 1):
            found.add(path)
    return found


def test_every_documented_list_is_a_stream_56_top_level_and_5_per_project() -> None:
    lists = _documented_lists()
    assert len(lists) == 61
    assert sum(1 for p in lists if "{" in p) == 5
    catalog = committed()
    listed = {s.path for s in catalog if s.strategy not in ("object", "detail")}
    assert listed == lists


def _by_path(path: str) -> Stream:
    return next(s for s in committed() if s.path == path)


def test_the_strategy_follows_the_documented_parameters() -> None:
    catalog = committed()
    sorted_ = {s.path for s in catalog if s.strategy == "sorted"}
    assert sorted_ == {
        "/activities",
        "/invoices",
        "/offers",
        "/projects",
        "/recurring_expenses",
        "/users",
        "/projects/{project_id}/recurring_expenses",
    }
    for stream in catalog:
        if stream.strategy == "sorted":
            assert stream.takes("sort_by")
            assert stream.takes("updated_after")
        if stream.strategy == "unsorted":
            assert stream.takes("updated_after")
            assert not stream.takes("sort_by") or stream.replication_key is None
        if stream.strategy == "listing":
            assert stream.takes("page")
            assert not stream.takes("updated_after")
        if stream.strategy == "unpaged":
            assert not stream.takes("page")
    unstamped = {s.name for s in catalog if s.strategy == "unsorted" and not s.replication_key}
    assert unstamped == {
        "custom_properties",
        "offer_confirmations",
        "receipts",
        "revenue_categories",
        "vat_code_sales",
        "vat_code_purchases",
    }
    assert {s.path for s in catalog if s.strategy == "unpaged"} == {
        "/letter_papers",
        "/account/internal_hourly_rates",
        "/purchases/budgets",
        "/users/roles",
        "/projects/assigned",
    }
    assert {s.path for s in catalog if s.strategy == "listing"} == {
        "/account/fixed_costs",
        "/invoices/locked",
        "/purchases/bookkeeping_exports",
        "/todos",
    }


def test_per_project_lists_name_their_parent_and_reports_their_period() -> None:
    for path in ("tasks", "contracts", "expenses", "payment_schedules", "recurring_expenses"):
        stream = _by_path(f"/projects/{{project_id}}/{path}")
        assert stream.parent is not None
        assert (stream.parent.stream, stream.parent.param) == ("projects", "project_id")
        assert stream.name == f"project_{path}"
    reports = [s for s in committed() if s.strategy == "report"]
    assert {s.path for s in reports} == {
        "/report/absences",
        "/report/cashflow",
        "/report/finance",
        "/report/planned_vs_tracked",
        "/report/utilization",
    }
    for report in reports:
        assert report.period is not None
        assert report.natural_key
        assert not report.enabled  # opt-in
    assert _by_path("/report/absences").period.params == ("year",)  # type: ignore[union-attr]
    assert _by_path("/report/utilization").period.params == ("from", "to")  # type: ignore[union-attr]


def test_only_what_the_spec_documents_is_sent() -> None:
    for stream in committed():
        for name in stream.params:
            assert stream.takes(name), f"{stream.name} sends {name}, which MOCO does not document"
    assert _by_path("/purchases/categories").max_per_page is None  # no per_page at all
    assert not _by_path("/purchases/categories").paged_headers


def test_record_lists_are_on_by_default_reports_and_details_are_not() -> None:
    """And a project's list that a top-level list holds too (its twin) is opt-in: its records
    are synced once, by the twin."""
    for stream in committed():
        twinned = stream.parent is not None and stream.parent.twin is not None
        assert stream.enabled == (stream.strategy not in ("report", "detail") and not twinned)
    assert not _by_path("/projects/{project_id}/expenses").enabled
    assert _by_path("/projects/expenses").enabled


def test_the_eight_views_of_the_previous_release_keep_their_columns_in_order() -> None:
    path = ROOT / "migrations" / "versions" / "0006_warehouse_views.py"
    loaded = importlib.util.spec_from_file_location("m0006", path)
    assert loaded is not None
    assert loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    for name, columns in module.MOCO_VIEWS.items():
        view = committed()[name].columns
        expected = ["id", *columns, "updated_at", "_synced_at"]
        assert [c.name for c in view[: len(expected)]] == expected
        for column in view[1 : len(columns) + 1]:
            spec_text = columns[column.name]
            kind, _, path = spec_text.partition(" ")
            assert column.type == kind
            assert column.path == tuple((path or column.name).split("."))


def test_references_become_id_columns_and_every_record_view_has_id_first() -> None:
    tasks = committed()["project_tasks"]
    names = [c.name for c in tasks.columns]
    assert names[:2] == ["id", "project_id"]  # the parent's id, from the raw table
    assert ("revenue_category_id", "bigint", ("revenue_category", "id")) in [
        (c.name, c.type, c.path) for c in tasks.columns
    ]
    for stream in committed():
        assert stream.columns, stream.name
        first = stream.columns[0].name
        assert first == ("period_start" if stream.snapshots else "id")
        names = [c.name for c in stream.columns]
        assert len(names) == len(set(names)), stream.name


def test_every_webhook_target_maps_to_streams_of_the_catalog() -> None:
    catalog = committed()
    documented = set(
        spec()["components"]["schemas"]["WebHookTarget"]["enum"]  # type: ignore[index]
    )
    assert catalog.targets <= documented
    assert {s.name for s in catalog.by_target("Expense")} == {"expenses", "project_expenses"}
    assert {s.name for s in catalog.by_target("Task")} == {"project_tasks"}


def test_a_regenerated_catalog_only_adds_view_columns_at_the_end() -> None:
    """A new field in a newer description goes after every column the view had: the view is
    replaced in place and nothing built on it breaks."""
    import dataclasses

    before = committed()
    shrunk = dataclasses.replace(
        before["todos"], columns=tuple(c for c in before["todos"].columns if c.name != "title")
    )
    previous = before.with_stream(shrunk)
    made = moco_catalog.generate(moco_catalog.SPEC.read_bytes(), previous)
    names = [c.name for c in made["todos"].columns]
    assert names[: len(shrunk.columns)] == [c.name for c in shrunk.columns]
    assert names[-1] == "title"
