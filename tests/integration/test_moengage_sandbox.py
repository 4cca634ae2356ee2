"""The MoEngage sandbox over real loopback HTTP: auth, headers, size, 400s, rate limits, silent
drops, state, inspection and faults (docs/vendors/moengage.md)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from syncer.sandbox.moengage import MoengageSandbox
from syncer.sandbox.moengage_rules import FORBIDDEN_CUSTOMER_IDS

WORKSPACE = "SANDBOXWORKSPACE1"
KEY = "sandbox-moengage-key"
PAST = "2024-01-02T03:04:05Z"
ACCEPTED = {
    "status": "success",
    "message": "Your request has been accepted and will be processed soon.",
}
REQUEST_ID = re.compile(r"[A-Za-z0-9]{8}")


@dataclass
class Served:
    sandbox: MoengageSandbox
    root_url: str  # where the app is mounted, e.g. http://127.0.0.1:PORT/moengage

    @property
    def api(self) -> str:
        """The base URL a loader is configured with, ending in /moengage/v1."""
        return f"{self.root_url}/v1"

    @property
    def bulk(self) -> str:
        return f"{self.api}/transition/{WORKSPACE}"


@pytest.fixture
async def moe() -> AsyncIterator[Served]:
    sandbox = MoengageSandbox()
    root = web.Application()  # default client_max_size (1 MiB), as the real server's root app
    root.add_subapp("/moengage", sandbox.app())
    runner = web.AppRunner(root, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        yield Served(sandbox, f"http://127.0.0.1:{port}/moengage")
    finally:
        await runner.cleanup()


def auth_headers(user: str = WORKSPACE, password: str = KEY) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "MOE-APPKEY": user}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=auth_headers()) as session:
        yield session


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or None
    headers: Any


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> Answer:
    """POSTs `body` as JSON (or `raw` bytes as application/json) and parses the answer."""
    # A file-like body: aiohttp warns about large raw bytes, and warnings are errors here.
    data = io.BytesIO(raw if raw is not None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json", **(headers or {})}
    timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
    async with session.post(url, data=data, headers=sent, timeout=timeout) as response:
        text = await response.text()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return Answer(response.status, parsed, response.headers)


def transition(*elements: Any) -> dict[str, Any]:
    return {"type": "transition", "elements": list(elements)}


def customer(customer_id: Any = "user-1", **attributes: Any) -> dict[str, Any]:
    return {"type": "customer", "customer_id": customer_id, "attributes": attributes}


def device(
    customer_id: str = "user-1", device_id: str = "device-1", **attributes: Any
) -> dict[str, Any]:
    attributes = {"platform": "ANDROID", "push_id": "token-1", **attributes}
    return {
        "type": "device",
        "customer_id": customer_id,
        "device_id": device_id,
        "attributes": attributes,
    }


def event(customer_id: str = "user-1", *actions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event", "customer_id": customer_id, "actions": list(actions or [action()])}


def action(name: str = "Viewed", **fields: Any) -> dict[str, Any]:
    return {"action": name, "current_time": PAST, **fields}


def assert_error(answer: Answer, status: int, error_type: str, message: str) -> None:
    assert answer.status == status
    assert answer.body["status"] == "fail"
    assert answer.body["error"]["type"] == error_type
    assert answer.body["error"]["message"] == message
    assert REQUEST_ID.fullmatch(answer.body["error"]["request_id"])


def assert_untouched(sandbox: MoengageSandbox) -> None:
    assert (sandbox.users, sandbox.devices, sandbox.events, sandbox.drops) == ({}, {}, [], [])


# -- success -----------------------------------------------------------------------------------


async def test_valid_bulk_is_200_with_the_documented_body_and_no_request_id(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, moe.bulk, transition(customer(name="Ann"), device(), event()))
    assert (answer.status, answer.body) == (200, ACCEPTED)
    assert moe.sandbox.users == {"user-1": {"name": "Ann"}}
    assert list(moe.sandbox.devices) == [("user-1", "device-1")]
    assert [e.action for e in moe.sandbox.events] == ["Viewed"]
    assert moe.sandbox.drops == []


# -- auth --------------------------------------------------------------------------------------


async def test_missing_authorization_is_401_in_the_error_envelope(moe: Served) -> None:
    async with aiohttp.ClientSession() as anonymous:
        answer = await post(anonymous, moe.bulk, transition(customer()))
    assert_error(answer, 401, "Authentication required", "Authentication Header Required")
    assert_untouched(moe.sandbox)


async def test_wrong_api_key_is_401_secret_mismatch(moe: Served) -> None:
    async with aiohttp.ClientSession(headers=auth_headers(password="nope")) as session:
        answer = await post(session, moe.bulk, transition(customer()))
    assert_error(
        answer,
        401,
        "Authentication required",
        "App Secret key mismatch. Please login to the dashboard to verify key",
    )


async def test_unknown_workspace_in_credentials_is_401(moe: Served) -> None:
    async with aiohttp.ClientSession(headers=auth_headers(user="OTHER")) as session:
        answer = await post(session, f"{moe.api}/transition/OTHER", transition(customer()))
    assert_error(
        answer, 401, "Authentication required", "Invalid APP_ID used in Authentication Header"
    )


async def test_non_basic_scheme_is_401(moe: Served) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        answer = await post(session, moe.bulk, transition(customer()))
    assert_error(
        answer,
        401,
        "Authentication required",
        "Invalid authorization used. MoEngage only supports 'Basic Auth' authorization.",
    )


async def test_basic_without_password_is_401(moe: Served) -> None:
    async with aiohttp.ClientSession(headers=auth_headers(password="")) as session:
        answer = await post(session, moe.bulk, transition(customer()))
    assert_error(
        answer,
        401,
        "Authentication required",
        "Password (APP_SECRET) is missing in the Basic Auth authorization.",
    )


async def test_moe_appkey_other_than_the_username_is_401(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, moe.bulk, transition(customer()), headers={"MOE-APPKEY": "X"})
    assert_error(
        answer,
        401,
        "Authentication required",
        "MOE_APPKEY doesn't match the Username (APP_KEY) used in Basic Auth authorization.",
    )
    assert_untouched(moe.sandbox)


async def test_missing_moe_appkey_is_accepted_unless_required(moe: Served) -> None:
    headers = {"Authorization": auth_headers()["Authorization"]}
    async with aiohttp.ClientSession(headers=headers) as session:
        lenient = await post(session, moe.bulk, transition(customer()))
        moe.sandbox.settings = replace(moe.sandbox.settings, require_appkey_header=True)
        strict = await post(session, moe.bulk, transition(customer()))
    assert lenient.status == 200
    assert_error(strict, 401, "Authentication required", "MOE-APPKEY is missing in Header")


async def test_path_workspace_other_than_the_credentials_is_409(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, f"{moe.api}/transition/OTHERWORKSPACE", transition(customer()))
    assert_error(
        answer, 409, "Authentication required.", "App key mismatch in params and authentication."
    )
    assert_untouched(moe.sandbox)


async def test_app_id_query_is_accepted_when_it_matches_and_409_otherwise(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    matching = await post(client, f"{moe.bulk}?app_id={WORKSPACE}", transition(customer()))
    other = await post(client, f"{moe.bulk}?app_id=OTHER", transition(customer()))
    assert matching.status == 200
    assert other.status == 409


# -- headers and size --------------------------------------------------------------------------


async def test_missing_content_type_is_415(moe: Served, client: aiohttp.ClientSession) -> None:
    body = json.dumps(transition(customer())).encode()
    # aiohttp adds application/octet-stream to bytes without a type; skip_auto_headers stops it.
    async with client.post(moe.bulk, data=body, skip_auto_headers=["Content-Type"]) as response:
        answer = Answer(response.status, await response.json(), response.headers)
    assert_error(
        answer,
        415,
        "MediaTypeError",
        "The header 'Content-Type' is missing. Kindly provide the header 'Content-Type' "
        "and set it as 'application/json'",
    )


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_content_type_other_than_json_is_415(
    moe: Served, client: aiohttp.ClientSession, content_type: str
) -> None:
    answer = await post(
        client, moe.bulk, transition(customer()), headers={"Content-Type": content_type}
    )
    assert_error(answer, 415, "Unsupported media type", "Content type is not supported")
    assert_untouched(moe.sandbox)


async def test_json_content_type_with_charset_is_accepted(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    answer = await post(client, moe.bulk, transition(customer()), headers=headers)
    assert answer.status == 200


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON followed by spaces up to exactly `size` bytes."""
    data = json.dumps(body).encode()
    return data + b" " * (size - len(data))


