"""The MOCA sandbox over real loopback HTTP: auth, headers, paths, paging, the updatedSince
extension, analytics, writes, mutations, faults and determinism."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from syncer.sandbox.moca import MocaSandbox, MocaSandboxSettings
from syncer.sandbox.moca_data import ID_FIELDS, MOCA_STREAMS, MocaData

TOKEN = "sandbox-moca-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW_S = 1_750_000_000.0  # 2025-06-15T15:06:40Z
NOW_MS = int(NOW_S * 1000)
DAY_MS = 86_400_000
TODAY_MS = NOW_MS - NOW_MS % DAY_MS
# Small enough to build in a few milliseconds per test.
COUNTS = {
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


@dataclass
class Served:
    """A MOCA sandbox listening on loopback, mounted under /moca as the sandbox server does."""

    sandbox: MocaSandbox
    base: str  # ends in /moca/v2

    @property
    def data(self) -> MocaData:
        return self.sandbox.data


@asynccontextmanager
async def serving(sandbox: MocaSandbox) -> AsyncIterator[Served]:
    root = web.Application()
    root.add_subapp("/moca", sandbox.app())
    runner = web.AppRunner(root, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield Served(sandbox, f"http://127.0.0.1:{runner.addresses[0][1]}/moca/v2")
    finally:
        await runner.cleanup()


@pytest.fixture
def clock() -> list[float]:
    """The data's clock in seconds; tests move it by assigning clock[0]."""
    return [NOW_S]


@pytest.fixture
async def moca(clock: list[float]) -> AsyncIterator[Served]:
    data = MocaData(seed=7, counts=COUNTS, now=lambda: clock[0])
    async with serving(MocaSandbox(data)) as served:
        yield served


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def call(
    client: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, Any]:
    """The response and its parsed JSON body (None when the body is not JSON)."""
    async with client.request(method, url, **kwargs) as response:
        text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return response, body


async def get(
    client: aiohttp.ClientSession, url: str, **params: str
) -> tuple[aiohttp.ClientResponse, Any]:
    return await call(client, "GET", url, params=params)


def ids(items: list[dict[str, Any]], stream: str) -> list[str]:
    return [item[ID_FIELDS[stream]] for item in items]


async def walk(client: aiohttp.ClientSession, url: str, limit: int) -> list[dict[str, Any]]:
    """Every item of a list, page by page, stopping at the first short page."""
    items: list[dict[str, Any]] = []
    while True:
        _, page = await get(client, url, offset=str(len(items)), limit=str(limit))
        items += page["items"]
        if len(page["items"]) < limit:
            return items


# -- auth ------------------------------------------------------------------------------------


async def test_missing_token_is_403_with_a_json_error(moca: Served) -> None:
    async with aiohttp.ClientSession() as anonymous:
        response, body = await get(anonymous, f"{moca.base}/apps")
    assert response.status == 403
    assert body["code"] == 403
    assert "Bearer" in body["message"]


@pytest.mark.parametrize(
    "header", ["Bearer wrong", f"Token token={TOKEN}", TOKEN, "Basic c2FuZGJveA==", "Bearer"]
)
async def test_wrong_or_malformed_authorization_is_403(moca: Served, header: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": header}) as session:
        response, body = await get(session, f"{moca.base}/beacons")
    assert (response.status, body["code"]) == (403, 403)


async def test_tokens_come_from_the_settings_and_the_scheme_ignores_case(moca: Served) -> None:
    moca.sandbox.settings = MocaSandboxSettings(tokens=frozenset({"other"}))
    statuses = []
    for header in (f"Bearer {TOKEN}", "bearer other"):
        async with aiohttp.ClientSession(headers={"Authorization": header}) as session:
            statuses.append((await get(session, f"{moca.base}/apps"))[0].status)
    assert statuses == [403, 200]


# -- headers and routes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [("/apps", 200), ("/apps?limit=x", 400), ("/robots", 404), ("/zones/unknown", 404)],
)
async def test_every_response_carries_moca_headers_and_json(
    moca: Served, client: aiohttp.ClientSession, path: str, status: int
) -> None:
    async with client.get(moca.base + path) as response:
        body = await response.json()
    assert response.status == status
    assert response.headers["X-Server-Timestamp"] == str(NOW_MS)
    assert response.headers["X-Api-Version"] == "2"
    assert response.headers["Server"] == "moca-sandbox"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    if status != 200:
        assert body["code"] == status
        assert isinstance(body["message"], str)


