"""A new source's typed views are the built-in schemas' views, over its own schema: the same
column specs and SQL as migration 0006 (and 0010's analytics_ranges), which stays frozen."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from syncer.sources.moca import views as moca_views
from syncer.sources.moco import views as moco_views
from syncer.store.database import migrations_dir


def _migration(file: str) -> ModuleType:
    path = migrations_dir() / "versions" / file
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}_specs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIGRATION = _migration("0006_warehouse_views.py")
RANGES = _migration("0010_rejected_records.py").VIEW  # moca_views.analytics_ranges


def _unquoted(statement: str) -> str:
    return statement.replace('"', "").replace("create or replace view", "create view")


def test_the_column_specs_are_the_migrations() -> None:
    assert moco_views.VIEWS == MIGRATION.MOCO_VIEWS
    assert moca_views.VIEWS == MIGRATION.MOCA_VIEWS


def test_over_the_built_in_schemas_the_statements_are_the_migrations() -> None:
    made = moco_views.views("moco", "moco_views")
    frozen = [
        MIGRATION.view_sql("moco_views", "moco", n, c) for n, c in MIGRATION.MOCO_VIEWS.items()
    ]
    assert [_unquoted(s) for s in made] == [s.replace('"', "") for s in frozen]
    made = moca_views.views("moca", "moca_views")
    frozen = [
        MIGRATION.view_sql("moca_views", "moca", n, c) for n, c in MIGRATION.MOCA_VIEWS.items()
    ]
    assert [_unquoted(s) for s in made[: len(frozen)]] == [s.replace('"', "") for s in frozen]
    analytics = [" ".join(_unquoted(s).split()) for s in made[len(frozen) :]]
    assert analytics == [
        " ".join(MIGRATION.MOCA_ANALYTICS.replace('"', "").split()),
        " ".join(RANGES.replace('"', "").split()),
    ]


def test_another_source_s_views_read_its_own_tables() -> None:
    for statement in moco_views.views("acme", "acme_views"):
        assert statement.startswith('create or replace view "acme_views".')
        assert '"acme".' in statement
        assert "moco" not in statement
    for statement in moca_views.views("beacons", "beacons_views"):
        assert statement.startswith('create or replace view "beacons_views".')
        assert "moca" not in statement.replace("moca_", "")
