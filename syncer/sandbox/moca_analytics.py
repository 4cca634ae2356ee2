"""MOCA analytics (docs/vendors/moca.md): per-app user, session, visitor and geolocation
metrics in hour, day and month buckets.

Nothing is stored: each bucket is computed from the seed, the app and the bucket's start, so any
window costs nothing. The bucket holding "now" is still filling, and `restate` revises recent
buckets as late data would.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from syncer.sandbox.moca_records import Record
from syncer.sandbox.moca_samples import CITIES

# Stream name (what the extractor calls it) -> metric name in the API path and response.
ANALYTICS_METRICS: dict[str, str] = {
    "new_users": "newUsers",
    "returning_users": "returningUsers",
    "active_users": "activeUsers",
    "sessions": "sessions",
    "visitors": "visitors",
    "geolocations": "geolocations",
}
INTERVALS: tuple[str, ...] = ("hour", "day", "month")

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_GEOHASH = "0123456789bcdefghjkmnpqrstuvwxyz"
# Share of the day's distinct users active in each UTC hour; they sum to 1.9 because people
# come back within a day.
_HOUR_WEIGHTS = (
    0.2,
    0.1,
    0.05,
    0.05,
    0.05,
    0.1,
    0.3,
    0.6,
    0.9,
    1.0,
    1.0,
    1.1,
    1.3,
    1.2,
    1.0,
    1.0,
    1.1,
    1.3,
    1.5,
    1.6,
    1.4,
    1.0,
    0.7,
    0.4,
)
_HOUR_SHARE = tuple(w * 1.9 / sum(_HOUR_WEIGHTS) for w in _HOUR_WEIGHTS)
# Of the users in a range's buckets, the share that are distinct over the whole range.
_DISTINCT = {"hour": 0.45, "day": 0.35, "month": 0.7}
# A month's distinct active users relative to the sum of its daily active users.
_MONTH_DISTINCT = 0.3


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) for `parts`, independent of any random generator."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def _geohash(lat: float, lon: float, precision: int = 6) -> tuple[str, float, float]:
    """The geohash cell of a point and the cell's centre (latitude, longitude)."""
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    chars: list[str] = []
    bits = count = 0
    even = True
    while len(chars) < precision:
        bounds, value = (lon_range, lon) if even else (lat_range, lat)
        mid = (bounds[0] + bounds[1]) / 2
        bits = bits * 2 + (value >= mid)
        bounds[0 if value >= mid else 1] = mid
        even = not even
        count += 1
        if count == 5:
            chars.append(_GEOHASH[bits])
            bits = count = 0
    return "".join(chars), round(sum(lat_range) / 2, 6), round(sum(lon_range) / 2, 6)


