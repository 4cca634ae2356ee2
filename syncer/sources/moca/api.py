"""MOCA (proximity marketing, REST API v2): the streams, declared, and how a page is read.

Documented (docs/vendors/moca.md): SSL only, Bearer token, JSON, ``offset``/``limit`` lists, times
as int64 milliseconds UTC, ``X-Server-Timestamp``. Inferred (same page, configurable where a real
account may differ): the base URL, the paths, the list envelope (a bare array or ``{offset, limit,
total, items}``, both accepted), the error body, the analytics shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from syncer.errors import MalformedResponseError
from syncer.extract.records import NUL_REASON, Rejected, has_nul
from syncer.http.client import Credential, Response

Extract = Callable[[dict[str, Any], str | None], Any]


@dataclass(frozen=True)
class MocaStream:
    """A configuration stream: where it is listed, its id field, and its extra columns."""

    name: str
    path: str  # under the base URL; "{parent}" is the parent's id for child streams
    id_field: str
    parent: str | None = None  # the stream whose ids the path needs
    # Extra columns of the warehouse table: name -> (SQL type, value from (record, parent id)).
    columns: Mapping[str, tuple[str, Extract]] = field(default_factory=dict)
    redact: tuple[str, ...] = ()  # fields never stored (secrets the API serves)

    def item_path(self, record_id: str) -> str:
        return f"/{self.name}/{record_id}"


def _config(key: str) -> Extract:
    return lambda record, parent: _dig(record, "config", key)


def _field(key: str) -> Extract:
    return lambda record, parent: record.get(key)


def _parent(record: dict[str, Any], parent: str | None) -> Any:
    return parent


def kind_of(obj: Any) -> str | None:
    """The type of a polymorphic trigger or action: ``@type``, or ``type`` in older objects."""
    if not isinstance(obj, dict):
        return None
    kind = obj.get("@type", obj.get("type"))
    return kind if isinstance(kind, str) else None


def _kind(key: str) -> Extract:
    return lambda record, parent: kind_of(record.get(key))


def _query_json(record: dict[str, Any], parent: str | None) -> str | None:
    """``segment.config.query`` parsed (it arrives as JSON text); None if it is not JSON."""
    text = _dig(record, "config", "query")
    if not isinstance(text, str | dict | list):
        return None
    try:
        parsed = orjson.dumps(orjson.loads(text) if isinstance(text, str) else text).decode()
    except orjson.JSONDecodeError:
        return None
    return None if has_nul(parsed) else parsed


def _dig(record: dict[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


NAME = ("text", _config("name"))

STREAMS: dict[str, MocaStream] = {
    s.name: s
    for s in (
        MocaStream("apps", "/apps", "appId", columns={"name": NAME}, redact=("appSecret",)),
        MocaStream(
            "beacons",
            "/beacons",
            "beaconId",
            columns={
                "name": NAME,
                "zone_id": ("text", _field("zoneId")),
                "place_id": ("text", _field("placeId")),
            },
        ),
        MocaStream("places", "/places", "placeId", columns={"name": NAME}),
        MocaStream(
            "zones",
            "/zones",
            "zoneId",
            columns={"name": NAME, "place_id": ("text", _field("placeId"))},
        ),
        MocaStream(
            "geofences",
            "/geofences",
            "geofenceId",
            columns={"name": NAME, "place_id": ("text", _field("placeId"))},
        ),
        MocaStream(
            "segments",
            "/apps/{parent}/segments",
            "segmentId",
            parent="apps",
            columns={
                "name": NAME,
                "app_id": ("text", _parent),
                "query_text": ("text", _config("query")),
                "query": ("jsonb", _query_json),
            },
        ),
        MocaStream(
            "campaigns",
            "/apps/{parent}/campaigns",
            "campaignId",
            parent="apps",
            columns={
                "name": NAME,
                "app_id": ("text", _parent),
                "status": ("text", _field("status")),
            },
        ),
        MocaStream(
            "experiences",
            "/campaigns/{parent}/experiences",
            "experienceId",
            parent="campaigns",
            columns={
                "name": NAME,
                "campaign_id": ("text", _parent),
                "trigger_type": ("text", _kind("trigger")),
                "action_type": ("text", _kind("action")),
            },
        ),
        MocaStream(
            "notifications",
            "/campaigns/{parent}/notifications",
            "notificationId",
            parent="campaigns",
            columns={
                "name": NAME,
                "campaign_id": ("text", _parent),
                "trigger_type": ("text", _kind("trigger")),
                "action_type": ("text", _kind("action")),
            },
        ),
    )
}

ANALYTICS_PATH = "/apps/{parent}/analytics/{metric}"
METRIC_NAMES = {
    "new_users": "newUsers",
    "returning_users": "returningUsers",
    "active_users": "activeUsers",
    "sessions": "sessions",
    "visitors": "visitors",
    "geolocations": "geolocations",
}
# Streams in the order their parents need: a level runs after the one before it.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("apps", "beacons", "places", "zones", "geofences"),
    ("segments", "campaigns", "analytics"),
    ("experiences", "notifications"),
)


def parent_of(stream: str) -> str | None:
    """The stream whose records a stream is listed under (analytics: per app)."""
    if stream == "analytics":
        return "apps"
    spec = STREAMS.get(stream)
    return spec.parent if spec else None


def credential(token: str, token_env: str) -> Credential:
    return Credential("MOCA", token_env, {"Authorization": f"Bearer {token}"})


def from_ms(value: Any) -> datetime | None:
    """An int64 millisecond timestamp as an aware datetime; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def server_time(response: Response) -> datetime | None:
    """The server's clock (``X-Server-Timestamp``, int64 ms), the one watermarks use."""
    raw = response.headers.get("X-Server-Timestamp", "")
    return from_ms(int(raw)) if raw.strip().isdigit() else None


