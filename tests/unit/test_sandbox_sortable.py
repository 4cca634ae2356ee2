"""The MOCO sandbox's check of a `sort_by` field agrees with the fields it lists as sortable."""

from __future__ import annotations

from syncer.sandbox.moco import _sortable, _sortable_fields

ROWS = [
    {"id": 1, "name": "a", "customer": {"id": 7}, "tags": [], "note": None},
    {"id": 2, "name": "b", "customer": None, "budget": 3.5},
    {"id": 3, "title": "c", "tags": None},
]


def test_each_field_is_sortable_exactly_when_the_listing_says_so() -> None:
    names = {name for row in ROWS for name in row} | {"updated_at", "created_at", "absent"}
    allowed = _sortable_fields(ROWS)
    assert {name for name in names if _sortable(ROWS, name)} == allowed
    # A field nested in one row is refused even where other rows hold a scalar.
    assert "customer" not in allowed
    assert "tags" not in allowed
    assert {"name", "budget", "title", "note", "updated_at"} <= allowed
    assert not _sortable(ROWS, "absent")
    assert not _sortable([], "name")
    assert _sortable([], "id")