def bucket_start(interval: str, at_ms: int) -> int:
    """The start (ms, UTC) of the hour, day or calendar month holding `at_ms`."""
    if interval == "hour":
        return at_ms - at_ms % _HOUR_MS
    if interval == "day":
        return at_ms - at_ms % _DAY_MS
    day = datetime.fromtimestamp(at_ms // 1000, UTC)
    return int(datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()) * 1000


def bucket_end(interval: str, start_ms: int) -> int:
    """The start of the bucket after the one starting at `start_ms`."""
    if interval == "hour":
        return start_ms + _HOUR_MS
    if interval == "day":
        return start_ms + _DAY_MS
    day = datetime.fromtimestamp(start_ms // 1000, UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) * 1000


def _metric(name: str) -> str:
    """The stream name of an analytics metric given by stream name or API name."""
    if name in ANALYTICS_METRICS:
        return name
    for stream, api_name in ANALYTICS_METRICS.items():
        if api_name == name:
            return stream
    raise ValueError(
        f"unknown MOCA analytics metric {name!r}; use one of {list(ANALYTICS_METRICS)}"
    )


def _total(metric: str, interval: str, buckets: list[dict[str, int]], series: list[Record]) -> int:
    """A range total: new users and sessions add up, distinct users do not (MOCA's Console docs)."""
    if metric == "geolocations":
        return sum(int(item["count"]) for item in series)
    values = [bucket[metric] for bucket in buckets]
    if metric in ("new_users", "sessions") or len(values) <= 1:
        return sum(values)
    if metric == "visitors":
        return max(max(values), round(sum(values) * _DISTINCT[interval]))
    new = sum(bucket["new_users"] for bucket in buckets)
    returning = sum(bucket["returning_users"] for bucket in buckets)
    peak = max(bucket["active_users"] for bucket in buckets)
    active = max(peak, new + round(returning * _DISTINCT[interval]))
    return active if metric == "active_users" else active - new


def _aggregated(cells: list[Record]) -> list[Record]:
    """Geolocation buckets summed per place over the range: no `t`, no geohash."""
    counts: dict[tuple[float, float], int] = {}
    for cell in cells:
        place = (cell["latitude"], cell["longitude"])
        counts[place] = counts.get(place, 0) + int(cell["count"])
    return [
        {"latitude": lat, "longitude": lon, "count": count}
        for (lat, lon), count in sorted(counts.items())
    ]


@dataclass(frozen=True)
class _AppModel:
    """How one app's audience behaves; drawn from the seed and the app id, never stored data."""

    created_ms: int
    daily_users: float  # daily active users once the app is established
    new_share: float
    sessions_per_user: float
    visitor_share: float  # share of active users detected at a place
    weekend: float  # weekend activity relative to weekdays
    cells: tuple[tuple[str, float, float, float], ...]  # geohash, latitude, longitude, weight

    @classmethod
    def draw(cls, seed: int, app: Record) -> _AppModel:
        r = random.Random(f"{seed}:{app['appId']}")
        cells: dict[str, tuple[str, float, float, float]] = {}
        for _ in range(r.randint(3, 6)):
            _, lat, lon = r.choice(CITIES)
            cell, c_lat, c_lon = _geohash(
                lat + r.uniform(-0.03, 0.03), lon + r.uniform(-0.03, 0.03)
            )
            cells[cell] = (cell, c_lat, c_lon, r.uniform(0.2, 1.0))
        weight = sum(c[3] for c in cells.values())
        return cls(
            created_ms=app["createdAt"],
            daily_users=r.uniform(150, 6000),
            new_share=r.uniform(0.05, 0.2),
            sessions_per_user=r.uniform(1.3, 3.0),
            visitor_share=r.uniform(0.1, 0.4),
            weekend=r.uniform(0.6, 1.4),
            cells=tuple((c, la, lo, w / weight) for c, la, lo, w in cells.values()),
        )


class Analytics:
    """The analytics of one account's apps, read from `apps` (appId -> app record) as it changes.

    `now_ms` is the clock that ends every series; `next_revision` numbers each restatement (the
    account shares the counter with its text edits).
    """

    def __init__(
        self,
        seed: int,
        apps: Mapping[str, Record],
        now_ms: Callable[[], int],
        next_revision: Callable[[], int],
    ) -> None:
        self.seed = seed
        self._apps = apps
        self._now_ms = now_ms
        self._next_revision = next_revision
        self._models: dict[str, _AppModel] = {}
        # (appId, metric) -> [(first restated ms, revision)]
        self._restatements: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def answer(
        self,
        app_id: str,
        metric: str,
        interval: str,
        from_ms: int,
        to_ms: int,
        aggregate: bool = False,
    ) -> Record:
        """The analytics answer for [from_ms, to_ms); see `MocaData.analytics`."""
        key = _metric(metric)
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}; use one of {list(INTERVALS)}")
        if not 0 <= from_ms < to_ms:
            raise ValueError(f"the window must satisfy 0 <= from < to, got {from_ms}, {to_ms}")
        model = self._model(app_id)
        now = self._now_ms()
        buckets: list[dict[str, int]] = []
        series: list[Record] = []
        start = bucket_start(interval, max(from_ms, model.created_ms))
        while start < to_ms and start <= now:
            end = bucket_end(interval, start)
            values, cells = self._bucket(app_id, model, interval, (start, end), now, key)
            buckets.append(values)
            series += cells if key == "geolocations" else [{"t": start, "value": values[key]}]
            start = end
        if aggregate and key == "geolocations":
            series = _aggregated(series)
        return {
            "appId": app_id,
            "metric": ANALYTICS_METRICS[key],
            "interval": interval,
            "from": from_ms,
            "to": to_ms,
            "total": _total(key, interval, buckets, series),
            "series": series,
        }

    def restate(self, app_id: str, metric: str, days: int) -> list[int]:
        """Revises `metric` in the buckets of the last `days` UTC days; see `MocaData.restate`."""
        key = _metric(metric)
        self._model(app_id)
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        if days == 0:
            return []
        since = bucket_start("day", self._now_ms()) - (days - 1) * _DAY_MS
        target = "returning_users" if key == "active_users" else key
        self._restatements.setdefault((app_id, target), []).append((since, self._next_revision()))
        return [since + day * _DAY_MS for day in range(days)]

    def _model(self, app_id: str) -> _AppModel:
        app = self._apps.get(app_id)
        if app is None:
            raise KeyError(f"no MOCA app with id {app_id!r}")
        if app_id not in self._models:
            self._models[app_id] = _AppModel.draw(self.seed, app)
        return self._models[app_id]

    def _bucket(
        self,
        app_id: str,
        model: _AppModel,
        interval: str,
        span: tuple[int, int],
        now: int,
        metric: str,
    ) -> tuple[dict[str, int], list[Record]]:
        """One bucket's values of every user metric, and its geolocation cells if asked for."""
        start, end = span
        when = datetime.fromtimestamp(start // 1000, UTC)
        size = model.daily_users * min(1.0, 0.25 + (start - model.created_ms) / (160 * _DAY_MS))
        weekday = model.weekend if when.weekday() >= 5 else 1.0
        repeat = 1.0
        if interval == "hour":
            base = max(size, 0.0) * weekday * _HOUR_SHARE[when.hour]
        elif interval == "day":
            base = max(size, 0.0) * weekday
        else:
            base = max(size, 0.0) * (end - start) / _DAY_MS * _MONTH_DISTINCT
            repeat = 1 / _MONTH_DISTINCT  # users come back on several days of a month
        if now < end:
            base *= (now - start) / (end - start)  # the current bucket is still filling

        def noise(name: str) -> float:
            return 0.8 + 0.4 * _unit(self.seed, app_id, interval, start, name)

        active = base * noise("active")
        new = min(0.9 * active, active * model.new_share * repeat * noise("new"))
        visitors = active * model.visitor_share * noise("visitors")
        base_values = {
            "new_users": round(new),
            "returning_users": round(active - new),
            "sessions": round(active * repeat * model.sessions_per_user * noise("sessions")),
            "visitors": round(visitors),
        }
        values = {
            name: value + self._restated(app_id, name, interval, span, value, name)
            for name, value in base_values.items()
        }
        values["active_users"] = values["new_users"] + values["returning_users"]
        cells: list[Record] = []
        if metric == "geolocations":
            reports = visitors * (1.5 + _unit(self.seed, app_id, interval, start, "reports"))
            for cell, lat, lon, weight in model.cells:
                count = round(reports * weight * noise(cell))
                if count:
                    count += self._restated(app_id, "geolocations", interval, span, count, cell)
                    cells.append(
                        {
                            "t": start,
                            "geohash": cell,
                            "latitude": lat,
                            "longitude": lon,
                            "count": count,
                        }
                    )
        return values, cells

    def _restated(
        self, app_id: str, metric: str, interval: str, span: tuple[int, int], value: int, salt: str
    ) -> int:
        """What the restatements covering a bucket have added to `value`."""
        added = 0
        for since, revision in self._restatements.get((app_id, metric), ()):
            if span[1] > since:
                share = _unit(self.seed, app_id, salt, interval, span[0], revision)
                added += 1 + int(share * max(1.0, 0.05 * value))
        return added