@dataclass(frozen=True)
class ListPage:
    items: list[Any]
    total: int | None  # from the envelope; None for a bare array


def parse_list(response: Response) -> ListPage:
    """A list response, in either shape MOCA may use."""
    body = response.json()
    if isinstance(body, list):
        return ListPage(body, None)
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        total = body.get("total")
        return ListPage(body["items"], total if isinstance(total, int) else None)
    raise MalformedResponseError(
        f"{response.url} answered with neither a JSON array nor an "
        f"{{offset, limit, total, items}} envelope; check base_url and paths"
    )


@dataclass(frozen=True)
class MocaRow:
    id: str
    updated_at: datetime | None
    created_at: datetime | None
    data: str
    extras: tuple[Any, ...]  # in the order of the stream's columns


def split_items(
    stream: MocaStream, items: list[Any], parent: str | None
) -> tuple[list[MocaRow], list[Rejected]]:
    """Rows for the records that can be stored, and the others with the reason why not."""
    rows: list[MocaRow] = []
    rejected: list[Rejected] = []
    for item in items:
        if not isinstance(item, dict):
            rejected.append(
                Rejected(
                    f"not a JSON object but {type(item).__name__}", orjson.dumps(item).decode()
                )
            )
            continue
        record = {k: v for k, v in item.items() if k not in stream.redact}
        key = record.get(stream.id_field)
        if not isinstance(key, str) or not key:
            rejected.append(
                Rejected(f"no string {stream.id_field!r}", orjson.dumps(record).decode())
            )
            continue
        text = orjson.dumps(record).decode()
        if has_nul(text):
            rejected.append(Rejected(f"the record {NUL_REASON}", text))
            continue
        # A text column holds only a string: another shape stays in ``data`` alone.
        extras = tuple(
            value if kind != "text" or isinstance(value, str) else None
            for kind, value in (
                (kind, extract(record, parent)) for kind, extract in stream.columns.values()
            )
        )
        rows.append(
            MocaRow(
                key,
                from_ms(record.get("updatedAt")),
                from_ms(record.get("createdAt")),
                text,
                extras,
            )
        )
    return rows, rejected


@dataclass(frozen=True)
class Bucket:
    app_id: str
    metric: str
    interval: str
    bucket_start: datetime
    key: str  # the geohash for geolocations; "" otherwise
    value: float | None
    data: str