async def test_server_timestamp_follows_the_data_clock(
    moca: Served, client: aiohttp.ClientSession, clock: list[float]
) -> None:
    clock[0] = NOW_S + 12.345
    async with aiohttp.ClientSession() as anonymous:
        response, _ = await get(anonymous, f"{moca.base}/apps")
    assert response.headers["X-Server-Timestamp"] == str(NOW_MS + 12_345)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/apps"),
        ("GET", "/campaigns/{campaign}/start"),
        ("DELETE", "/places/{place}"),
        ("PUT", "/zones/{zone}"),
        ("GET", "/v1/apps"),
        ("GET", "/apps/{app}/beacons"),
    ],
)
async def test_unknown_paths_and_unsupported_methods_are_404(
    moca: Served, client: aiohttp.ClientSession, method: str, path: str
) -> None:
    path = path.format(
        campaign=moca.data.records("campaigns")[0]["campaignId"],
        place=moca.data.records("places")[0]["placeId"],
        zone=moca.data.records("zones")[0]["zoneId"],
        app=moca.data.records("apps")[0]["appId"],
    )
    response, body = await call(client, method, moca.base + path)
    assert (response.status, body["code"]) == (404, 404)


async def test_every_request_is_logged_with_its_path_relative_to_the_app(moca: Served) -> None:
    async with aiohttp.ClientSession() as anonymous:
        await get(anonymous, f"{moca.base}/places")
    async with aiohttp.ClientSession(headers=AUTH) as session:
        await get(session, f"{moca.base}/places", offset="2")
    log = moca.sandbox.requests
    assert [(r.method, r.path, r.query, r.status) for r in log] == [
        ("GET", "/v2/places", {}, 403),
        ("GET", "/v2/places", {"offset": "2"}, 200),
    ]
    assert log[0].at <= log[1].at <= time.monotonic()
    moca.sandbox.reset_log()
    assert moca.sandbox.requests == []


# -- each path -------------------------------------------------------------------------------

# list path, stream, the parent stream whose id the path holds
LISTS = [
    ("/apps", "apps", None),
    ("/beacons", "beacons", None),
    ("/places", "places", None),
    ("/zones", "zones", None),
    ("/geofences", "geofences", None),
    ("/places/{id}/zones", "zones", "places"),
    ("/apps/{id}/segments", "segments", "apps"),
    ("/apps/{id}/campaigns", "campaigns", "apps"),
    ("/campaigns/{id}/experiences", "experiences", "campaigns"),
    ("/campaigns/{id}/notifications", "notifications", "campaigns"),
]


@pytest.mark.parametrize(("path", "stream", "parent"), LISTS)
async def test_each_list_path_serves_its_stream_in_api_order(
    moca: Served, client: aiohttp.ClientSession, path: str, stream: str, parent: str | None
) -> None:
    expected = moca.data.records(stream)
    if parent is not None:
        key = ID_FIELDS[parent]
        # The parent with the most children, so that the filter is seen to work.
        parent_id = max(
            (r[key] for r in moca.data.records(parent)),
            key=lambda i: sum(r[key] == i for r in expected),
        )
        expected = [r for r in expected if r[key] == parent_id]
        path = path.format(id=parent_id)
    response, body = await get(client, moca.base + path)
    assert response.status == 200
    assert body["items"] == expected
    assert (body["offset"], body["limit"], body["total"]) == (0, 100, len(expected))
    assert expected


@pytest.mark.parametrize("stream", MOCA_STREAMS)
async def test_each_record_is_served_by_its_id(
    moca: Served, client: aiohttp.ClientSession, stream: str
) -> None:
    record = moca.data.records(stream)[-1]
    response, body = await get(client, f"{moca.base}/{stream}/{record[ID_FIELDS[stream]]}")
    missing, error = await get(client, f"{moca.base}/{stream}/AAAAAAAAAAAAAAAAAAAAAA")
    assert (response.status, body) == (200, record)
    assert (missing.status, error["code"]) == (404, 404)


