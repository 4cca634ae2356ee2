"""How MOCA answers become rows: both analytics shapes, and what fits neither is rejected."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from syncer.extract.records import has_nul, split_records
from syncer.sources.moca import api as moca
from syncer.sources.moco.catalog import CATALOG as MOCO_STREAMS

URL = "https://api.example/v2/apps/A/analytics/geolocations"
WINDOW = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC))
T = 1_793_491_200_000  # 2026-11-01T00:00Z in ms


def split(body: Any, metric: str = "geolocations") -> moca.AnalyticsPage:
    return moca.split_analytics(body, "A", metric, "day", WINDOW, URL)


def test_buckets_with_t_are_buckets() -> None:
    page = split(
        {
            "series": [
                {"t": T, "geohash": "u33dc0", "latitude": 52.5, "longitude": 13.4, "count": 7},
                {"t": T, "geohash": "u33dc1", "latitude": 52.6, "longitude": 13.4, "count": 3},
            ]
        }
    )
    assert not page.aggregates
    assert not page.rejected
    assert [(b.key, b.value) for b in page.buckets] == [("u33dc0", 7.0), ("u33dc1", 3.0)]
    assert page.buckets[0].bucket_start == datetime(2026, 11, 1, tzinfo=UTC)


def test_points_without_t_are_aggregates_over_the_requested_range() -> None:
    page = split(
        {
            "series": [
                {"latitude": 52.520008, "longitude": 13.404954, "count": 120},
                {"latitude": 48.1351, "longitude": 11.582, "count": 40, "t": None},
            ]
        }
    )
    assert not page.buckets
    assert not page.rejected
    assert [(a.key, a.latitude, a.value) for a in page.aggregates] == [
        ("52.520008,13.404954", 52.520008, 120.0),
        ("48.135100,11.582000", 48.1351, 40.0),
    ]
    assert {(a.range_start, a.range_end) for a in page.aggregates} == {WINDOW}
    plain = split({"series": [{"value": 5}]}, "new_users")
    assert [(a.key, a.value) for a in plain.aggregates] == [("", 5.0)]


def test_what_fits_neither_shape_is_rejected_with_its_payload_and_the_rest_kept() -> None:
    page = split(
        {
            "series": [
                {"latitude": 1.0, "longitude": 2.0, "count": 1},
                {"count": 3},  # a place without a position
                {"t": "yesterday", "count": 2},  # a time that is not milliseconds
                "not a point",
                {"latitude": 1.0, "longitude": 2.0, "count": 9},  # the same place twice
                {"latitude": 3.0, "longitude": 4.0, "count": 1, "note": "a\x00b"},
            ]
        }
    )
    assert len(page.aggregates) == 1
    reasons = [r.reason for r in page.rejected]
    assert len(reasons) == 5
    assert all(reason.startswith(URL) for reason in reasons)
    assert "geohash or latitude and longitude" in reasons[0]
    assert "'t'" in reasons[1]
    assert "not a JSON object" in reasons[2]
    assert "second point" in reasons[3]
    assert "NUL" in reasons[4]
    assert orjson.loads(page.rejected[1].record) == {"t": "yesterday", "count": 2}


def test_a_response_without_a_series_is_one_rejected_record() -> None:
    body = {"appId": "A", "metric": "sessions", "data": [1, 2]}
    page = split(body, "sessions")
    assert page.stored == 0
    assert len(page.rejected) == 1
    assert "'series'" in page.rejected[0].reason
    assert orjson.loads(page.rejected[0].record) == body
    assert len(split([1, 2]).rejected) == 1


def test_a_record_with_a_nul_or_an_odd_text_column_never_breaks_the_page() -> None:
    stream = moca.STREAMS["zones"]
    rows, rejected = moca.split_items(
        stream,
        [
            {"zoneId": "z1", "config": {"name": 42}, "placeId": ["p"]},
            {"zoneId": "z2", "config": {"name": "Eingang \x00"}},
        ],
        None,
    )
    assert [r.id for r in rows] == ["z1"]
    assert rows[0].extras == (None, None)  # not strings: left in data only
    assert "NUL" in rejected[0].reason
    rows2, rejected2 = split_records([{"id": 1, "x": "\x00"}, {"id": 2}], MOCO_STREAMS["deals"])
    assert [r.id for r in rows2] == [2]
    assert "NUL" in rejected2[0].reason


def test_only_an_escaped_nul_counts_not_an_escaped_backslash_before_u0000() -> None:
    assert has_nul(orjson.dumps({"a": "x\x00"}).decode())
    assert not has_nul(orjson.dumps({"a": "C:\\u0000"}).decode())
    assert has_nul(orjson.dumps({"a": "\\\x00"}).decode())