@dataclass(frozen=True)
class RangeAggregate:
    """One value over the whole requested range (a point without ``t``), e.g. a geolocation."""

    app_id: str
    metric: str
    interval: str
    range_start: datetime
    range_end: datetime
    key: str  # the geohash, else "latitude,longitude" (6 decimals); "" for a plain value
    latitude: float | None
    longitude: float | None
    value: float | None
    data: str


@dataclass(frozen=True)
class AnalyticsPage:
    """What one analytics response holds: per-bucket points, range aggregates, and the rest."""

    buckets: list[Bucket]
    aggregates: list[RangeAggregate]
    rejected: list[Rejected]

    @property
    def stored(self) -> int:
        return len(self.buckets) + len(self.aggregates)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _cell(point: dict[str, Any]) -> tuple[str, float | None, float | None] | None:
    """A geolocation's key and position; None if it has neither a geohash nor both coordinates."""
    latitude, longitude = _number(point.get("latitude")), _number(point.get("longitude"))
    geohash = point.get("geohash")
    if isinstance(geohash, str) and geohash:
        return geohash, latitude, longitude
    if latitude is None or longitude is None:
        return None
    return f"{latitude:.6f},{longitude:.6f}", latitude, longitude


def split_analytics(
    body: Any,
    app_id: str,
    metric: str,
    interval: str,
    window: tuple[datetime, datetime],
    url: str,
) -> AnalyticsPage:
    """The points of one analytics response for the range ``window`` requested.

    MOCA's analytics are not documented; two shapes are expected, and both are stored: a
    ``series`` of buckets (``{"t": ms, "value": n}``, or ``{"t", "geohash", "latitude",
    "longitude", "count"}`` for geolocations), and aggregates over the whole requested range
    (the same points without ``t``; for geolocations ``{"latitude", "longitude", "count"}``).
    A response without a ``series`` list, and a point that fits neither shape, is rejected:
    kept with the reason, never failing the stream.
    """
    series = body.get("series") if isinstance(body, dict) else None
    if not isinstance(series, list):
        what = "a JSON object" if isinstance(body, dict) else type(body).__name__
        return AnalyticsPage(
            [],
            [],
            [
                Rejected(
                    f"{url}: {what} without a 'series' list; neither analytics shape (check the "
                    "analytics path, paths.analytics)",
                    _dumps(body),
                )
            ],
        )
    buckets: list[Bucket] = []
    aggregates: list[RangeAggregate] = []
    rejected: list[Rejected] = []
    seen: set[tuple[str, datetime | None]] = set()
    for point in series:
        if not isinstance(point, dict):
            kind = type(point).__name__
            rejected.append(
                Rejected(
                    f"{url}: a series point that is not a JSON object but {kind}", _dumps(point)
                )
            )
            continue
        text = _dumps(point)
        if has_nul(text):
            rejected.append(Rejected(f"{url}: the point {NUL_REASON}", text))
            continue
        value = _number(point.get("value", point.get("count")))
        geo = _cell(point) if metric == "geolocations" else None
        start: datetime | None = None
        reason: str | None = None
        if point.get("t") is not None:  # a bucket
            start = from_ms(point["t"])
            key = geo[0] if geo else str(point.get("geohash") or "")
            reason = None if start else "a bucket whose 't' is not int64 milliseconds"
        else:  # an aggregate over the requested range
            key = geo[0] if geo else ""
            if metric == "geolocations" and geo is None:
                reason = "a geolocation aggregate without a geohash or latitude and longitude"
        if reason is None and (key, start) in seen:
            reason = "a second point for the same bucket and place in one response"
        if reason is not None:
            rejected.append(Rejected(f"{url}: {reason}", text))
            continue
        seen.add((key, start))
        if start is not None:
            buckets.append(Bucket(app_id, metric, interval, start, key, value, text))
        else:
            latitude, longitude = (geo[1], geo[2]) if geo else (None, None)
            aggregates.append(
                RangeAggregate(
                    app_id,
                    metric,
                    interval,
                    window[0],
                    window[1],
                    key,
                    latitude,
                    longitude,
                    value,
                    text,
                )
            )
    return AnalyticsPage(buckets, aggregates, rejected)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