@pytest.mark.parametrize(("path", "stream", "parent"), [p for p in LISTS if p[2]])
async def test_a_list_under_an_unknown_parent_is_404(
    moca: Served, client: aiohttp.ClientSession, path: str, stream: str, parent: str
) -> None:
    response, body = await get(client, moca.base + path.format(id="AAAAAAAAAAAAAAAAAAAAAA"))
    assert response.status == 404
    assert parent.removesuffix("s") in body["message"]


async def test_beacons_filter_by_place_and_zone_and_zones_by_place(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    beacon = next(b for b in moca.data.records("beacons") if b["zoneId"])
    _, by_place = await get(client, f"{moca.base}/beacons", placeId=beacon["placeId"])
    _, by_zone = await get(client, f"{moca.base}/beacons", zoneId=beacon["zoneId"])
    _, zones = await get(client, f"{moca.base}/zones", placeId=beacon["placeId"])
    _, nested = await get(client, f"{moca.base}/places/{beacon['placeId']}/zones")
    assert {b["placeId"] for b in by_place["items"]} == {beacon["placeId"]}
    assert {b["zoneId"] for b in by_zone["items"]} == {beacon["zoneId"]}
    assert len(by_zone["items"]) <= len(by_place["items"]) < len(moca.data.records("beacons"))
    assert zones["items"] == nested["items"]
    assert beacon["zoneId"] in ids(zones["items"], "zones")


async def test_unknown_query_parameters_and_trailing_slashes_are_tolerated(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    _, plain = await get(client, f"{moca.base}/geofences")
    _, extra = await get(client, f"{moca.base}/geofences/", sort="name", updated_after="x")
    assert plain == extra


# -- paging ----------------------------------------------------------------------------------


async def test_offset_and_limit_walk_every_record_once(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    items = await walk(client, f"{moca.base}/beacons", limit=7)
    assert items == moca.data.records("beacons")


async def test_limit_is_capped_at_max_limit(moca: Served, client: aiohttp.ClientSession) -> None:
    moca.sandbox.settings = MocaSandboxSettings(max_limit=25)
    _, capped = await get(client, f"{moca.base}/beacons", limit="1000", offset="50")
    _, default = await get(client, f"{moca.base}/beacons")
    assert (capped["offset"], capped["limit"], capped["total"]) == (50, 25, 60)
    assert len(capped["items"]) == 10
    assert (default["limit"], len(default["items"])) == (25, 25)


async def test_offset_past_the_end_is_an_empty_page(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    response, body = await get(client, f"{moca.base}/zones", offset="500")
    assert response.status == 200
    assert body == {"offset": 500, "limit": 100, "total": 15, "items": []}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("offset", "-1"),
        ("offset", "abc"),
        ("offset", " 1"),
        ("limit", "0"),
        ("limit", "1.5"),
        ("limit", ""),
        ("limit", "+5"),
        ("offset", "99999999999999999999"),
    ],
)
async def test_bad_offset_or_limit_is_400(
    moca: Served, client: aiohttp.ClientSession, name: str, value: str
) -> None:
    response, body = await get(client, f"{moca.base}/places", **{name: value})
    assert (response.status, body["code"]) == (400, 400)
    assert name in body["message"]


async def test_bare_mode_answers_a_plain_array(moca: Served, client: aiohttp.ClientSession) -> None:
    moca.sandbox.settings = MocaSandboxSettings(envelope=False)
    _, body = await get(client, f"{moca.base}/places", offset="2", limit="3")
    assert body == moca.data.records("places")[2:5]


# -- the updatedSince extension --------------------------------------------------------------


async def test_updated_since_is_ignored_unless_enabled(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    _, plain = await get(client, f"{moca.base}/beacons")
    _, ignored = await get(client, f"{moca.base}/beacons", updatedSince=str(NOW_MS))
    _, garbage = await get(client, f"{moca.base}/beacons", updatedSince="yesterday")
    assert plain == ignored == garbage


async def test_updated_since_filters_inclusively_when_enabled(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    moca.sandbox.settings = MocaSandboxSettings(updated_since=True)
    records = moca.data.records("beacons")
    pivot = sorted(r["updatedAt"] for r in records)[len(records) // 2]
    _, body = await get(client, f"{moca.base}/beacons", updatedSince=str(pivot))
    expected = [r for r in records if r["updatedAt"] >= pivot]
    assert body["items"] == expected
    assert body["total"] == len(expected) < len(records)
    bad, error = await get(client, f"{moca.base}/beacons", updatedSince="yesterday")
    assert (bad.status, error["code"]) == (400, 400)
    assert "updatedSince" in error["message"]


# -- analytics -------------------------------------------------------------------------------


def analytics_url(moca: Served, metric: str, app: int = 0) -> str:
    app_id = moca.data.records("apps")[app]["appId"]
    return f"{moca.base}/apps/{app_id}/analytics/{metric}"


async def test_daily_analytics_cover_the_window_up_to_now(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    start = TODAY_MS - 6 * DAY_MS
    response, body = await get(
        client,
        analytics_url(moca, "newUsers"),
        interval="day",
        **{"from": str(start)},
        to=str(NOW_MS + 5 * DAY_MS),
    )
    assert response.status == 200
    assert set(body) == {"appId", "metric", "interval", "from", "to", "total", "series"}
    assert (body["metric"], body["interval"], body["from"]) == ("newUsers", "day", start)
    assert [p["t"] for p in body["series"]] == [start + d * DAY_MS for d in range(7)]
    assert body["total"] == sum(p["value"] for p in body["series"])


@pytest.mark.parametrize(("interval", "buckets"), [("hour", 24), ("day", 1), ("month", 1)])
async def test_analytics_intervals_bucket_a_past_day(
    moca: Served, client: aiohttp.ClientSession, interval: str, buckets: int
) -> None:
    start = TODAY_MS - 3 * DAY_MS
    window = {"from": str(start), "to": str(start + DAY_MS), "interval": interval}
    _, body = await get(client, analytics_url(moca, "activeUsers"), **window)
    assert len(body["series"]) == buckets
    assert body["series"][0]["t"] == (start if interval != "month" else 1748736000000)


async def test_distinct_user_totals_are_not_the_sum_of_buckets(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    window = {"from": str(TODAY_MS - 14 * DAY_MS), "to": str(TODAY_MS), "interval": "day"}
    totals = {}
    for metric in ("newUsers", "returningUsers", "activeUsers", "visitors"):
        _, body = await get(client, analytics_url(moca, metric, app=1), **window)
        totals[metric] = (body["total"], sum(p["value"] for p in body["series"]))
    assert totals["newUsers"][0] == totals["newUsers"][1]
    assert totals["activeUsers"][0] < totals["activeUsers"][1]
    assert totals["visitors"][0] < totals["visitors"][1]
    assert totals["activeUsers"][0] == totals["newUsers"][0] + totals["returningUsers"][0]


async def test_geolocations_answer_geohash_cells(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    window = {"from": str(TODAY_MS - DAY_MS), "to": str(TODAY_MS), "interval": "day"}
    _, body = await get(client, analytics_url(moca, "geolocations"), **window)
    assert body["metric"] == "geolocations"
    assert body["series"]
    assert all(set(c) == {"t", "geohash", "latitude", "longitude", "count"} for c in body["series"])
    assert body["total"] == sum(c["count"] for c in body["series"])


async def test_aggregated_geolocations_sum_each_place_over_the_range_without_t(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    window = {"from": str(TODAY_MS - 7 * DAY_MS), "to": str(TODAY_MS), "interval": "day"}
    _, buckets = await get(client, analytics_url(moca, "geolocations"), **window)
    moca.sandbox.settings = replace(moca.sandbox.settings, geolocations="aggregate")
    _, body = await get(client, analytics_url(moca, "geolocations"), **window)
    assert all(set(c) == {"latitude", "longitude", "count"} for c in body["series"])
    summed: dict[tuple[float, float], int] = {}
    for cell in buckets["series"]:
        place = (cell["latitude"], cell["longitude"])
        summed[place] = summed.get(place, 0) + cell["count"]
    assert {(c["latitude"], c["longitude"]): c["count"] for c in body["series"]} == summed
    assert body["total"] == buckets["total"]
    _, other = await get(client, analytics_url(moca, "newUsers"), **window)
    assert all("t" in p for p in other["series"])  # only geolocations change shape


async def test_odd_analytics_answer_chosen_metrics_without_a_series(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    window = {"from": str(TODAY_MS - DAY_MS), "to": str(TODAY_MS), "interval": "day"}
    moca.sandbox.faults.odd_analytics = frozenset({"sessions"})
    response, body = await get(client, analytics_url(moca, "sessions"), **window)
    assert response.status == 200
    assert "series" not in body
    assert body["data"]
    _, fine = await get(client, analytics_url(moca, "visitors"), **window)
    assert fine["series"]


async def test_restated_buckets_change_only_in_the_last_days(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    url = analytics_url(moca, "sessions")
    window = {"from": str(TODAY_MS - 5 * DAY_MS), "to": str(NOW_MS), "interval": "day"}
    _, before = await get(client, url, **window)
    app_id = moca.data.records("apps")[0]["appId"]
    restated = moca.data.restate(app_id, "sessions", 2)
    _, after = await get(client, url, **window)
    changed = [a["t"] for a, b in zip(after["series"], before["series"], strict=True) if a != b]
    assert changed == restated == [TODAY_MS - DAY_MS, TODAY_MS]


async def test_the_current_bucket_grows_with_the_clock(
    moca: Served, client: aiohttp.ClientSession, clock: list[float]
) -> None:
    window = {"from": str(TODAY_MS), "to": str(TODAY_MS + DAY_MS), "interval": "day"}
    _, before = await get(client, analytics_url(moca, "newUsers"), **window)
    clock[0] += 4 * 3600
    _, after = await get(client, analytics_url(moca, "newUsers"), **window)
    assert after["series"][0]["value"] > before["series"][0]["value"]


@pytest.mark.parametrize(
    "query",
    [
        {"to": "2", "interval": "day"},
        {"from": "1", "to": "2"},
        {"from": "x", "to": "2", "interval": "day"},
        {"from": "5", "to": "5", "interval": "day"},
        {"from": "1", "to": "2", "interval": "week"},
    ],
)
async def test_bad_analytics_parameters_are_400(
    moca: Served, client: aiohttp.ClientSession, query: dict[str, str]
) -> None:
    response, body = await get(client, analytics_url(moca, "sessions"), **query)
    assert (response.status, body["code"]) == (400, 400)


@pytest.mark.parametrize(
    "path", ["/apps/{app}/analytics/new_users", "/apps/nope/analytics/sessions"]
)
async def test_unknown_metric_or_app_is_404(
    moca: Served, client: aiohttp.ClientSession, path: str
) -> None:
    url = moca.base + path.format(app=moca.data.records("apps")[0]["appId"])
    response, _ = await get(client, url, **{"from": "0", "to": str(NOW_MS), "interval": "day"})
    assert response.status == 404


# -- writes ----------------------------------------------------------------------------------


async def test_post_app_answers_201_and_the_app_is_listed(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    response, app = await call(
        client, "POST", f"{moca.base}/apps", json={"config": {"name": "Neue Filial-App 🚀"}}
    )
    _, listed = await get(client, f"{moca.base}/apps")
    assert response.status == 201
    assert (app["createdAt"], app["updatedAt"], app["accountId"]) == (
        NOW_MS,
        NOW_MS,
        moca.data.account_id,
    )
    assert listed["items"][-1] == app


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"json": {"config": {}}}, 400),
        ({"json": {"config": {"name": "x"}, "x": 1}}, 400),
        ({"json": ["config"]}, 400),
        ({}, 400),
        ({"data": "name=x"}, 415),
        ({"data": "{nope", "headers": {"Content-Type": "application/json"}}, 415),
    ],
)
async def test_post_app_refuses_bad_bodies(
    moca: Served, client: aiohttp.ClientSession, body: dict[str, Any], status: int
) -> None:
    response, error = await call(client, "POST", f"{moca.base}/apps", **body)
    assert (response.status, error["code"]) == (status, status)
    assert len(moca.data.records("apps")) == COUNTS["apps"]


async def test_put_app_replaces_its_config_and_bumps_updated_at(
    moca: Served, client: aiohttp.ClientSession, clock: list[float]
) -> None:
    app = moca.data.records("apps")[0]
    clock[0] += 1
    body = {**app, "config": {"name": "Umbenannt ✏️"}}
    response, replaced = await call(client, "PUT", f"{moca.base}/apps/{app['appId']}", json=body)
    _, fetched = await get(client, f"{moca.base}/apps/{app['appId']}")
    assert response.status == 200
    assert replaced == fetched
    assert fetched["config"] == {"name": "Umbenannt ✏️"}
    assert (fetched["createdAt"], fetched["updatedAt"]) == (app["createdAt"], NOW_MS + 1000)
    assert fetched["appSecret"] == app["appSecret"]


async def test_delete_app_removes_it_with_its_campaigns(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    campaign = moca.data.records("campaigns")[0]
    app_url = f"{moca.base}/apps/{campaign['appId']}"
    response, deleted = await call(client, "DELETE", app_url)
    gone, _ = await get(client, app_url)
    campaign_gone, _ = await get(client, f"{moca.base}/campaigns/{campaign['campaignId']}")
    analytics, _ = await get(client, f"{app_url}/analytics/sessions", **{"from": "0", "to": "1"})
    assert (response.status, deleted["appId"]) == (200, campaign["appId"])
    assert gone.status == campaign_gone.status == analytics.status == 404


async def test_beacons_are_created_moved_and_refused_as_duplicates(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    zones = moca.data.records("zones")
    body = {
        "uuid": "B9407F30-F5F8-466E-AFF9-25556B57FE6D",
        "major": 4242,
        "minor": 1,
        "zoneId": zones[0]["zoneId"],
        "config": {"name": "Eingang links"},
    }
    created, beacon = await call(client, "POST", f"{moca.base}/beacons", json=body)
    duplicate, error = await call(client, "POST", f"{moca.base}/beacons", json=body)
    url = f"{moca.base}/beacons/{beacon['beaconId']}"
    moved, _ = await call(client, "PUT", url, json={**body, "zoneId": zones[1]["zoneId"]})
    _, old_zone = await get(client, f"{moca.base}/zones/{zones[0]['zoneId']}")
    _, new_zone = await get(client, f"{moca.base}/zones/{zones[1]['zoneId']}")
    assert (created.status, duplicate.status, error["code"], moved.status) == (201, 409, 409, 200)
    assert beacon["beaconId"] not in old_zone["beacons"]
    assert beacon["beaconId"] in new_zone["beacons"]
    deleted, _ = await call(client, "DELETE", url)
    again, _ = await call(client, "POST", f"{moca.base}/beacons", json=body)
    assert (deleted.status, again.status) == (200, 201)


async def test_start_campaign_runs_a_stopped_campaign_and_refuses_an_ended_one(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    ended = next(c for c in moca.data.records("campaigns") if c["status"] == "Finished")
    stopped = moca.data.get("campaigns", moca.data.create("campaigns", 1)[0])
    assert stopped is not None
    stopped["config"].update(startAt=NOW_MS - DAY_MS, endAt=NOW_MS + DAY_MS)
    stopped["status"] = "Draft"
    url = f"{moca.base}/campaigns/{{}}/start"
    refused, error = await call(client, "POST", url.format(ended["campaignId"]))
    started, body = await call(client, "POST", url.format(stopped["campaignId"]))
    assert (refused.status, error["code"]) == (409, 409)
    assert (started.status, body["status"], body["statusAt"]) == (200, "Running", NOW_MS)


# -- data changes ----------------------------------------------------------------------------


async def test_update_create_and_delete_change_what_the_api_serves(
    moca: Served, client: aiohttp.ClientSession, clock: list[float]
) -> None:
    before = await walk(client, f"{moca.base}/beacons", limit=25)
    clock[0] += 60
    updated = moca.data.update("beacons", 2)
    created = moca.data.create("beacons", 3)
    deleted = moca.data.delete("beacons", 1)
    after = await walk(client, f"{moca.base}/beacons", limit=25)
    stamps = {b["beaconId"]: b["updatedAt"] for b in after}
    assert set(ids(after, "beacons")) == (set(ids(before, "beacons")) | set(created)) - set(deleted)
    assert ids(after, "beacons")[-3:] == sorted(created)
    assert {i for i, stamp in stamps.items() if stamp == NOW_MS + 60_000} >= (
        set(updated) | set(created)
    ) - set(deleted)
    for rid in deleted:
        response, _ = await get(client, f"{moca.base}/beacons/{rid}")
        assert response.status == 404


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 408])
async def test_fail_next_answers_a_json_error_then_recovers(
    moca: Served, client: aiohttp.ClientSession, status: int
) -> None:
    moca.sandbox.faults.fail_next = 2
    moca.sandbox.faults.fail_status = status
    answers = [await get(client, f"{moca.base}/nowhere")]
    answers += [await get(client, f"{moca.base}/apps") for _ in "ab"]
    assert [r.status for r, _ in answers] == [status, status, 200]
    assert answers[0][1]["code"] == status
    assert answers[0][0].headers["X-Api-Version"] == "2"
    assert moca.sandbox.faults.fail_next == 0


async def test_slow_next_delays_the_answer_and_trips_a_client_timeout(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    moca.sandbox.faults.slow_next = 2
    moca.sandbox.faults.slow_s = 0.3
    started = time.monotonic()
    slow, _ = await get(client, f"{moca.base}/apps")
    slow_s = time.monotonic() - started
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(f"{moca.base}/apps", timeout=aiohttp.ClientTimeout(total=0.1)):
            pass
    started = time.monotonic()
    await get(client, f"{moca.base}/apps")
    assert slow.status == 200
    assert slow_s >= 0.3 > time.monotonic() - started


async def test_malformed_next_sends_invalid_json_once(
    moca: Served, client: aiohttp.ClientSession
) -> None:
    moca.sandbox.faults.malformed_next = 1
    broken, broken_body = await get(client, f"{moca.base}/zones")
    fine, fine_body = await get(client, f"{moca.base}/zones")
    assert broken.status == fine.status == 200
    assert broken_body is None
    assert fine_body["total"] == COUNTS["zones"]


async def test_reset_next_closes_the_connection_without_answering(moca: Served) -> None:
    # aiohttp's client resends an idempotent request once after a disconnect, so two resets
    # are needed before the caller sees the error.
    moca.sandbox.faults.reset_next = 2
    async with aiohttp.ClientSession(headers=AUTH) as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await get(session, f"{moca.base}/apps")
        fine, _ = await get(session, f"{moca.base}/apps")
    assert fine.status == 200
    assert [r.status for r in moca.sandbox.requests] == [0, 0, 200]


# -- determinism -----------------------------------------------------------------------------


async def test_the_same_seed_serves_the_same_bytes(client: aiohttp.ClientSession) -> None:
    bodies = []
    for seed in (11, 11, 12):
        data = MocaData(seed=seed, counts=COUNTS, now=lambda: NOW_S)
        async with serving(MocaSandbox(data)) as served:
            app_id = data.records("apps")[0]["appId"]
            texts = []
            for path, params in (
                ("/beacons", {}),
                (
                    f"/apps/{app_id}/analytics/sessions",
                    {"from": str(TODAY_MS - DAY_MS), "to": str(NOW_MS), "interval": "hour"},
                ),
            ):
                async with client.get(served.base + path, params=params) as response:
                    texts.append(await response.read())
            bodies.append(texts)
    assert bodies[0] == bodies[1]
    assert bodies[0][0] != bodies[2][0]