async def test_body_over_max_body_bytes_is_413_and_at_the_limit_is_accepted(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit = moe.sandbox.settings.max_body_bytes
    at_limit = await post(client, moe.bulk, raw=padded(transition(customer("at-limit")), limit))
    over = await post(client, moe.bulk, raw=padded(transition(customer("over")), limit + 1))
    assert at_limit.status == 200
    assert_error(over, 413, "PayloadTooLarge", "Payload size exceeds 128 KB")
    assert list(moe.sandbox.users) == ["at-limit"]
    assert [r.body_bytes for r in moe.sandbox.requests] == [limit, limit + 1]


async def test_body_over_the_mounting_apps_own_limit_still_gets_the_documented_413(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, moe.bulk, raw=padded(transition(customer()), 2 * 1024 * 1024))
    assert_error(answer, 413, "PayloadTooLarge", "Payload size exceeds 128 KB")


# -- documented 400s ---------------------------------------------------------------------------

MALFORMED = "'Could not decode the request body. The JSON was incorrect or not encoded as UTF-8."


@pytest.mark.parametrize(
    "raw", [b'{"type": "transition", "elements": [', b'{"type": "transition"} x', b"\xff\xfe{}"]
)
async def test_undecodable_body_is_400_malformed_json(
    moe: Served, client: aiohttp.ClientSession, raw: bytes
) -> None:
    answer = await post(client, moe.bulk, raw=raw)
    assert_error(answer, 400, "Malformed JSON", MALFORMED)


async def test_empty_body_is_400(moe: Served, client: aiohttp.ClientSession) -> None:
    answer = await post(client, moe.bulk, raw=b"")
    assert_error(answer, 400, "Empty request body", "A valid JSON document is required.")


async def test_json_that_is_not_an_object_is_400(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, moe.bulk, [customer()])
    assert_error(answer, 400, "Body type is not JSON", "A valid JSON document is required.")


ELEMENT_TYPE = ("AttributeError", "type", "'type in elements should be customer/event/device")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"elements": [customer()]},
            ("MissingAttributeError", "type", "'type not found in the payload"),
            id="no-type",
        ),
        pytest.param(
            {"type": "Transition", "elements": [customer()]},
            ("AttributeError", "type", "'type should be transition"),
            id="wrong-type",
        ),
        pytest.param(
            {"type": "transition"},
            ("MissingAttributeError", "elements", "'elements not found in the payload"),
            id="no-elements",
        ),
        pytest.param(
            {"type": "transition", "elements": {"0": customer()}},
            ("Malformed JSON", None, MALFORMED),
            id="elements-not-a-list",
        ),
        pytest.param(
            transition(),
            ("MissingAttributeError", "elements", "'elements cannot be empty array"),
            id="empty-elements",
        ),
        pytest.param(
            transition(customer(), "customer"), ("Malformed JSON", None, MALFORMED), id="not-object"
        ),
        pytest.param(
            transition(customer(), {"customer_id": "user-2"}), ELEMENT_TYPE, id="element-no-type"
        ),
        pytest.param(
            transition(customer(), {**customer("user-2"), "type": "Customer"}),
            ELEMENT_TYPE,
            id="element-type-case",
        ),
        pytest.param(
            transition(customer(), {**customer("user-2"), "type": "user"}),
            ELEMENT_TYPE,
            id="element-type-unknown",
        ),
        pytest.param(
            transition(customer(), {"type": "customer", "attributes": {}}),
            ("MissingAttributeError", "customer_id", "'customer_id not found in the payload"),
            id="no-customer-id",
        ),
        pytest.param(
            transition(customer(), {"type": "event", "customer_id": "user-1"}),
            ("MissingAttributeError", "actions", "'actions not found in the payload"),
            id="no-actions",
        ),
        pytest.param(
            transition(customer(), {"type": "event", "customer_id": "user-1", "actions": []}),
            ("MissingAttributeError", "actions", "'actions can not be empty Array"),
            id="empty-actions",
        ),
        pytest.param(
            transition(customer(), event("user-1", {"current_time": PAST})),
            ("MissingAttributeError", "action", "'action not found in the payload"),
            id="no-action",
        ),
        pytest.param(
            transition(customer(), event("user-1", action(" "))),
            ("MissingAttributeError", "action", "'action cannot be empty Unicode string"),
            id="empty-action",
        ),
        pytest.param(
            transition(customer(), event("user-1", {"action": 7})),
            ("Malformed JSON", None, MALFORMED),
            id="action-not-a-string",
        ),
    ],
)
async def test_structural_errors_are_400_and_reject_the_whole_batch(
    moe: Served,
    client: aiohttp.ClientSession,
    body: dict[str, Any],
    expected: tuple[str, str | None, str],
) -> None:
    answer = await post(client, moe.bulk, body)
    error_type, attribute, message = expected
    assert_error(answer, 400, error_type, message)
    assert answer.body["error"].get("attribute") == attribute
    assert_untouched(moe.sandbox)  # the valid customer before the bad element is not applied


