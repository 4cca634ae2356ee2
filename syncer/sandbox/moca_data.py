"""Deterministic MOCA data: the nine configuration streams of one account, in memory, mutable.

`MocaData` keeps the records, generates them in parent-before-child order, applies the changes
tests and API clients make (with cascades, detaching and the API's 400/409 checks on request
bodies) and answers analytics. How a record looks is `moca_records`; how analytics are computed
is `moca_analytics`. The same seed, counts, clock and sequence of calls give the same data.
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from syncer.sandbox.moca_analytics import Analytics
from syncer.sandbox.moca_records import Record, RecordBuilder, new_id
from syncer.sandbox.moca_samples import EDITS, PROVIDERS

MOCA_STREAMS: tuple[str, ...] = (
    "apps",
    "beacons",
    "places",
    "zones",
    "geofences",
    "segments",
    "campaigns",
    "experiences",
    "notifications",
)

ID_FIELDS: dict[str, str] = {
    "apps": "appId",
    "beacons": "beaconId",
    "places": "placeId",
    "zones": "zoneId",
    "geofences": "geofenceId",
    "segments": "segmentId",
    "campaigns": "campaignId",
    "experiences": "experienceId",
    "notifications": "notificationId",
}

DEFAULT_COUNTS: dict[str, int] = {
    "apps": 5,
    "beacons": 600,
    "places": 60,
    "zones": 150,
    "geofences": 80,
    "segments": 30,
    "campaigns": 40,
    "experiences": 120,
    "notifications": 50,
}

# Generation order: a stream only points at streams generated before it.
_ORDER = (
    "apps",
    "places",
    "zones",
    "beacons",
    "geofences",
    "segments",
    "campaigns",
    "experiences",
    "notifications",
)
# Deleting a record deletes these children; beacons and geofences are detached instead.
_CASCADE = {
    "apps": ("segments", "campaigns"),
    "campaigns": ("experiences", "notifications"),
    "places": ("zones",),
}
# The key inside `config` that `update` rewrites (default: "description").
_CHANGED_FIELD = {"zones": "name", "geofences": "name", "notifications": "name"}

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_HISTORY_MS = 730 * _DAY_MS
_MIN_AGE_MS = _HOUR_MS
_UUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


class InvalidBody(ValueError):
    """A request body the API would refuse with 400; the message names the field."""


class Conflict(Exception):
    """A change the API would refuse with 409, e.g. a second beacon with one uuid/major/minor."""


# -- request bodies ------------------------------------------------------------------------------

_ANY: tuple[type, ...] = (object,)
_JSON_TYPE = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "an array",
}
_APP_CONFIG = {
    "name": (str,),
    "description": (str,),
    "appUrl": (str,),
    "version": (str,),
    "category": (str,),
    "iconUrl": (str,),
    "approxAppSize": (str,),
    "production": (bool,),
}
_APP_BODY = {
    "config": (dict,),
    "targets": (list,),
    **dict.fromkeys(("appId", "appSecret", "accountId", "createdAt", "updatedAt"), _ANY),
}
_BEACON_BODY = {
    "config": (dict,),
    "uuid": (str,),
    "major": (int,),
    "minor": (int,),
    "zoneId": (str,),
    "code": (str,),
    "floor": (int,),
    "provider": (str,),
    "location": (dict,),
    "settings": (dict,),
    **dict.fromkeys(("beaconId", "accountId", "placeId", "createdAt", "updatedAt"), _ANY),
}
_BEACON_CONFIG = {"name": (str,), "description": (str,)}
_LOCATION = dict.fromkeys(("latitude", "longitude", "altitude", "accuracy"), (int, float))


def _fields(
    value: Any, where: str, schema: Mapping[str, tuple[type, ...]], required: tuple[str, ...] = ()
) -> Record:
    """`value` as a checked JSON object: known keys of the right types (null allowed unless
    required); fields typed `_ANY` are read-only and accepted as they come."""
    if not isinstance(value, dict):
        raise InvalidBody(f"{where} must be a JSON object")
    for key, item in value.items():
        kinds = schema.get(key)
        if kinds is None:
            raise InvalidBody(f"{where}.{key} is not a field here; known: {', '.join(schema)}")
        wrong_bool = isinstance(item, bool) and bool not in kinds
        if kinds is not _ANY and item is not None and (wrong_bool or not isinstance(item, kinds)):
            expected = " or ".join(_JSON_TYPE[kind] for kind in kinds)
            raise InvalidBody(f"{where}.{key} must be {expected}, got {json.dumps(item)[:40]}")
    for key in required:
        item = value.get(key)
        if item is None or (isinstance(item, str) and not item.strip()):
            raise InvalidBody(f"{where}.{key} is required")
    return dict(value)


class MocaData:
    """The MOCA account the sandbox serves: records per stream and analytics per app.

    `counts` overrides DEFAULT_COUNTS per stream (streams not named keep their default); `now`
    is the clock, in seconds, that stamps changes and ends the analytics.
    """

    def __init__(
        self,
        seed: int = 1,
        counts: Mapping[str, int] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        unknown = set(counts or {}) - set(MOCA_STREAMS)
        if unknown:
            raise ValueError(f"unknown MOCA streams {sorted(unknown)}; use {list(MOCA_STREAMS)}")
        self.seed = seed
        self._now = now
        self._rng = random.Random(seed)
        self.account_id = new_id(self._rng)
        self._rows: dict[str, dict[str, Record]] = {stream: {} for stream in MOCA_STREAMS}
        self._triples: set[tuple[str, int, int]] = set()
        self._builder = RecordBuilder(self._rng, self._rows, self.account_id, self._triples)
        self._revision = 0
        self._analytics = Analytics(seed, self._rows["apps"], self.now_ms, self._next_revision)
        wanted = {**DEFAULT_COUNTS, **(counts or {})}
        end = self.now_ms() - _MIN_AGE_MS
        for stream in _ORDER:
            self._generate(stream, wanted[stream], end - _HISTORY_MS, end)

    def now_ms(self) -> int:
        """The clock in int64 milliseconds UTC (what the sandbox sends as X-Server-Timestamp)."""
        return int(self._now() * 1000)

    def records(self, stream: str) -> list[Record]:
        """Copies of every current record of `stream` as the API serves them, in API order."""
        return copy.deepcopy(self.live(stream))

    def live(self, stream: str) -> list[Record]:
        """The stored records of `stream` by createdAt, then id: the dicts themselves, to read."""
        key = ID_FIELDS.get(stream, "")
        return sorted(self._stream(stream).values(), key=lambda row: (row["createdAt"], row[key]))

    def get(self, stream: str, rid: str) -> Record | None:
        """The stored record of `stream` with id `rid`, or None."""
        return self._stream(stream).get(rid)

    # -- changes a test makes ----------------------------------------------------------------

    def update(self, stream: str, n: int) -> list[str]:
        """Rewrites one text of up to `n` random records and stamps `updatedAt` = now (ms).

        Returns the ids changed, sorted.
        """
        rows = self._checked(stream, n)
        stamp = self.now_ms()
        changed = self._rng.sample(list(rows.values()), min(n, len(rows)))
        for row in changed:
            revision = self._next_revision()
            field = _CHANGED_FIELD.get(stream, "description")
            base = re.sub(r" \(Rev\. \d+\)$", "", row["config"].get(field) or "")
            text = base if field == "name" else self._rng.choice(EDITS)
            row["config"][field] = f"{text} (Rev. {revision})"
            row["updatedAt"] = stamp
        return sorted(row[ID_FIELDS[stream]] for row in changed)

    def create(self, stream: str, n: int) -> list[str]:
        """Adds `n` records (createdAt = updatedAt = now) under random parents; returns their ids.

        A parent's child list (place.zones, zone.beacons) changes with it, and so does the
        parent's updatedAt. ValueError if a required parent stream is empty.
        """
        self._checked(stream, n)
        stamp = self.now_ms()
        created = []
        for _ in range(n):
            record = self._builder.build(stream, stamp, stamp)
            record["updatedAt"] = stamp
            self._builder.settle(stream, record)
            self._store(stream, record)
            created.append(record[ID_FIELDS[stream]])
        return created

    def delete(self, stream: str, n: int) -> list[str]:
        """Removes up to `n` random records without a trace; returns their ids, sorted.

        Children go too (app -> segments, campaigns; campaign -> experiences, notifications;
        place -> zones); beacons and geofences are detached instead (zoneId/placeId null).
        """
        rows = self._checked(stream, n)
        stamp = self.now_ms()
        gone = self._rng.sample(list(rows), min(n, len(rows)))
        for rid in gone:
            self._drop(stream, rid, stamp)
        return sorted(gone)

    # -- changes a client makes through the API ----------------------------------------------

    def add(self, stream: str, body: Mapping[str, Any]) -> Record:
        """Stores a new app or beacon made from a request body and returns it.

        InvalidBody for a body the API refuses (400); Conflict for a beacon whose uuid, major and
        minor another beacon has (409). Server fields in the body (ids, times) are ignored.
        """
        stamp = self.now_ms()
        rid = new_id(self._rng)
        if stream == "apps":
            record = {
                "appId": rid,
                "appSecret": new_id(self._rng) + new_id(self._rng),
                "accountId": self.account_id,
                **self._app_fields(body),
            }
        elif stream == "beacons":
            record = {
                "beaconId": rid,
                "accountId": self.account_id,
                **self._beacon_fields(body, None),
            }
        else:
            raise ValueError(f"MOCA {stream} are not created through the API")
        record["createdAt"] = record["updatedAt"] = stamp
        self._store(stream, record)
        return record

    def replace(self, stream: str, rid: str, body: Mapping[str, Any]) -> Record:
        """Replaces the editable fields of an app or beacon; KeyError if there is no `rid`.

        Raises as `add` does.
        """
        record = self._existing(stream, rid)
        stamp = self.now_ms()
        if stream == "apps":
            fields, editable = self._app_fields(body), {"config", "targets"}
        elif stream == "beacons":
            fields = self._beacon_fields(body, rid)
            editable = set(fields)
            self._triples.discard((record["uuid"], record["major"], record["minor"]))
            if record["zoneId"]:
                self._link("zones", record["zoneId"], "beacons", rid, stamp, add=False)
        else:
            raise ValueError(f"MOCA {stream} are not replaced through the API")
        kept = {k: v for k, v in record.items() if k not in editable | {"createdAt", "updatedAt"}}
        created = record["createdAt"]
        record.clear()
        record.update({**kept, **fields, "createdAt": created, "updatedAt": stamp})
        if stream == "beacons":
            self._triples.add((record["uuid"], record["major"], record["minor"]))
            if record["zoneId"]:
                self._link("zones", record["zoneId"], "beacons", rid, stamp, add=True)
        return record

    def remove(self, stream: str, rid: str) -> Record:
        """Deletes one record as `delete` does (children too); KeyError if there is no `rid`."""
        self._existing(stream, rid)
        return self._drop(stream, rid, self.now_ms())

    def start_campaign(self, rid: str) -> Record:
        """MOCA's documented "Start Campaign" call: Running, or Scheduled before config.startAt.

        KeyError if there is no such campaign; Conflict if config.endAt has passed.
        """
        campaign = self._existing("campaigns", rid)
        now = self.now_ms()
        config = campaign["config"]
        if config.get("endAt") is not None and config["endAt"] <= now:
            raise Conflict(
                f"campaign {rid} ended at {config['endAt']}; move config.endAt into the future "
                "before starting it"
            )
        status = "Scheduled" if config["startAt"] > now else "Running"
        if campaign["status"] != status:
            campaign.update(status=status, statusAt=now, updatedAt=now)
        return campaign

    # -- analytics ---------------------------------------------------------------------------

    def analytics(
        self,
        app_id: str,
        metric: str,
        interval: str,
        from_ms: int,
        to_ms: int,
        *,
        aggregate: bool = False,
    ) -> Record:
        """The analytics answer (docs/vendors/moca.md) for the buckets overlapping [from_ms, to_ms).

        Buckets start on UTC hour, day or month boundaries; those before the app existed or
        after now are left out, and the current one is still filling. `metric` is a stream name
        ("new_users") or an API name ("newUsers"). KeyError for an unknown app, ValueError for
        an unknown metric or interval or an empty window.

        `aggregate`: geolocations come as one aggregate over the whole range, a series of
        `{latitude, longitude, count}` with no per-bucket `t` (the other expected shape);
        the other metrics are unaffected.
        """
        return self._analytics.answer(app_id, metric, interval, from_ms, to_ms, aggregate)

    def restate(self, app_id: str, metric: str, days: int) -> list[int]:
        """Revises `metric` in the buckets of the last `days` UTC days, today included, as late
        data would: every such hour, day and month bucket grows. Returns each day's start (ms).

        active_users is new_users + returning_users in every bucket, so restating active_users
        revises returning_users, and restating either revises active_users.
        """
        return self._analytics.restate(app_id, metric, days)

    # -- internals ---------------------------------------------------------------------------

    def _stream(self, stream: str) -> dict[str, Record]:
        if stream not in self._rows:
            raise KeyError(f"unknown MOCA stream {stream!r}; use one of {list(MOCA_STREAMS)}")
        return self._rows[stream]

    def _checked(self, stream: str, n: int) -> dict[str, Record]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._stream(stream)

    def _existing(self, stream: str, rid: str) -> Record:
        record = self._stream(stream).get(rid)
        if record is None:
            raise KeyError(f"no MOCA {stream} record with id {rid!r}")
        return record

    def _generate(self, stream: str, n: int, start: int, end: int) -> None:
        rng = self._rng
        # A few bulk edits give many records the very same updatedAt, as imports do.
        bulk = [rng.randint(end - 60 * _DAY_MS, end) for _ in range(3)]
        for _ in range(n):
            record = self._builder.build(stream, start, end)
            created = record["createdAt"]
            later = [stamp for stamp in bulk if stamp >= created]
            roll = rng.random()
            if roll < 0.35:
                record["updatedAt"] = created
            elif roll < 0.45 and later:
                record["updatedAt"] = rng.choice(later)
            else:
                record["updatedAt"] = rng.randint(created, end)
            self._builder.settle(stream, record)
            self._store(stream, record)

    def _store(self, stream: str, record: Record) -> None:
        rid = record[ID_FIELDS[stream]]
        self._rows[stream][rid] = record
        if stream == "zones":
            self._link("places", record["placeId"], "zones", rid, record["createdAt"], add=True)
        elif stream == "beacons":
            self._triples.add((record["uuid"], record["major"], record["minor"]))
            if record["zoneId"]:
                self._link("zones", record["zoneId"], "beacons", rid, record["createdAt"], add=True)

    def _link(self, stream: str, rid: str, field: str, child: str, stamp: int, add: bool) -> None:
        """Adds `child` to (or removes it from) a parent's id list; the parent changes too."""
        parent = self._rows[stream].get(rid)
        if parent is None:
            return
        if add:
            parent[field].append(child)
        elif child in parent[field]:
            parent[field].remove(child)
        parent["updatedAt"] = max(parent["updatedAt"], stamp)

    def _drop(self, stream: str, rid: str, stamp: int) -> Record:
        record = self._rows[stream].pop(rid)
        key = ID_FIELDS[stream]
        for child in _CASCADE.get(stream, ()):
            for row in [r for r in self._rows[child].values() if r[key] == rid]:
                self._drop(child, row[ID_FIELDS[child]], stamp)
        detached = {"zones": "beacons", "places": "geofences"}.get(stream)
        for row in self._rows[detached].values() if detached else ():
            if row[key] == rid:
                row[key] = None
                row["placeId"] = None
                row["updatedAt"] = stamp
        if stream == "zones":
            self._link("places", record["placeId"], "zones", rid, stamp, add=False)
        elif stream == "beacons":
            self._triples.discard((record["uuid"], record["major"], record["minor"]))
            if record["zoneId"]:
                self._link("zones", record["zoneId"], "beacons", rid, stamp, add=False)
        return record

    def _app_fields(self, body: Mapping[str, Any]) -> Record:
        top = _fields(body, "body", _APP_BODY, required=("config",))
        fields: Record = {"config": _fields(top["config"], "config", _APP_CONFIG, ("name",))}
        if top.get("targets") is not None:
            if not all(isinstance(target, dict) for target in top["targets"]):
                raise InvalidBody("targets must be an array of objects")
            fields["targets"] = top["targets"]
        return fields

    def _beacon_fields(self, body: Mapping[str, Any], rid: str | None) -> Record:
        top = _fields(body, "body", _BEACON_BODY, required=("uuid", "major", "minor"))
        config = _fields(top.get("config") or {}, "config", _BEACON_CONFIG)
        uuid = top["uuid"].upper()
        if not _UUID.fullmatch(uuid):
            raise InvalidBody(f"uuid must look like {PROVIDERS[0][1]}, got {top['uuid']!r}")
        for name in ("major", "minor"):
            if not 0 <= top[name] <= 65535:
                raise InvalidBody(f"{name} must be between 0 and 65535, got {top[name]}")
        if top.get("location") is not None:
            _fields(top["location"], "location", _LOCATION)
        zone = None
        if top.get("zoneId") is not None:
            zone = self._rows["zones"].get(top["zoneId"])
            if zone is None:
                raise InvalidBody(f"zoneId {top['zoneId']!r} is not a zone of this account")
        triple = (uuid, top["major"], top["minor"])
        current = self._rows["beacons"].get(rid or "")
        mine = current is not None and (current["uuid"], current["major"], current["minor"])
        if triple in self._triples and triple != mine:
            raise Conflict(
                f"another beacon already has uuid {uuid}, major {top['major']} and minor "
                f"{top['minor']}"
            )
        return {
            "zoneId": zone["zoneId"] if zone else None,
            "placeId": zone["placeId"] if zone else None,
            "config": {"name": config.get("name"), "description": config.get("description", "")},
            "uuid": uuid,
            "major": top["major"],
            "minor": top["minor"],
            "code": top.get("code"),
            "floor": top.get("floor"),
            "provider": top.get("provider"),
            "location": top.get("location"),
            "settings": top.get("settings") or {},
        }

    def _next_revision(self) -> int:
        """The next number in the account's one sequence of text edits and restatements."""
        self._revision += 1
        return self._revision
