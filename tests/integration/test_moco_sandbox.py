"""The MOCO sandbox over real loopback HTTP: auth, pagination, filters, sorting, limits, faults."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings
from syncer.sandbox.moco_data import MocoData, parse_ts
from syncer.sandbox.server import RunningSandbox, running_sandbox

KEY = "sandbox-moco-key"
AUTH = {"Authorization": f"Token token={KEY}"}
# Small enough to build in a few milliseconds per test.
COUNTS = {
    "activities": 60,
    "projects": 40,
    "companies": 40,
    "contacts": 10,
    "users": 40,
    "invoices": 80,
    "offers": 30,
    "deals": 20,
}


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with running_sandbox(moco=MocoSandbox(MocoData(seed=7, counts=COUNTS))) as running:
        yield running


@pytest.fixture
async def paged() -> AsyncIterator[RunningSandbox]:
    """A sandbox whose projects span three pages of 100."""
    data = MocoData(seed=7, counts={**COUNTS, "projects": 250})
    async with running_sandbox(moco=MocoSandbox(data)) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def get(
    client: aiohttp.ClientSession, url: str, **params: str
) -> tuple[aiohttp.ClientResponse, Any]:
    """The response and its parsed JSON body (None when the body is not JSON)."""
    async with client.get(url, params=params) as response:
        text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return response, body


def link_rels(response: aiohttp.ClientResponse) -> dict[str, str]:
    """rel -> URL from the Link header."""
    rels = {}
    for part in response.headers.get("Link", "").split(","):
        if part.strip():
            url, rel = part.split(";")
            rels[rel.strip().removeprefix('rel="').removesuffix('"')] = url.strip()[1:-1]
    return rels


# -- auth ------------------------------------------------------------------------------------


async def test_missing_key_is_401_with_json_message(sandbox: RunningSandbox) -> None:
    async with aiohttp.ClientSession() as anonymous:
        response, body = await get(anonymous, f"{sandbox.moco_base_url}/projects")
    assert response.status == 401
    assert isinstance(body["message"], str)


@pytest.mark.parametrize("header", ["Token token=wrong", "Bearer wrong", "Basic c2FuZGJveA=="])
async def test_wrong_key_is_401(sandbox: RunningSandbox, header: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": header}) as session:
        response, _ = await get(session, f"{sandbox.moco_base_url}/projects")
    assert response.status == 401


@pytest.mark.parametrize("header", [f"Token token={KEY}", f'Token token="{KEY}"', f"Bearer {KEY}"])
async def test_both_header_forms_are_accepted(sandbox: RunningSandbox, header: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": header}) as session:
        response, body = await get(session, f"{sandbox.moco_base_url}/users")
    assert response.status == 200
    assert isinstance(body, list)


# -- routes and headers ----------------------------------------------------------------------


async def test_json_suffix_is_accepted_and_unknown_paths_are_404(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    plain, plain_body = await get(client, f"{sandbox.moco_base_url}/contacts/people")
    suffixed, suffixed_body = await get(client, f"{sandbox.moco_base_url}/contacts/people.json")
    missing, missing_body = await get(client, f"{sandbox.moco_base_url}/contacts/robots")
    assert (plain.status, suffixed.status, missing.status) == (200, 200, 404)
    assert [r["id"] for r in plain_body] == [r["id"] for r in suffixed_body]
    assert "message" in missing_body


async def test_list_response_carries_rails_headers(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    response, _ = await get(client, f"{sandbox.moco_base_url}/deals")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "max-age=0, private, must-revalidate"
    assert uuid.UUID(response.headers["X-Request-Id"])
    assert "Date" in response.headers
    assert "Retry-After" not in response.headers


async def test_every_request_is_logged_with_its_path_relative_to_the_app(
    sandbox: RunningSandbox,
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        await get(anonymous, f"{sandbox.moco_base_url}/offers")
    async with aiohttp.ClientSession(headers=AUTH) as session:
        await get(session, f"{sandbox.moco_base_url}/offers", page="2")
    log = sandbox.moco.requests
    assert [(r.method, r.path, r.query, r.status) for r in log] == [
        ("GET", "/api/v1/offers", {}, 401),
        ("GET", "/api/v1/offers", {"page": "2"}, 200),
    ]
    sandbox.moco.reset_log()
    assert sandbox.moco.requests == []


# -- pagination ------------------------------------------------------------------------------


async def test_per_page_is_capped_at_100(
    paged: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    response, body = await get(client, f"{paged.moco_base_url}/projects", per_page="1000")
    assert len(body) == 100
    assert response.headers["X-Per-Page"] == "100"


async def test_pages_carry_headers_and_link_rels(
    paged: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    url = f"{paged.moco_base_url}/projects"
    active = [p for p in paged.moco.data.records("projects") if p["active"]]
    assert 200 < len(active) <= 300  # three pages
    first, first_body = await get(client, url, sort_by="id")
    middle, _ = await get(client, url, sort_by="id", page="2")
    last, last_body = await get(client, url, sort_by="id", page="3")
    assert first.headers["X-Page"] == "1"
    assert first.headers["X-Total"] == str(len(active))
    assert set(link_rels(first)) == {"next", "last"}
    assert set(link_rels(middle)) == {"first", "prev", "next", "last"}
    assert set(link_rels(last)) == {"first", "prev"}
    next_url = link_rels(first)["next"]
    assert next_url.startswith("http://127.0.0.1:")
    assert "page=2" in next_url
    assert "sort_by=id" in next_url
    assert "page=3" in link_rels(first)["last"]
    assert len(first_body) + 100 + len(last_body) == len(active)


async def test_next_link_leads_to_the_next_page(
    paged: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    first, first_body = await get(client, f"{paged.moco_base_url}/projects")
    async with client.get(link_rels(first)["next"]) as response:
        second_body = await response.json()
    assert first_body[-1]["id"] < second_body[0]["id"]


async def test_single_page_result_has_no_link_header(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    response, body = await get(client, f"{sandbox.moco_base_url}/users")
    assert 0 < len(body) < 100
    assert "Link" not in response.headers
    assert response.headers["X-Total"] == str(len(body))


async def test_page_past_the_end_is_an_empty_array_with_headers(
    paged: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    response, body = await get(client, f"{paged.moco_base_url}/projects", page="9")
    assert response.status == 200
    assert body == []
    assert response.headers["X-Page"] == "9"
    assert int(response.headers["X-Total"]) > 200
    assert "next" not in link_rels(response)


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", ""])
async def test_bad_page_is_422(
    sandbox: RunningSandbox, client: aiohttp.ClientSession, page: str
) -> None:
    response, body = await get(client, f"{sandbox.moco_base_url}/projects", page=page)
    assert response.status == 422
    assert "page" in body["message"]


# -- filters ---------------------------------------------------------------------------------


def ids(body: list[dict[str, Any]]) -> set[int]:
    return {record["id"] for record in body}


async def test_updated_after_is_strict_unless_configured_inclusive(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    records = sandbox.moco.data.records("activities")
    pivot = sorted(records, key=lambda r: r["updated_at"])[len(records) // 2]["updated_at"]
    after = {r["id"] for r in records if r["updated_at"] > pivot}
    at_or_after = {r["id"] for r in records if r["updated_at"] >= pivot}
    url = f"{sandbox.moco_base_url}/activities"
    _, strict = await get(client, url, updated_after=pivot)
    sandbox.moco.settings = MocoSandboxSettings(updated_after_inclusive=True)
    _, inclusive = await get(client, url, updated_after=pivot)
    assert ids(strict) == after
    assert ids(inclusive) == at_or_after != after


async def test_updated_after_accepts_fractions_and_rejects_garbage(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.moco_base_url}/offers"
    fine, _ = await get(client, url, updated_after="2022-04-20T09:17:58.123Z")
    bad, body = await get(client, url, updated_after="last tuesday")
    assert fine.status == 200
    assert bad.status == 422
    assert "updated_after" in body["message"]


@pytest.mark.parametrize("stream", ["projects", "companies", "users"])
async def test_archived_records_need_include_archived(
    paged: RunningSandbox, client: aiohttp.ClientSession, stream: str
) -> None:
    path = {"projects": "/projects", "companies": "/companies", "users": "/users"}[stream]
    everything = paged.moco.data.records(stream)
    assert any(not r["active"] for r in everything)
    _, default = await get(client, f"{paged.moco_base_url}{path}", per_page="100")
    pages = [
        (await get(client, f"{paged.moco_base_url}{path}", include_archived="true", page=p))[1]
        for p in ("1", "2", "3")
    ]
    assert all(r["active"] for r in default)
    assert ids([r for page in pages for r in page]) == ids(everything)


async def test_disregarded_invoices_need_include_disregarded(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.moco_base_url}/invoices"
    _, default = await get(client, url)
    _, everything = await get(client, url, include_disregarded="true")
    assert all(r["status"] != "disregarded" for r in default)
    disregarded = [r for r in everything if r["status"] == "disregarded"]
    assert disregarded
    assert len(disregarded[0]) < len(default[0])  # far fewer fields
    assert ids(everything) == ids(sandbox.moco.data.records("invoices"))


async def test_ids_filter_returns_only_those_ids(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    wanted = [r["id"] for r in sandbox.moco.data.records("deals")[3:6]]
    response, body = await get(
        client, f"{sandbox.moco_base_url}/deals", ids=",".join(map(str, wanted))
    )
    assert ids(body) == set(wanted)
    assert response.headers["X-Total"] == "3"


# -- sorting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sort_by", ["updated_at desc", "updated_at DESC"])
async def test_sort_by_updated_at_desc_is_chronological_with_ties_by_id(
    sandbox: RunningSandbox, client: aiohttp.ClientSession, sort_by: str
) -> None:
    sandbox.moco.data.update("activities", 5)  # mixes ms timestamps into second ones
    _, body = await get(client, f"{sandbox.moco_base_url}/activities", sort_by=sort_by)
    keys = [(-parse_ts(r["updated_at"]).timestamp(), r["id"]) for r in body]
    assert keys == sorted(keys)


async def test_sort_by_with_plus_in_the_raw_query_sorts_ascending(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    async with client.get(f"{sandbox.moco_base_url}/offers?sort_by=created_at+asc") as response:
        body = await response.json()
    keys = [(parse_ts(r["created_at"]), r["id"]) for r in body]
    assert keys == sorted(keys)


async def test_default_order_is_id_ascending(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    _, body = await get(client, f"{sandbox.moco_base_url}/companies")
    assert [r["id"] for r in body] == sorted(r["id"] for r in body)


@pytest.mark.parametrize("sort_by", ["colour", "customer", "name sideways"])
async def test_sort_by_unknown_or_nested_field_is_422(
    sandbox: RunningSandbox, client: aiohttp.ClientSession, sort_by: str
) -> None:
    response, body = await get(client, f"{sandbox.moco_base_url}/projects", sort_by=sort_by)
    assert response.status == 422
    assert "sort_by" in body["message"]


# -- rate limit ------------------------------------------------------------------------------


async def test_rate_limit_answers_429_without_retry_after_until_the_window_passes(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    sandbox.moco.settings = MocoSandboxSettings(rate_limit_requests=3, rate_limit_window_s=0.5)
    url = f"{sandbox.moco_base_url}/users"
    accepted = [(await get(client, url))[0].status for _ in range(3)]
    rejected, _ = await get(client, url)
    await asyncio.sleep(0.3)
    rejected_again, _ = await get(client, url)  # must not count towards the window
    await asyncio.sleep(0.25)
    after_window, _ = await get(client, url)
    assert accepted == [200, 200, 200]
    assert rejected.status == rejected_again.status == 429
    assert "Retry-After" not in rejected.headers
    assert after_window.status == 200
    assert [r.status for r in sandbox.moco.requests] == [200, 200, 200, 429, 429, 200]


async def test_rate_limit_windows_are_per_key(sandbox: RunningSandbox) -> None:
    sandbox.moco.settings = MocoSandboxSettings(
        api_keys=frozenset({"a", "b"}), rate_limit_requests=1, rate_limit_window_s=60
    )
    statuses = []
    for key in ("a", "a", "b"):
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
            statuses.append((await get(session, f"{sandbox.moco_base_url}/users"))[0].status)
    assert statuses == [200, 429, 200]


# -- faults ----------------------------------------------------------------------------------


async def test_fail_next_answers_the_status_then_recovers(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    sandbox.moco.faults.fail_next = 2
    sandbox.moco.faults.fail_status = 502
    statuses = [(await get(client, f"{sandbox.moco_base_url}/nowhere"))[0].status]
    statuses += [(await get(client, f"{sandbox.moco_base_url}/deals"))[0].status for _ in "ab"]
    assert statuses == [502, 502, 200]
    assert sandbox.moco.faults.fail_next == 0


async def test_slow_next_delays_the_answer(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    sandbox.moco.faults.slow_next = 1
    sandbox.moco.faults.slow_s = 0.3
    started = time.monotonic()
    slow, _ = await get(client, f"{sandbox.moco_base_url}/deals")
    slow_s = time.monotonic() - started
    started = time.monotonic()
    await get(client, f"{sandbox.moco_base_url}/deals")
    assert slow.status == 200
    assert slow_s >= 0.3 > time.monotonic() - started


async def test_slow_next_trips_a_client_timeout(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    sandbox.moco.faults.slow_next = 1
    sandbox.moco.faults.slow_s = 0.3
    with pytest.raises(asyncio.TimeoutError):
        async with client.get(
            f"{sandbox.moco_base_url}/deals", timeout=aiohttp.ClientTimeout(total=0.1)
        ):
            pass


async def test_malformed_next_sends_invalid_json_once(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    sandbox.moco.faults.malformed_next = 1
    broken, broken_body = await get(client, f"{sandbox.moco_base_url}/companies")
    fine, fine_body = await get(client, f"{sandbox.moco_base_url}/companies")
    assert broken.status == fine.status == 200
    assert broken_body is None
    assert isinstance(fine_body, list)


async def test_reset_next_closes_the_connection_without_answering(
    sandbox: RunningSandbox,
) -> None:
    # aiohttp's client resends an idempotent request once after a disconnect, so two resets
    # are needed before the caller sees the error.
    sandbox.moco.faults.reset_next = 2
    async with aiohttp.ClientSession(headers=AUTH) as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await get(session, f"{sandbox.moco_base_url}/deals")
        fine, _ = await get(session, f"{sandbox.moco_base_url}/deals")
    assert fine.status == 200
    assert [r.status for r in sandbox.moco.requests] == [0, 0, 200]


async def test_change_between_pages_updates_and_creates_before_page_two(
    paged: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    url = f"{paged.moco_base_url}/projects"
    before = {r["id"]: r["updated_at"] for r in paged.moco.data.records("projects")}
    first, _ = await get(client, url)
    paged.moco.faults.change_between_pages = 4
    second, _ = await get(client, url, page="2")
    after = {r["id"]: r["updated_at"] for r in paged.moco.data.records("projects")}
    assert int(second.headers["X-Total"]) == int(first.headers["X-Total"]) + 1
    assert len(after.keys() - before.keys()) == 1
    assert len([i for i in before if after[i] != before[i]]) == 4


async def test_a_hook_sees_each_request_before_it_is_answered_and_may_hold_it(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    moco = sandbox.moco
    url = f"{sandbox.moco_base_url}/deals"
    seen: list[str] = []
    release = asyncio.Event()

    def hook(record: Any) -> Any:
        seen.append(record.query.get("page", "1"))
        if record.query.get("page") == "2":
            return release.wait()  # the answer waits for the test (same loop here)
        moco.data.create("deals", 1)  # answered after the change
        return None

    moco.hooks.append(hook)
    total = len(moco.data.live("deals"))
    _, first = await get(client, url)
    held = asyncio.ensure_future(get(client, url, page="2"))
    while moco.in_flight == 0:
        await asyncio.sleep(0.01)
    assert not held.done()
    release.set()
    second, _ = await held
    moco.hooks.remove(hook)
    await get(client, url)
    assert seen == ["1", "2"]
    assert len(first) == total + 1  # the hook's change is in the answer it ran before
    assert second.status == 200
    assert moco.in_flight == 0
    # Unauthorized requests are not shown to hooks.
    moco.hooks.append(hook)
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as response:
        assert response.status == 401
    moco.hooks.remove(hook)
    assert seen == ["1", "2"]


# -- data changes ----------------------------------------------------------------------------


async def test_update_create_and_delete_change_what_the_api_serves(
    sandbox: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    data = sandbox.moco.data
    url = f"{sandbox.moco_base_url}/deals"
    _, before = await get(client, url)
    watermark = max((r["updated_at"] for r in before), key=parse_ts)
    updated = data.update("deals", 2)
    created = data.create("deals", 3)
    deleted = data.delete("deals", 1)
    _, changed = await get(client, url, updated_after=watermark)
    _, after = await get(client, url)
    assert ids(changed) == (set(updated) | set(created)) - set(deleted)
    assert ids(after) == (ids(before) | set(created)) - set(deleted)
    assert min(created) > max(ids(before))


async def test_bad_records_next_appends_a_string_and_an_object_without_id(
    paged: RunningSandbox, client: aiohttp.ClientSession
) -> None:
    url = f"{paged.moco_base_url}/projects"
    paged.moco.faults.bad_records_next = 1
    _, empty_body = await get(client, url, page="9")  # no records: not counted
    bad, bad_body = await get(client, url)
    fine, fine_body = await get(client, url)
    assert empty_body == []
    assert bad.status == fine.status == 200
    assert bad_body[:-2] == fine_body
    assert bad_body[-2] == "not a record"
    assert "id" not in bad_body[-1]
    assert bad_body[-1]["updated_at"] == fine_body[-1]["updated_at"]
    assert bad.headers["X-Total"] == fine.headers["X-Total"]
    assert paged.moco.faults.bad_records_next == 0
