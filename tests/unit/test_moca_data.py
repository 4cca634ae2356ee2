"""MocaData without a server: determinism, record shapes, relations, mutations and analytics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from syncer.sandbox.moca_analytics import ANALYTICS_METRICS, bucket_end, bucket_start
from syncer.sandbox.moca_data import (
    DEFAULT_COUNTS,
    ID_FIELDS,
    MOCA_STREAMS,
    Conflict,
    InvalidBody,
    MocaData,
)

NOW_S = 1_750_000_000.0  # 2025-06-15T15:06:40Z
NOW_MS = int(NOW_S * 1000)
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
ID = re.compile(r"[A-Za-z0-9_-]{22}")
SMALL = {
    "apps": 3,
    "beacons": 60,
    "places": 8,
    "zones": 15,
    "geofences": 10,
    "segments": 6,
    "campaigns": 10,
    "experiences": 25,
    "notifications": 10,
}


def small(seed: int = 1, now: Callable[[], float] = lambda: NOW_S) -> MocaData:
    return MocaData(seed=seed, counts=SMALL, now=now)


@pytest.fixture(scope="module")
def data() -> MocaData:
    """The default data set at the fixed clock (read only)."""
    return MocaData(seed=3, now=lambda: NOW_S)


def by_id(data: MocaData, stream: str) -> dict[str, dict[str, Any]]:
    return {r[ID_FIELDS[stream]]: r for r in data.records(stream)}


def discriminator(obj: dict[str, Any]) -> str:
    return str(obj.get("@type") or obj.get("type"))


# -- the data set ------------------------------------------------------------------------------


def test_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    first, again, other = small(5), small(5), small(6)
    for stream in MOCA_STREAMS:
        assert first.records(stream) == again.records(stream)
    app = first.records("apps")[0]["appId"]
    window = (NOW_MS - 3 * DAY_MS, NOW_MS)
    assert first.analytics(app, "sessions", "hour", *window) == again.analytics(
        app, "sessions", "hour", *window
    )
    assert first.records("beacons") != other.records("beacons")


def test_default_counts_are_a_realistic_fleet(data: MocaData) -> None:
    assert {s: len(data.records(s)) for s in MOCA_STREAMS} == DEFAULT_COUNTS
    assert DEFAULT_COUNTS["beacons"] == 600
    assert DEFAULT_COUNTS["places"] == 60
    assert DEFAULT_COUNTS["zones"] == 150


@pytest.mark.parametrize("stream", MOCA_STREAMS)
def test_ids_are_unique_22_character_url_safe_strings(data: MocaData, stream: str) -> None:
    ids = [r[ID_FIELDS[stream]] for r in data.records(stream)]
    assert all(ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("stream", MOCA_STREAMS)
def test_times_are_int_milliseconds_of_the_past_two_years(data: MocaData, stream: str) -> None:
    for record in data.records(stream):
        created, updated = record["createdAt"], record["updatedAt"]
        assert type(created) is int
        assert type(updated) is int
        assert NOW_MS - 731 * DAY_MS <= created <= updated <= NOW_MS - HOUR_MS


@pytest.mark.parametrize("stream", MOCA_STREAMS)
def test_records_are_in_api_order(data: MocaData, stream: str) -> None:
    keys = [(r["createdAt"], r[ID_FIELDS[stream]]) for r in data.records(stream)]
    assert keys == sorted(keys)


def test_some_records_share_an_updated_at(data: MocaData) -> None:
    stamps = [b["updatedAt"] for b in data.records("beacons")]
    assert len(set(stamps)) < len(stamps)


def test_hierarchy_is_consistent(data: MocaData) -> None:
    places, zones = by_id(data, "places"), by_id(data, "zones")
    beacons, apps = by_id(data, "beacons"), by_id(data, "apps")
    campaigns = by_id(data, "campaigns")
    for zone_id, zone in zones.items():
        assert zone_id in places[zone["placeId"]]["zones"]
        assert zone["createdAt"] >= places[zone["placeId"]]["createdAt"]
        assert all(beacons[b]["zoneId"] == zone_id for b in zone["beacons"])
    assert sum(len(p["zones"]) for p in places.values()) == len(zones)
    for beacon in beacons.values():
        if beacon["zoneId"] is None:
            assert beacon["placeId"] is None
        else:
            assert beacon["placeId"] == zones[beacon["zoneId"]]["placeId"]
            assert beacon["createdAt"] >= zones[beacon["zoneId"]]["createdAt"]
    assert any(b["zoneId"] is None for b in beacons.values())
    for stream in ("segments", "campaigns"):
        assert all(r["appId"] in apps for r in data.records(stream))
    for stream in ("experiences", "notifications"):
        for record in data.records(stream):
            assert record["createdAt"] >= campaigns[record["campaignId"]]["createdAt"]
    linked = [g for g in data.records("geofences") if g["placeId"]]
    assert linked
    assert all(places[g["placeId"]]["geoFence"]["radius"] == g["radius"] for g in linked)


def test_beacons_are_unique_by_uuid_major_minor(data: MocaData) -> None:
    beacons = data.records("beacons")
    triples = {(b["uuid"], b["major"], b["minor"]) for b in beacons}
    assert len(triples) == len(beacons)
    assert all(0 <= b["major"] <= 65535 and 0 <= b["minor"] <= 65535 for b in beacons)
    assert len({b["uuid"] for b in beacons}) == 3  # two vendor defaults and the account's own


def test_triggers_and_actions_are_polymorphic_with_both_discriminators(data: MocaData) -> None:
    experiences = data.records("experiences")
    triggers = {discriminator(e["trigger"]) for e in experiences}
    actions = {discriminator(e["action"]) for e in experiences}
    assert {"EnterPlaceTrigger", "EnterZoneTrigger", "CompositeTrigger"} <= triggers
    assert {"SendLocalMessageAction", "OpenUrlAction", "TagAction"} <= actions
    spelled = {"@type" if "@type" in e["trigger"] else "type" for e in experiences}
    assert spelled == {"@type", "type"}
    assert any("delayMs" in e["trigger"] for e in experiences)  # dwell
    composites = [e["trigger"] for e in experiences if "list" in e["trigger"]]
    assert all(len(c["list"]) == 2 for c in composites)


def test_segment_queries_are_json_text(data: MocaData) -> None:
    queries = [s["config"]["query"] for s in data.records("segments")]
    assert all(isinstance(q, str) for q in queries)
    parsed = [json.loads(q) for q in queries]
    assert all("$all" in p for p in parsed)
    assert any("\n" in q for q in queries)  # some were stored pretty-printed
    assert any("$any" in q for q in queries)


def test_optional_campaign_fields_are_left_out_when_unset(data: MocaData) -> None:
    configs = [c["config"] for c in data.records("campaigns")]
    for key in ("groupId", "displayCap", "displayWaitMs", "recurrence"):
        assert any(key in c for c in configs)
        assert any(key not in c for c in configs)
    assert all("endAt" in c for c in configs if c["type"] == "Proximity")
    for campaign in data.records("campaigns"):
        assert campaign["createdAt"] <= campaign["statusAt"] <= campaign["updatedAt"]


def test_values_look_like_real_data(data: MocaData) -> None:
    text = repr([r for s in MOCA_STREAMS for r in data.records(s)])
    assert all(ch in text for ch in "äöüßñ")
    assert any(ord(ch) > 0xFFFF for ch in text)  # emoji


# -- mutations ---------------------------------------------------------------------------------


def test_update_changes_a_config_text_and_stamps_now() -> None:
    clock = [NOW_S]
    data = small(now=lambda: clock[0])
    before = by_id(data, "beacons")
    clock[0] = NOW_S + 0.25
    changed = data.update("beacons", 3)
    after = by_id(data, "beacons")
    assert len(changed) == 3
    for rid in changed:
        assert after[rid]["config"]["description"] != before[rid]["config"]["description"]
        assert after[rid]["updatedAt"] == NOW_MS + 250
    assert all(after[i] == before[i] for i in before if i not in changed)


def test_update_of_a_zone_keeps_its_name_recognisable() -> None:
    data = small()
    zone_id = data.update("zones", 1)[0]
    data.update("zones", len(SMALL) * 10)
    assert re.fullmatch(r"\D+ \(Rev\. \d+\)", by_id(data, "zones")[zone_id]["config"]["name"])


def test_create_adds_records_now_and_links_them_to_their_parent() -> None:
    data = small()
    created = data.create("zones", 2)
    zones, places = by_id(data, "zones"), by_id(data, "places")
    assert len(zones) == SMALL["zones"] + 2
    for zone_id in created:
        zone = zones[zone_id]
        assert zone["createdAt"] == zone["updatedAt"] == NOW_MS
        assert zone_id in places[zone["placeId"]]["zones"]
        assert places[zone["placeId"]]["updatedAt"] == NOW_MS
    assert data.records("zones")[-2:] == [zones[i] for i in sorted(created)]


def test_create_without_a_parent_is_refused() -> None:
    data = MocaData(counts={**SMALL, "campaigns": 0, "experiences": 0, "notifications": 0})
    with pytest.raises(ValueError, match="no campaigns"):
        data.create("experiences", 1)


def test_delete_cascades_to_children_and_detaches_beacons() -> None:
    data = small()
    app_id = data.delete("apps", 1)[0]
    assert app_id not in by_id(data, "apps")
    assert all(c["appId"] != app_id for c in data.records("campaigns"))
    assert all(s["appId"] != app_id for s in data.records("segments"))
    campaign_ids = set(by_id(data, "campaigns"))
    assert all(e["campaignId"] in campaign_ids for e in data.records("experiences"))
    zone = next(z for z in data.records("zones") if z["beacons"])
    data.remove("zones", zone["zoneId"])
    for beacon_id in zone["beacons"]:
        beacon = by_id(data, "beacons")[beacon_id]
        assert beacon["zoneId"] is beacon["placeId"] is None
        assert beacon["updatedAt"] == NOW_MS
    assert zone["zoneId"] not in by_id(data, "places")[zone["placeId"]]["zones"]


def test_unknown_streams_and_negative_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown MOCA streams"):
        MocaData(counts={"users": 3})
    with pytest.raises(KeyError):
        small().records("users")
    with pytest.raises(ValueError, match="n must be"):
        small().update("apps", -1)


# -- changes through the API -------------------------------------------------------------------

BEACON: dict[str, Any] = {"uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e", "major": 7, "minor": 9}


def test_add_beacon_normalises_uuid_and_links_its_zone() -> None:
    data = small()
    zone = data.records("zones")[0]
    beacon = data.add("beacons", {**BEACON, "zoneId": zone["zoneId"], "config": {"name": "Tür"}})
    assert beacon["uuid"] == BEACON["uuid"].upper()
    assert beacon["placeId"] == zone["placeId"]
    assert beacon["beaconId"] in by_id(data, "zones")[zone["zoneId"]]["beacons"]
    with pytest.raises(Conflict, match="minor 9"):
        data.add("beacons", BEACON)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"major": 1, "minor": 1}, "uuid is required"),
        ({**BEACON, "uuid": "not-a-uuid"}, "uuid must look like"),
        ({**BEACON, "major": 70000}, "major must be between"),
        ({**BEACON, "minor": True}, "minor must be an integer"),
        ({**BEACON, "zoneId": "nope"}, "not a zone"),
        ({**BEACON, "colour": "red"}, "colour is not a field"),
        ([BEACON], "must be a JSON object"),
    ],
)
def test_add_beacon_refuses_bad_bodies(body: Any, message: str) -> None:
    with pytest.raises(InvalidBody, match=message):
        small().add("beacons", body)


def test_replace_keeps_ids_and_created_at_and_allows_the_own_triple() -> None:
    clock = [NOW_S]
    data = small(now=lambda: clock[0])
    old = data.records("beacons")[0]
    clock[0] += 1
    body = {k: old[k] for k in ("uuid", "major", "minor", "beaconId", "createdAt")}
    new = data.replace("beacons", old["beaconId"], {**body, "zoneId": None})
    assert (new["beaconId"], new["createdAt"]) == (old["beaconId"], old["createdAt"])
    assert new["updatedAt"] == NOW_MS + 1000
    assert new["zoneId"] is None
    if old["zoneId"]:
        assert old["beaconId"] not in by_id(data, "zones")[old["zoneId"]]["beacons"]


def test_add_app_needs_a_name_and_gets_server_fields() -> None:
    data = small()
    with pytest.raises(InvalidBody, match=r"config\.name is required"):
        data.add("apps", {"config": {"name": " "}})
    with pytest.raises(InvalidBody, match="production must be true or false"):
        data.add("apps", {"config": {"name": "x", "production": "yes"}})
    app = data.add("apps", {"appId": "ignored", "config": {"name": "Neue App 🚀"}})
    assert ID.fullmatch(app["appId"])
    assert app["accountId"] == data.account_id
    assert data.analytics(app["appId"], "new_users", "day", 0, NOW_MS + 1)["series"] != []


def test_start_campaign_runs_it_unless_it_has_ended() -> None:
    data = small()
    campaigns = data.records("campaigns")
    ended = next(c for c in campaigns if c["config"].get("endAt", NOW_MS + 1) <= NOW_MS)
    with pytest.raises(Conflict, match="endAt"):
        data.start_campaign(ended["campaignId"])
    live = next(
        c
        for c in campaigns
        if c["config"]["startAt"] <= NOW_MS and c["config"].get("endAt", NOW_MS + 1) > NOW_MS
    )
    stored = data.get("campaigns", live["campaignId"])
    assert stored is not None
    stored["status"] = "Draft"  # as if it had been stopped
    started = data.start_campaign(live["campaignId"])
    assert (started["status"], started["statusAt"], started["updatedAt"]) == (
        "Running",
        NOW_MS,
        NOW_MS,
    )


# -- analytics ---------------------------------------------------------------------------------


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


def test_bucket_boundaries_are_utc_hours_days_and_months() -> None:
    at = ms(2024, 2, 29, 13, 45)
    assert bucket_start("hour", at) == ms(2024, 2, 29, 13)
    assert bucket_start("day", at) == ms(2024, 2, 29)
    assert bucket_start("month", at) == ms(2024, 2, 1)
    assert bucket_end("month", ms(2024, 2, 1)) == ms(2024, 3, 1)
    assert bucket_end("month", ms(2024, 12, 1)) == ms(2025, 1, 1)


def test_analytics_answer_has_the_proposed_shape(data: MocaData) -> None:
    app = data.records("apps")[0]["appId"]
    start = ms(2025, 6, 8)
    answer = data.analytics(app, "new_users", "day", start, NOW_MS)
    assert {k: answer[k] for k in ("appId", "metric", "interval", "from", "to")} == {
        "appId": app,
        "metric": "newUsers",
        "interval": "day",
        "from": start,
        "to": NOW_MS,
    }
    assert [p["t"] for p in answer["series"]] == [start + d * DAY_MS for d in range(8)]
    assert all(type(p["value"]) is int and p["value"] >= 0 for p in answer["series"])
    assert answer["total"] == sum(p["value"] for p in answer["series"])


def test_active_users_are_new_plus_returning_and_totals_count_distinct(data: MocaData) -> None:
    app = data.records("apps")[1]["appId"]
    window = (ms(2025, 5, 1), ms(2025, 6, 1))
    new, returning, active = (
        data.analytics(app, metric, "day", *window)
        for metric in ("new_users", "returning_users", "active_users")
    )
    for n, r, a in zip(new["series"], returning["series"], active["series"], strict=True):
        assert a["value"] == n["value"] + r["value"]
    assert active["total"] == new["total"] + returning["total"]
    assert active["total"] < sum(p["value"] for p in active["series"])


def test_series_stop_at_now_and_start_when_the_app_was_created(data: MocaData) -> None:
    app = data.records("apps")[0]
    answer = data.analytics(app["appId"], "sessions", "hour", 0, NOW_MS + 30 * DAY_MS)
    times = [p["t"] for p in answer["series"]]
    assert times[0] == bucket_start("hour", app["createdAt"])
    assert times[-1] == bucket_start("hour", NOW_MS)
    assert times == list(range(times[0], times[-1] + 1, HOUR_MS))


def test_the_current_bucket_fills_up_as_time_passes() -> None:
    clock = [NOW_S]
    data = small(now=lambda: clock[0])
    app = data.records("apps")[0]["appId"]
    today = ms(2025, 6, 15)
    before = data.analytics(app, "sessions", "day", today, today + DAY_MS)["series"]
    clock[0] += 6 * 3600
    after = data.analytics(app, "sessions", "day", today, today + DAY_MS)["series"]
    assert after[0]["value"] > before[0]["value"] > 0


def test_restate_raises_the_last_days_only() -> None:
    data = small()
    app = data.records("apps")[0]["appId"]
    window = (ms(2025, 6, 1), NOW_MS)
    before = data.analytics(app, "new_users", "day", *window)["series"]
    days = data.restate(app, "new_users", 2)
    after = data.analytics(app, "new_users", "day", *window)["series"]
    assert days == [ms(2025, 6, 14), ms(2025, 6, 15)]
    assert [p["t"] for p in after] == [p["t"] for p in before]
    for old, new in zip(before, after, strict=True):
        assert (new["value"] > old["value"]) == (old["t"] in days)
        assert new["value"] >= old["value"]
    hours = data.analytics(app, "new_users", "hour", ms(2025, 6, 13, 22), ms(2025, 6, 14, 2))
    assert len(hours["series"]) == 4


def test_restating_active_users_revises_returning_users_and_not_new_users() -> None:
    data = small()
    app = data.records("apps")[0]["appId"]
    window = (ms(2025, 6, 15), NOW_MS)
    before = {m: data.analytics(app, m, "day", *window)["total"] for m in ANALYTICS_METRICS}
    data.restate(app, "activeUsers", 1)
    after = {m: data.analytics(app, m, "day", *window)["total"] for m in ANALYTICS_METRICS}
    changed = {m for m in ANALYTICS_METRICS if after[m] != before[m]}
    assert changed == {"active_users", "returning_users"}


def test_geolocations_are_geohash_cells_per_bucket(data: MocaData) -> None:
    app = data.records("apps")[2]["appId"]
    answer = data.analytics(app, "geolocations", "day", ms(2025, 6, 10), ms(2025, 6, 12))
    cells = answer["series"]
    assert cells
    assert {c["t"] for c in cells} == {ms(2025, 6, 10), ms(2025, 6, 11)}
    for cell in cells:
        assert set(cell) == {"t", "geohash", "latitude", "longitude", "count"}
        assert re.fullmatch(r"[0-9b-hjkmnp-z]{6}", cell["geohash"])
        assert cell["count"] > 0
    assert answer["total"] == sum(c["count"] for c in cells)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("nope", "sessions", "day", 0, 1), KeyError),
        (("APP", "downloads", "day", 0, 1), ValueError),
        (("APP", "sessions", "week", 0, 1), ValueError),
        (("APP", "sessions", "day", 5, 5), ValueError),
    ],
)
def test_analytics_refuse_unknown_apps_metrics_intervals_and_empty_windows(
    data: MocaData, args: tuple[Any, ...], error: type[Exception]
) -> None:
    app = data.records("apps")[0]["appId"]
    with pytest.raises(error):
        data.analytics(*(app if a == "APP" else a for a in args))
