"""The pure parts of the extraction strategies: what a list is asked, when a walk or a listing
may be trusted, report periods and keys, and where counts say a table differs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from syncer.catalog import Catalog, Column, Parent, Stream
from syncer.extract import completeness
from syncer.extract.base import Page, Query
from syncer.extract.listing import Listing
from syncer.extract.records import Row
from syncer.extract.reports import is_open, natural_keys, period_key, periods
from syncer.extract.walk import Walk
from syncer.sources.moco.api import MocoLister, years_back
from syncer.sources.moco.catalog import CATALOG

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def lister() -> MocoLister:
    return MocoLister("https://acme.mocoapp.com/api/v1", 100, (2025, 2026))


# --- what a list is asked ------------------------------------------------------------------


def test_a_sorted_list_is_asked_in_updated_at_order_an_unsorted_one_never() -> None:
    query = Query(updated_after=T0, sorted=True)
    assert lister().params(CATALOG["activities"], query, 3) == {
        "page": "3",
        "per_page": "100",
        "updated_after": "2026-12-01T12:00:00Z",
        "sort_by": "updated_at asc",
    }
    assert "sort_by" not in lister().params(CATALOG["companies"], query, 1)
    assert lister().params(CATALOG["companies"], query, 1)["include_archived"] == "true"


def test_only_documented_parameters_are_sent() -> None:
    paging = lister()
    # No per_page where MOCO documents none; no page at all for an unpaged list.
    assert paging.params(CATALOG["purchase_categories"], Query(), 2) == {"page": "2"}
    assert paging.params(CATALOG["letter_papers"], Query(), 2) == {}
    # A list without updated_after is never asked for it.
    assert "updated_after" not in paging.params(CATALOG["todos"], Query(updated_after=T0), 1)
    for stream in CATALOG:
        asked = paging.params(stream, Query(updated_after=T0, sorted=True, ids=[1]), 1)
        assert set(asked) <= stream.query, stream.name


def test_per_parent_and_detail_paths_are_filled_in() -> None:
    paging = lister()
    assert paging.url(CATALOG["project_tasks"], parent="944000123").endswith(
        "/api/v1/projects/944000123/tasks"
    )
    assert paging.url(CATALOG["invoice_details"], record="42").endswith("/api/v1/invoices/42")
    with pytest.raises(ValueError, match="per projects record"):
        paging.url(CATALOG["project_tasks"])


def test_reports_are_asked_for_their_period_by_month_or_by_year() -> None:
    paging = lister()
    month = (date(2026, 11, 1), date(2026, 11, 30))
    assert paging.params(CATALOG["report_utilization"], Query(period=month), None) == {
        "from": "2026-11-01",
        "to": "2026-11-30",
    }
    year = (date(2026, 1, 1), date(2026, 12, 31))
    assert paging.params(CATALOG["report_absences"], Query(period=year), None) == {"year": "2026"}
    assert paging.params(CATALOG["internal_hourly_rates"], Query(), None)["years"] == "2025,2026"


def test_the_years_of_the_report_window() -> None:
    assert years_back(24, date(2026, 12, 7)) == (2025, 2026)
    assert years_back(12, date(2026, 12, 7)) == (2026,)
    assert years_back(13, date(2026, 12, 7)) == (2025, 2026)
    assert years_back(1, date(2026, 1, 31)) == (2026,)


def page(count: int, *, size: int = 100, next_link: bool | None = None) -> Page:
    rows = [Row(i, None, "{}") for i in range(count)]
    return Page(rows, [], count, None, next_link, T0, size)


def test_a_page_without_paging_headers_ends_the_list_when_short() -> None:
    assert page(100).has_next
    assert not page(99).has_next
    assert not page(0, next_link=True).has_next  # an empty page ends it, whatever Link says
    assert not page(100, next_link=False).has_next  # Link decides where it is sent


# --- unsorted walks -------------------------------------------------------------------------


def test_an_unsorted_walk_pages_by_offset_and_never_steps_by_keyset() -> None:
    walk = Walk.unsorted(T0 - timedelta(hours=1))
    after = walk.after_page(
        served_at=T0,
        total=250,
        updated_ats=[T0 - timedelta(minutes=i) for i in range(100)],
        has_next=True,
    )
    assert (after.keyset, after.page, after.lower_bound) == (False, 2, walk.lower_bound)
    assert after.watch_since == T0


def test_an_unsorted_walk_s_watermark_is_its_newest_record_or_else_the_server_s_clock() -> None:
    newest = T0 - timedelta(days=3)
    done = Walk.unsorted(None).after_page(
        served_at=T0, total=2, updated_ats=[newest - timedelta(days=1), newest], has_next=False
    )
    assert done.watermark(None) == newest
    # Records without updated_at: the server's clock is all there is.
    blind = Walk.unsorted(None).after_page(
        served_at=T0, total=2, updated_ats=[None, None], has_next=False
    )
    assert blind.watermark(None) == T0


def test_a_change_seen_under_an_unsorted_walk_keeps_the_watermark_at_its_start() -> None:
    lower = T0 - timedelta(hours=1)
    walk = Walk.unsorted(lower).after_page(
        served_at=T0, total=150, updated_ats=[lower + timedelta(minutes=1)] * 100, has_next=True
    )
    moved = walk.after_page(
        served_at=T0 + timedelta(seconds=5),
        total=149,  # a deletion meanwhile shifted the pages
        updated_ats=[lower + timedelta(minutes=2)] * 49,
        has_next=False,
    )
    assert moved.disturbed
    assert moved.watermark(T0 - timedelta(hours=2)) == lower


def test_a_saved_walk_from_before_the_catalog_starts_over_unsorted() -> None:
    from syncer.extract.walker import first_walk

    saved = Walk(lower_bound=T0, page=3, start=T0 - timedelta(days=1))  # a keyset walk of 0.2
    walk, resumed = first_walk(CATALOG["companies"], saved, T0, overlap_s=300, full_refresh=False)
    assert not resumed
    assert walk.clock
    assert walk.lower_bound == T0 - timedelta(days=1)


def test_walks_keep_their_json_shape_for_replicas_of_the_previous_release() -> None:
    keys = set(Walk.unsorted(T0).to_json())
    assert {
        "lower_bound",
        "page",
        "pages",
        "keyset",
        "query_started_at",
        "query_total",
        "max_stored",
        "watch_since",
        "watch_lower",
        "disturbed",
    } <= keys
    assert Walk.from_json(Walk.unsorted(T0).to_json()) == Walk.unsorted(T0)


# --- listings ---------------------------------------------------------------------------------


def listed(keys: list[int], total: int | None, *, next_link: bool | None) -> Page:
    rows = [Row(k, T0 - timedelta(days=1), "{}") for k in keys]
    return Page(rows, [], len(rows), total, next_link, T0, 2)


def test_a_listing_with_totals_is_stable_while_the_total_holds() -> None:
    first, done = Listing().after(listed([1, 2], 3, next_link=True), stamped=True)
    assert not done
    second, done = first.after(listed([3], 3, next_link=False), stamped=True)
    assert done
    assert second.stable
    shrunk, _ = first.after(listed([4], 2, next_link=False), stamped=True)
    assert not shrunk.stable


def test_a_listing_of_one_page_is_one_answer_whatever_its_stamps() -> None:
    fresh = Page([Row(1, T0, "{}"), Row(2, T0, "{}")], [], 2, 2, False, T0, 2)
    one, done = Listing().after(fresh, stamped=True)
    assert done
    assert one.stable  # changed in the second it was served: still one consistent answer
    first, _ = Listing().after(listed([1, 2], 4, next_link=True), stamped=True)
    later = Page([Row(3, T0, "{}"), Row(4, T0, "{}")], [], 2, 4, False, T0, 2)
    second, done = first.after(later, stamped=True)
    assert done
    assert not second.stable  # stamped after the listing began: its pages may have shifted


def test_a_listing_without_totals_over_several_pages_is_blind() -> None:
    first, _ = Listing().after(listed([1, 2], None, next_link=None), stamped=False)
    second, done = first.after(listed([3], None, next_link=None), stamped=False)
    assert done
    assert second.blind  # trusted only once a second pass serves the same ids
    one, done = Listing().after(listed([1], None, next_link=None), stamped=False)
    assert done
    assert not one.blind  # one page is one answer


def test_a_server_ignoring_page_ends_a_listing_at_the_repeated_page() -> None:
    first, _ = Listing().after(listed([1, 2], None, next_link=None), stamped=False)
    _, done = first.after(listed([1, 2], None, next_link=None), stamped=False)
    assert done


# --- reports ------------------------------------------------------------------------------


def test_report_periods_are_calendar_months_or_years_back_from_today() -> None:
    today = date(2026, 12, 7)
    months = periods("month", 3, today)
    assert months == [
        (date(2026, 10, 1), date(2026, 10, 31)),
        (date(2026, 11, 1), date(2026, 11, 30)),
        (date(2026, 12, 1), date(2026, 12, 31)),
    ]
    assert periods("year", 24, today) == [
        (date(2025, 1, 1), date(2025, 12, 31)),
        (date(2026, 1, 1), date(2026, 12, 31)),
    ]
    assert [is_open(p, 2, today) for p in months] == [False, True, True]
    assert period_key(months[0]) == "2026-10-01..2026-10-31"


def test_report_rows_are_keyed_by_their_natural_key_and_repeats_kept_apart() -> None:
    rows, rejected = natural_keys(
        [
            {"date": "2026-11-02", "user_id": 7, "hours": 8},
            {"date": "2026-11-02", "user_id": 7, "hours": 1},
            {"date": "2026-11-03", "user_id": 7},
            "not a row",
        ],
        ("date", "user_id"),
    )
    assert [r.id for r in rows] == ["2026-11-02|7", "2026-11-02|7#2", "2026-11-03|7"]
    assert len(rejected) == 1


# --- completeness -------------------------------------------------------------------------


def test_windows_where_the_counts_differ_are_found_between_cut_points() -> None:
    top = T0
    points = [top, top - timedelta(days=10), top - timedelta(days=20), None]
    # Above each point: the source lacks nothing near the top, holds 2 more between 10 and 20
    # days back, and the warehouse holds one extra at the start.
    source = [5, 50, 102, 150]
    stored = [5, 50, 100, 149]
    windows = completeness.differing(points, source, stored)
    assert [(w.lower, w.upper, w.difference) for w in windows] == [
        (top - timedelta(days=20), top - timedelta(days=10), 2),
        (None, top - timedelta(days=20), -1),
    ]


def test_a_window_cut_in_two_keeps_only_the_halves_that_differ() -> None:
    window = completeness.Window(T0 - timedelta(days=2), T0, 600, 598, 10, 10)
    middle = T0 - timedelta(days=1)
    parts = completeness.split(
        window, source_above_middle=310, stored_above_middle=310, middle=middle
    )
    assert [(p.lower, p.upper, p.source, p.stored) for p in parts] == [
        (T0 - timedelta(days=2), middle, 300, 298)
    ]
    assert parts[0].source_top == 310
    assert not window.few
    assert parts[0].few is False
    assert completeness.Window(None, T0, 150, 149).few


def test_the_catalog_orders_parents_before_children_and_a_new_entry_joins() -> None:
    base = Catalog(
        "Toy",
        (
            Stream("projects", "/projects", "sorted", columns=(Column("id", "column"),)),
            Stream(
                "project_tasks",
                "/projects/{project_id}/tasks",
                "unsorted",
                parent=Parent("projects", "project_id", "project_id"),
            ),
        ),
    )
    assert base.levels(["project_tasks", "projects"]) == (("projects",), ("project_tasks",))
    grown = base.with_stream(Stream("todos", "/todos", "listing", deletions="sync"))
    assert grown.names == ("projects", "project_tasks", "todos")
    assert grown.fingerprint != base.fingerprint
    with pytest.raises(ValueError, match="unknown stream"):
        Catalog("Toy", (Stream("x", "/x/{a}/y", "unsorted", parent=Parent("a", "a", "a")),))
