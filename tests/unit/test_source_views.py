"""A source's typed views: MOCO's from its catalog, MOCA's from its column specs (those of
migration 0006, and 0010's analytics_ranges, which stays frozen), each over its own schema."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

from syncer.sources.catalogs import catalog_views
from syncer.sources.moca import views as moca_views
from syncer.sources.moco.catalog import CATALOG
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
moco_views = catalog_views(CATALOG)


def _columns(statement: str) -> list[str]:
    """The column names a view statement selects, in order."""
    body = statement.split("\nselect ", 1)[1].split("\nfrom ", 1)[0]
    return [re.findall(r'"?(\w+)"?$', part.strip())[0] for part in body.split(",\n")]


def test_moca_column_specs_are_the_migrations() -> None:
    assert moca_views.VIEWS == MIGRATION.MOCA_VIEWS


def test_over_the_built_in_schemas_the_views_keep_the_columns_the_migrations_made() -> None:
    made = {s.split('"')[3]: _columns(s) for s in moco_views("moco", "moco_views")}
    for name, columns in MIGRATION.MOCO_VIEWS.items():
        kept = ["id", *columns, "updated_at", "_synced_at"]
        assert made[name][: len(kept)] == kept
    assert set(made) == set(CATALOG.names)
    made = {s.split('"')[3]: _columns(s) for s in moca_views.views("moca", "moca_views")[:-2]}
    for name, columns in MIGRATION.MOCA_VIEWS.items():
        assert made[name] == ["id", *columns, "updated_at", "_synced_at"]


def test_another_source_s_views_read_its_own_tables() -> None:
    for statement in moco_views("acme", "acme_views"):
        assert statement.startswith('create or replace view "acme_views".')
        assert '"acme".' in statement
        assert "moco" not in statement
    for statement in moca_views.views("beacons", "beacons_views"):
        assert statement.startswith('create or replace view "beacons_views".')
        assert "moca" not in statement.replace("moca_", "")


def test_no_typed_column_can_fail_a_select() -> None:
    """A date or timestamp is cast only once the day is checked against its month's length
    (2024-02-30 is NULL, not an error); tests/integration/test_views.py selects such values."""
    for statement in moco_views("moco", "moco_views"):
        for kind in ("date", "timestamptz"):
            assert statement.count(f"::{kind} end end") == statement.count(f"::{kind} end")