async def test_drop_element_mode_applies_the_rest_and_records_the_bad_element(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.settings = replace(moe.sandbox.settings, structural_errors="drop_element")
    answer = await post(client, moe.bulk, transition(customer(), {"type": "user"}, event()))
    assert answer.status == 200
    assert list(moe.sandbox.users) == ["user-1"]
    assert len(moe.sandbox.events) == 1
    [drop] = moe.sandbox.drops
    assert (drop.unit, drop.reason) == ("element", ELEMENT_TYPE[2])


# -- rate limits -------------------------------------------------------------------------------

RATE_LIMITED = "Rate limits for customers exceeded. Please Try After Some Time"


def limit(moe: Served, **settings: Any) -> None:
    moe.sandbox.settings = replace(moe.sandbox.settings, window_s=0.5, **settings)


async def test_users_over_the_window_are_429_and_nothing_is_applied(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=3)
    first = await post(client, moe.bulk, transition(customer("u-a"), customer("u-b")))
    over = await post(client, moe.bulk, transition(customer("u-c"), customer("u-d")))
    fits = await post(client, moe.bulk, transition(customer("u-e")))
    assert (first.status, fits.status) == (200, 200)
    assert_error(over, 429, "Rate Limits Exceeded", RATE_LIMITED)
    assert "Retry-After" not in over.headers
    assert sorted(moe.sandbox.users) == ["u-a", "u-b", "u-e"]


async def test_the_budget_comes_back_after_the_window(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=1)
    first = await post(client, moe.bulk, transition(customer("u-a")))
    rejected = await post(client, moe.bulk, transition(customer("u-b")))
    await asyncio.sleep(0.55)
    later = await post(client, moe.bulk, transition(customer("u-b")))
    assert [first.status, rejected.status, later.status] == [200, 429, 200]


async def test_the_sliding_window_counts_the_last_window_s_not_a_clock_minute(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=2)
    statuses = [(await post(client, moe.bulk, transition(customer("u-a")))).status]
    await asyncio.sleep(0.3)
    statuses.append((await post(client, moe.bulk, transition(customer("u-b")))).status)
    await asyncio.sleep(0.3)  # the first has left the window, the second has not
    statuses.append((await post(client, moe.bulk, transition(customer("u-c")))).status)
    statuses.append((await post(client, moe.bulk, transition(customer("u-d")))).status)
    assert statuses == [200, 200, 200, 429]


async def test_fixed_windows_reset_at_each_multiple_of_window_s(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=1, rate_window="fixed")
    window_s = moe.sandbox.settings.window_s
    await asyncio.sleep(math.ceil(time.monotonic() / window_s) * window_s - time.monotonic() + 0.02)
    statuses = [(await post(client, moe.bulk, transition(customer(f"u-{n}")))).status for n in "ab"]
    await asyncio.sleep(math.ceil(time.monotonic() / window_s) * window_s - time.monotonic() + 0.02)
    statuses.append((await post(client, moe.bulk, transition(customer("u-c")))).status)
    assert statuses == [200, 429, 200]


async def test_events_count_one_per_action(moe: Served, client: aiohttp.ClientSession) -> None:
    limit(moe, events_per_window=3)
    two = event("user-1", action("A"), action("B"))
    first = await post(client, moe.bulk, transition(two))
    over = await post(client, moe.bulk, transition(two))
    fits = await post(client, moe.bulk, transition(event("user-1", action("C"))))
    assert [first.status, over.status, fits.status] == [200, 429, 200]
    assert [e.action for e in moe.sandbox.events] == ["A", "B", "C"]


async def test_device_elements_count_as_users(moe: Served, client: aiohttp.ClientSession) -> None:
    limit(moe, users_per_window=2)
    first = await post(client, moe.bulk, transition(customer(), device()))
    over = await post(client, moe.bulk, transition(device(device_id="device-2")))
    assert [first.status, over.status] == [200, 429]
    assert list(moe.sandbox.devices) == [("user-1", "device-1")]


async def test_a_request_bigger_than_the_whole_budget_is_always_429(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=2)
    answer = await post(client, moe.bulk, transition(*(customer(f"u-{n}") for n in range(3))))
    assert answer.status == 429
    assert_untouched(moe.sandbox)


async def test_the_customer_endpoint_answers_its_own_429_body(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=1)
    await post(client, f"{moe.api}/customer/{WORKSPACE}", customer("u-a"))
    answer = await post(client, f"{moe.api}/customer/{WORKSPACE}", customer("u-b"))
    assert_error(answer, 429, "RateLimitError", "Rate limit exceeded")


async def test_retry_after_is_sent_only_when_enabled(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=1, send_retry_after=True)
    await post(client, moe.bulk, transition(customer("u-a")))
    answer = await post(client, moe.bulk, transition(customer("u-b")))
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "1"


# -- silent drops: answered 200, recorded, not stored ----------------------------------------


def only_drop(sandbox: MoengageSandbox) -> Any:
    [drop] = sandbox.drops
    return drop


@pytest.mark.parametrize(
    "customer_id",
    [*sorted(FORBIDDEN_CUSTOMER_IDS), " NULL ", "Guest", "N/A", "x", "   "],
)
async def test_forbidden_customer_ids_are_dropped_silently(
    moe: Served, client: aiohttp.ClientSession, customer_id: str
) -> None:
    answer = await post(
        client,
        moe.bulk,
        transition(customer(customer_id, name="A"), device(customer_id), event(customer_id)),
    )
    assert (answer.status, answer.body) == (200, ACCEPTED)
    assert (moe.sandbox.users, moe.sandbox.devices, moe.sandbox.events) == ({}, {}, [])
    assert [d.unit for d in moe.sandbox.drops] == ["customer", "device", "event"]
    assert all(d.customer_id == customer_id for d in moe.sandbox.drops)


def test_the_full_forbidden_list_of_the_contract_is_enforced() -> None:
    assert {
        "unknown",
        "guest",
        "null",
        "0",
        "1",
        "true",
        "false",
        "user_attribute_unique_id",
        "(empty)",
        "na",
        "n/a",
        "",
        "dummy_seller_code",
        "user_id",
        "id",
        "customer_id",
        "uid",
        "userid",
        "none",
        "-2",
        "-1",
        "2",
    } == FORBIDDEN_CUSTOMER_IDS


async def test_non_string_customer_id_is_dropped(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, moe.bulk, transition(customer(12345)))
    assert answer.status == 200
    assert moe.sandbox.users == {}
    assert only_drop(moe.sandbox).reason == "customer_id must be a string, got int"


@pytest.mark.parametrize("name", ["id", "_id", ""])
async def test_reserved_user_attribute_names_are_dropped(
    moe: Served, client: aiohttp.ClientSession, name: str
) -> None:
    answer = await post(client, moe.bulk, transition(customer(**{name: "x", "plan": "gold"})))
    assert answer.status == 200
    assert moe.sandbox.users == {"user-1": {"plan": "gold"}}
    drop = only_drop(moe.sandbox)
    assert (drop.unit, drop.name) == ("user_attribute", name)


async def test_moe_prefixed_custom_attributes_are_dropped_and_standard_ones_kept(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    sent = customer(moe_score=3, MOE_level=2, moe_unsubscribe=True, moe_mobile="491701234")
    answer = await post(client, moe.bulk, transition(sent))
    assert answer.status == 200
    assert moe.sandbox.users == {"user-1": {"moe_unsubscribe": True, "moe_mobile": "491701234"}}
    assert sorted(d.name or "" for d in moe.sandbox.drops) == ["MOE_level", "moe_score"]


@pytest.mark.parametrize("platform", ["Android", "ios", "IOS", "Windows", "WEB", None])
async def test_device_platform_outside_the_four_is_dropped(
    moe: Served, client: aiohttp.ClientSession, platform: str | None
) -> None:
    answer = await post(client, moe.bulk, transition(customer(), device(platform=platform)))
    assert answer.status == 200
    assert moe.sandbox.devices == {}
    assert only_drop(moe.sandbox).reason == "'platform' is not a valid platform."


@pytest.mark.parametrize("platform", ["ANDROID", "iOS", "web", "TV"])
async def test_device_platforms_of_the_contract_are_accepted(
    moe: Served, client: aiohttp.ClientSession, platform: str
) -> None:
    await post(client, moe.bulk, transition(customer(), device(platform=platform)))
    assert moe.sandbox.devices[("user-1", "device-1")]["platform"] == platform
    assert moe.sandbox.drops == []


async def test_device_without_push_id_is_dropped(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    sent = device()
    del sent["attributes"]["push_id"]
    answer = await post(client, moe.bulk, transition(customer(), sent))
    assert answer.status == 200
    assert moe.sandbox.devices == {}
    assert only_drop(moe.sandbox).reason == "'push_id' is not found in payload"


async def test_device_without_device_id_is_dropped(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    sent = device()
    del sent["device_id"]
    await post(client, moe.bulk, transition(customer(), sent))
    assert moe.sandbox.devices == {}
    assert only_drop(moe.sandbox).reason == "'device_id' is not found in the payload"


async def test_device_before_its_customer_is_dropped_and_after_it_accepted(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(
        client, moe.bulk, transition(device("user-1"), customer("user-1"), device("user-1"))
    )
    assert answer.status == 200
    assert list(moe.sandbox.devices) == [("user-1", "device-1")]
    drop = only_drop(moe.sandbox)
    assert (drop.unit, drop.reason) == (
        "device",
        "device for an unknown user (no customer element before it)",
    )


@pytest.mark.parametrize("offset", [54001, -54001, "19800", True])
async def test_event_with_timezone_offset_out_of_range_or_not_a_number_is_dropped(
    moe: Served, client: aiohttp.ClientSession, offset: Any
) -> None:
    sent = event("user-1", action("Bad", user_timezone_offset=offset), action("Good"))
    answer = await post(client, moe.bulk, transition(sent))
    assert answer.status == 200
    assert [e.action for e in moe.sandbox.events] == ["Good"]
    drop = only_drop(moe.sandbox)
    assert (drop.unit, drop.name) == ("event", "Bad")


@pytest.mark.parametrize("offset", [54000, -54000, 19800, 0])
async def test_event_with_timezone_offset_in_range_is_accepted(
    moe: Served, client: aiohttp.ClientSession, offset: int
) -> None:
    await post(client, moe.bulk, transition(event("user-1", action(user_timezone_offset=offset))))
    assert len(moe.sandbox.events) == 1
    assert moe.sandbox.drops == []


@pytest.mark.parametrize(
    "when",
    [
        "2999-01-01T00:00:00Z",
        "2999-01-01T00:00:00+05:30",
        32503680000,  # 3000-01-01 in epoch seconds
        "32503680000000",  # in milliseconds
    ],
)
async def test_future_events_are_dropped(
    moe: Served, client: aiohttp.ClientSession, when: Any
) -> None:
    sent = event("user-1", action("Future", current_time=when), action("Past"))
    await post(client, moe.bulk, transition(sent))
    assert [e.action for e in moe.sandbox.events] == ["Past"]
    assert "in the future" in only_drop(moe.sandbox).reason


@pytest.mark.parametrize(
    ("when", "at"),
    [
        ("2020-05-31T16:33:35Z", "2020-05-31T16:33:35Z"),
        ("2020-10-16T13:40:12.791+05:30", "2020-10-16T08:10:12.791000Z"),
        (1590404615, "2020-05-25T11:03:35Z"),
        ("1590404615", "2020-05-25T11:03:35Z"),
        ("1712567385726", "2024-04-08T09:09:45.726000Z"),
    ],
)
async def test_past_event_times_are_accepted_in_every_documented_form(
    moe: Served, client: aiohttp.ClientSession, when: Any, at: str
) -> None:
    await post(client, moe.bulk, transition(event("user-1", action(current_time=when))))
    assert [e.at for e in moe.sandbox.events] == [at]
    assert moe.sandbox.events[0].current_time == when


async def test_user_time_with_offset_gives_the_utc_time(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    sent = {"action": "Local", "user_time": "2020-05-31T22:03:35Z", "user_timezone_offset": 19800}
    await post(client, moe.bulk, transition(event("user-1", sent)))
    assert [e.at for e in moe.sandbox.events] == ["2020-05-31T16:33:35Z"]


async def test_event_without_times_happens_when_received(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    before = time.time()
    await post(client, moe.bulk, transition(event("user-1", {"action": "Now"})))
    [stored] = moe.sandbox.events
    assert before - 1 <= datetime.fromisoformat(stored.at).timestamp() <= time.time()


async def test_unparseable_event_time_is_dropped(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    await post(client, moe.bulk, transition(event("user-1", action(current_time="yesterday"))))
    assert moe.sandbox.events == []
    assert "neither ISO 8601 nor epoch seconds" in only_drop(moe.sandbox).reason


@pytest.mark.parametrize("name", ["moe_app_opened", "MOE_Custom", "id", "userId"])
async def test_reserved_or_moe_prefixed_event_names_are_dropped(
    moe: Served, client: aiohttp.ClientSession, name: str
) -> None:
    await post(client, moe.bulk, transition(event("user-1", action(name))))
    assert moe.sandbox.events == []
    assert (only_drop(moe.sandbox).unit, only_drop(moe.sandbox).name) == ("event", name)


@pytest.mark.parametrize("name", ["id", "_id", "userId", "", "moe_source"])
async def test_reserved_or_moe_prefixed_event_attributes_are_dropped(
    moe: Served, client: aiohttp.ClientSession, name: str
) -> None:
    sent = action(attributes={name: 1, "price": 3999})
    await post(client, moe.bulk, transition(event("user-1", sent)))
    assert [e.attributes for e in moe.sandbox.events] == [{"price": 3999}]
    assert (only_drop(moe.sandbox).unit, only_drop(moe.sandbox).name) == ("event_attribute", name)


async def test_update_existing_only_does_not_create_unknown_users(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    new = {**customer("user-new", plan="gold"), "update_existing_only": True}
    known = {**customer("user-1", plan="gold"), "update_existing_only": True}
    await post(client, moe.bulk, transition(customer("user-1", plan="free"), new, known))
    assert moe.sandbox.users == {"user-1": {"plan": "gold"}}
    assert only_drop(moe.sandbox).customer_id == "user-new"


async def test_object_attributes_are_dropped_unless_the_workspace_allows_them(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    attributes = {"address": {"city": "Berlin"}, "orders": [{"id": 1}], "tags": ["a", "b"]}
    await post(client, moe.bulk, transition(customer("user-1", **attributes)))
    moe.sandbox.settings = replace(moe.sandbox.settings, object_attributes=True)
    await post(client, moe.bulk, transition(customer("user-2", **attributes)))
    assert moe.sandbox.users["user-1"] == {"tags": ["a", "b"]}
    assert moe.sandbox.users["user-2"] == attributes
    assert sorted(d.name or "" for d in moe.sandbox.drops) == ["address", "orders"]


async def test_long_values_are_truncated_and_long_urls_dropped(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    long_text, long_url = "x" * 600, "https://example.com/" + "p" * 600
    await post(client, moe.bulk, transition(customer(bio=long_text, link=long_url)))
    assert moe.sandbox.users == {"user-1": {"bio": "x" * 512}}
    outcomes = {d.name: d.outcome for d in moe.sandbox.drops}
    assert outcomes == {"bio": "truncated", "link": "dropped"}


@pytest.mark.parametrize(
    "platforms",
    [
        [{"platform": "ANDROID", "active": True}],
        [{"platform": "Android", "active": "true"}],
        [{"platform": "TV", "active": "true"}],
        {"platform": "web"},
    ],
)
async def test_invalid_user_platforms_are_dropped(
    moe: Served, client: aiohttp.ClientSession, platforms: Any
) -> None:
    await post(client, moe.bulk, transition(customer(name="A", platforms=platforms)))
    assert moe.sandbox.users == {"user-1": {"name": "A"}}
    assert only_drop(moe.sandbox).name == "platforms"


async def test_top_level_platforms_are_accepted_like_attribute_platforms(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    platforms = [{"platform": "iOS", "active": "true"}]
    await post(client, moe.bulk, transition({**customer(), "platforms": platforms}))
    assert moe.sandbox.users == {"user-1": {"platforms": platforms}}


async def test_create_only_attributes_are_not_updated(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    await post(client, moe.bulk, transition(customer(publisher_name="Ads", name="A")))
    await post(client, moe.bulk, transition(customer(publisher_name="Other", name="B")))
    assert moe.sandbox.users == {"user-1": {"publisher_name": "Ads", "name": "B"}}
    assert only_drop(moe.sandbox).name == "publisher_name"


async def test_moe_push_opted_must_be_the_string_true_or_false(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    good = device(device_id="good", moe_push_opted="True")
    bad = device(device_id="bad", moe_push_opted=True)
    await post(client, moe.bulk, transition(customer(), good, bad))
    assert moe.sandbox.devices[("user-1", "good")]["moe_push_opted"] == "True"
    assert "moe_push_opted" not in moe.sandbox.devices[("user-1", "bad")]
    assert only_drop(moe.sandbox).unit == "device_attribute"


async def test_bulk_soft_limit_drops_every_element_of_a_bigger_body(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.settings = replace(moe.sandbox.settings, bulk_soft_limit_bytes=100_000)
    big = padded(transition(customer(), event()), 100_001)
    answer = await post(client, moe.bulk, raw=big)
    assert (answer.status, answer.body) == (200, ACCEPTED)
    assert (moe.sandbox.users, moe.sandbox.events) == ({}, [])
    assert [d.unit for d in moe.sandbox.drops] == ["customer", "event"]


# -- state -------------------------------------------------------------------------------------


async def test_users_are_upserted_with_attributes_merged(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    await post(client, moe.bulk, transition(customer(name="Ann", plan="free")))
    await post(client, moe.bulk, transition(customer(plan="gold", points=20)))
    assert moe.sandbox.users == {"user-1": {"name": "Ann", "plan": "gold", "points": 20}}


async def test_devices_are_upserted_by_customer_and_device_id(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    await post(client, moe.bulk, transition(customer(), device(model="A"), device(os="17")))
    await post(client, moe.bulk, transition(device(device_id="device-2")))
    assert moe.sandbox.devices == {
        ("user-1", "device-1"): {
            "platform": "ANDROID",
            "push_id": "token-1",
            "model": "A",
            "os": "17",
        },
        ("user-1", "device-2"): {"platform": "ANDROID", "push_id": "token-1"},
    }


async def test_events_are_never_deduplicated(moe: Served, client: aiohttp.ClientSession) -> None:
    body = transition(event("user-1", action("Bought"), action("Bought")))
    await post(client, moe.bulk, body)
    await post(client, moe.bulk, body)
    assert [(e.action, e.request) for e in moe.sandbox.events] == [
        ("Bought", 1),
        ("Bought", 1),
        ("Bought", 2),
        ("Bought", 2),
    ]


async def test_event_device_defaults_to_the_customer_and_creates_the_user(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    with_device = {**event("user-2"), "device_id": "device-9"}
    await post(client, moe.bulk, transition(event("user-1"), with_device))
    assert [(e.customer_id, e.device_id) for e in moe.sandbox.events] == [
        ("user-1", "user-1"),
        ("user-2", "device-9"),
    ]
    assert moe.sandbox.users == {"user-1": {}, "user-2": {}}


async def test_every_request_is_logged_with_size_units_and_time(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    body = transition(customer(), device(), event("user-1", action("A"), action("B")))
    sent = json.dumps(body).encode()
    started = time.monotonic()
    await post(client, moe.bulk, raw=sent)
    await post(client, f"{moe.api}/transition/OTHER", body)
    log = moe.sandbox.requests
    assert [(r.number, r.method, r.path, r.status) for r in log] == [
        (1, "POST", f"/v1/transition/{WORKSPACE}", 200),
        (2, "POST", "/v1/transition/OTHER", 409),
    ]
    assert (log[0].body_bytes, log[0].users, log[0].events) == (len(sent), 2, 2)
    assert started <= log[0].at <= log[1].at <= time.monotonic()
    assert log[0].request_id is None
    assert log[1].request_id is not None
    assert log[1].error_type == "Authentication required."


async def test_state_endpoint_shows_everything_without_auth_and_is_not_logged(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    await post(client, moe.bulk, transition(customer(name="A"), device(), event(), customer("0")))
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(f"{moe.root_url}/_sandbox/state") as response,
    ):
        state = await response.json()
    assert response.status == 200
    assert state["workspace_id"] == WORKSPACE
    assert state["counts"] == {"users": 1, "devices": 1, "events": 1, "drops": 1, "requests": 1}
    assert state["users"] == {"user-1": {"name": "A"}}
    assert state["devices"] == [
        {
            "customer_id": "user-1",
            "device_id": "device-1",
            "attributes": {"platform": "ANDROID", "push_id": "token-1"},
        }
    ]
    assert state["events"][0]["action"] == "Viewed"
    assert state["events"][0]["at"] == PAST
    assert state["drops"][0]["customer_id"] == "0"
    assert state["drops"][0]["unit"] == "customer"
    assert state["requests"][0]["status"] == 200
    assert len(moe.sandbox.requests) == 1


async def test_reset_endpoint_forgets_everything(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    limit(moe, users_per_window=1)
    await post(client, moe.bulk, transition(customer()))
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.post(f"{moe.root_url}/_sandbox/reset") as response,
    ):
        assert response.status == 200
    assert_untouched(moe.sandbox)
    assert moe.sandbox.requests == []
    assert (await post(client, moe.bulk, transition(customer()))).status == 200  # budget too


# -- single endpoints and export ---------------------------------------------------------------


async def test_single_customer_device_and_event_endpoints_apply_like_bulk(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answers = [
        await post(client, f"{moe.api}/customer/{WORKSPACE}", customer(name="A")),
        await post(client, f"{moe.api}/device/{WORKSPACE}", device()),
        await post(client, f"{moe.api}/event/{WORKSPACE}", event()),
    ]
    assert [(a.status, a.body) for a in answers] == [(200, ACCEPTED)] * 3
    assert moe.sandbox.users == {"user-1": {"name": "A"}}
    assert list(moe.sandbox.devices) == [("user-1", "device-1")]
    assert len(moe.sandbox.events) == 1
    assert [(r.users, r.events) for r in moe.sandbox.requests] == [(1, 0), (1, 0), (0, 1)]


async def test_single_device_endpoint_answers_the_documented_400s(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, f"{moe.api}/device/{WORKSPACE}", device(platform="Windows"))
    assert_error(answer, 400, "ValueError", "'platform' is not a valid platform.")


async def test_single_endpoint_with_another_elements_type_is_400(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, f"{moe.api}/event/{WORKSPACE}", customer())
    assert_error(answer, 400, "AttributeError", "type should be event")


async def test_single_customer_with_empty_id_is_400(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    answer = await post(client, f"{moe.api}/customer/{WORKSPACE}", customer(""))
    assert_error(
        answer, 400, "MissingAttributeError", "customer_id can not be empty Unicode String"
    )


async def test_export_reads_back_users_and_lists_the_missing(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    await post(client, moe.bulk, transition(customer(name="Ann", plan="gold")))
    query = {
        "data": {
            "identifiers": [
                {"identifier_type": "customer_id", "identifier": "user-1"},
                {"identifier_type": "customer_id", "identifier": "nobody"},
            ],
            "user_fields_to_export": ["customer_id", "name"],
        }
    }
    answer = await post(client, f"{moe.api}/customers/export?app_id={WORKSPACE}", query)
    assert answer.status == 200
    assert answer.body["data"] == {
        "users_not_found": [{"identifier_type": "customer_id", "identifier": "nobody"}],
        "users": [{"user_attributes": {"customer_id": "user-1", "name": "Ann"}}],
    }


async def test_export_of_more_than_twenty_users_is_400(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    ids = [{"identifier_type": "customer_id", "identifier": f"u{n}"} for n in range(21)]
    url = f"{moe.api}/customers/export?app_id={WORKSPACE}"
    answer = await post(client, url, {"data": {"identifiers": ids}})
    assert_error(answer, 400, "LimitBreached", "max limit allowed is 20")


async def test_unknown_paths_are_404_and_other_methods_405(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    missing = await post(client, f"{moe.api}/customer/merge?app_id={WORKSPACE}", {})
    async with client.get(moe.bulk) as response:
        wrong_method = response.status
    assert missing.status == 404
    assert wrong_method == 405


# -- faults ------------------------------------------------------------------------------------


async def test_fail_next_answers_500_in_the_envelope_then_recovers(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.faults.fail_next = 1
    failed = await post(client, moe.bulk, transition(customer("u-a")))
    fine = await post(client, moe.bulk, transition(customer("u-b")))
    assert_error(
        failed,
        500,
        "ServerError",
        "An unexpected error was encountered while processing this request. "
        "Please contact MoEngage Team",
    )
    assert fine.status == 200
    assert list(moe.sandbox.users) == ["u-b"]


async def test_fail_next_with_a_gateway_status_answers_html(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.faults.fail_next = 2
    moe.sandbox.faults.fail_status = 502
    statuses = [(await post(client, moe.bulk, transition(customer()))).status for _ in "abc"]
    assert statuses == [502, 502, 200]
    assert moe.sandbox.faults.fail_next == 0


async def test_slow_next_delays_the_answer(moe: Served, client: aiohttp.ClientSession) -> None:
    moe.sandbox.faults.slow_next = 1
    moe.sandbox.faults.slow_s = 0.3
    started = time.monotonic()
    slow = await post(client, moe.bulk, transition(customer()))
    slow_s = time.monotonic() - started
    started = time.monotonic()
    await post(client, moe.bulk, transition(customer()))
    assert slow.status == 200
    assert slow_s >= 0.3 > time.monotonic() - started


async def test_slow_next_times_out_before_anything_is_applied(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.faults.slow_next = 1
    moe.sandbox.faults.slow_s = 0.3
    with pytest.raises(asyncio.TimeoutError):
        await post(client, moe.bulk, transition(event()), timeout_s=0.1)
    await asyncio.sleep(0.3)  # past slow_s: the abandoned request is not processed late either
    assert moe.sandbox.events == []
    assert [r.status for r in moe.sandbox.requests] == [0]


async def test_timeout_after_processing_applies_the_body_so_a_retry_duplicates_events(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.faults.timeout_after_processing_next = 1
    moe.sandbox.faults.slow_s = 0.3
    body = transition(customer(), event())
    with pytest.raises(asyncio.TimeoutError):
        await post(client, moe.bulk, body, timeout_s=0.1)
    assert len(moe.sandbox.events) == 1  # applied although the client saw no answer
    retried = await post(client, moe.bulk, body)
    assert retried.status == 200
    assert [e.request for e in moe.sandbox.events] == [1, 2]
    assert moe.sandbox.requests[0].status == 200


async def test_reset_next_closes_the_connection_without_applying(
    moe: Served, client: aiohttp.ClientSession
) -> None:
    moe.sandbox.faults.reset_next = 1
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(client, moe.bulk, transition(customer(), event()))
    fine = await post(client, moe.bulk, transition(customer("u-b")))
    assert fine.status == 200
    assert list(moe.sandbox.users) == ["u-b"]
    assert [r.status for r in moe.sandbox.requests] == [0, 200]
