"""The MoEngage Data API simulator: an aiohttp.web app strict to MoEngage's documented contract.

The contract, with its sources, is in docs/vendors/moengage.md. It serves bulk import
(`POST /v1/transition/{workspace_id}`), the single customer, device and event endpoints and
`POST /v1/customers/export`. It checks what the contract documents: Basic auth plus an optional
MOE-APPKEY (401), the workspace in the path (409), Content-Type (415), body size (413), the
documented 400s, and per-workspace user and event budgets (429, nothing applied). Like MoEngage
it answers 200 for elements it then drops; each drop is recorded with its reason in
`MoengageSandbox.drops` (the rules are in `moengage_rules.py`). `GET /_sandbox/state` shows the
whole workspace without auth.

One concept: the simulated workspace and the endpoints that change it, which share its
state and budgets; the rules it applies are ``moengage_rules.py``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import random
import re
import string
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from syncer.sandbox.moengage_rules import (
    BadRequest,
    Drop,
    Event,
    Problem,
    Workspace,
    decode_body,
    device_problem,
    element_problem,
    missing,
    transition_elements,
    units,
)

_DATA_PATH = re.compile(r"/v1/(customer|device|event|transition)/([^/]*)/?")
_EXPORT_PATH = "/v1/customers/export"
_SUCCESS = {
    "status": "success",
    "message": "Your request has been accepted and will be processed soon.",
}
# /v1/customer/merge and /v1/customer/delete exist in MoEngage but are not simulated.
_UNSIMULATED = frozenset({"merge", "delete"})
_MAX_EXPORT_IDENTIFIERS = 20
_REQUEST_ID_CHARS = string.ascii_letters + string.digits
_request_ids = random.Random()


@dataclass(frozen=True)
class MoengageSandboxSettings:
    """How the simulated workspace behaves; replace the whole object to change it."""

    workspace_id: str = "SANDBOXWORKSPACE1"
    api_key: str = "sandbox-moengage-key"
    max_body_bytes: int = 128 * 1024  # data overview: 128 KB at most (413)
    # The older Data API overview's 1,000 users and 10,000 events per minute, the strictest of the
    # published figures; users are customer plus device elements, events are actions.
    users_per_window: int = 1000
    events_per_window: int = 10000
    window_s: float = 60.0
    # "sliding" is stricter than any fixed window: whatever passes it passes a per-minute
    # counter however that counter is aligned. "fixed" windows start at multiples of window_s.
    rate_window: Literal["sliding", "fixed"] = "sliding"
    send_retry_after: bool = False  # no Retry-After is documented
    # MoEngage checks MOE-APPKEY when present; True also rejects requests without it.
    require_appkey_header: bool = False
    # Whether one structurally bad element fails the whole batch is not documented.
    # "reject_batch" answers 400 and applies nothing; "drop_element" drops just that element.
    structural_errors: Literal["reject_batch", "drop_element"] = "reject_batch"
    object_attributes: bool = False  # the workspace's Object Data Type feature
    future_tolerance_s: float = 0.0  # event times later than receipt plus this are dropped
    # Bulk bodies above this many bytes (the documented 100 KB) are accepted with 200 and
    # every element dropped; None turns the check off.
    bulk_soft_limit_bytes: int | None = None


@dataclass
class MoengageFaults:
    """Switches tests flip while the server runs; each `*_next` counts down as it is used."""

    fail_next: int = 0  # the next N requests answer `fail_status`, nothing applied
    fail_status: int = 500
    # The next N requests wait `slow_s` before being processed; one whose client has gone by
    # then is not processed at all.
    slow_next: int = 0
    slow_s: float = 0.0
    # The next N requests are processed (applied to the state) and then stall `slow_s` before
    # answering: the ambiguous timeout after the body was sent and acted on.
    timeout_after_processing_next: int = 0
    reset_next: int = 0  # the next N requests: body read, connection closed, nothing applied


@dataclass
class RequestRecord:
    """One request as received. `status` 0 means the connection was dropped unanswered; `path`
    is relative to the app; `users`/`events` are the rate-limit units the body carried;
    `request_id` is set on error answers only, as MoEngage does; `at` is time.monotonic()."""

    number: int
    method: str
    path: str
    status: int
    body_bytes: int
    users: int
    events: int
    at: float
    request_id: str | None = None
    error_type: str | None = None


@dataclass
class _Budget:
    # (at, users, events) of every admitted request younger than window_s.
    admitted: deque[tuple[float, int, int]] = field(default_factory=deque)


class _Refusal(Exception):
    """The request is answered with this error; nothing is applied."""

    def __init__(
        self, status: int, problem: Problem, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(problem.message)
        self.status = status
        self.problem = problem
        self.headers = dict(headers or {})


class MoengageSandbox:
    """One simulated MoEngage workspace: its settings, faults, data, drops and request log."""

    def __init__(self, settings: MoengageSandboxSettings | None = None) -> None:
        self.settings = settings if settings is not None else MoengageSandboxSettings()
        self.faults = MoengageFaults()
        self.workspace = Workspace()
        self.requests: list[RequestRecord] = []
        self._budgets: dict[str, _Budget] = {}

    def app(self) -> web.Application:
        """A fresh aiohttp app: the API under /v1 and the inspection routes under /_sandbox."""
        app = web.Application()
        app.router.add_get("/_sandbox/state", self._state_handler)
        app.router.add_post("/_sandbox/reset", self._reset_handler)
        # One catch-all route, so that every API request (404s and 405s too) is logged.
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @property
    def users(self) -> dict[str, dict[str, Any]]:
        """customer_id -> the user's merged attributes."""
        return self.workspace.users

    @property
    def devices(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(customer_id, device_id) -> the device's merged attributes."""
        return self.workspace.devices

    @property
    def events(self) -> list[Event]:
        """Every accepted action in arrival order, duplicates included."""
        return self.workspace.events

    @property
    def drops(self) -> list[Drop]:
        """Everything answered with 200 but not stored as sent, with the reason."""
        return self.workspace.drops

    def reset(self) -> None:
        """Forgets all data, drops, logged requests and rate-limit usage."""
        self.workspace.clear()
        self.requests.clear()
        self._budgets.clear()

    def state(self) -> dict[str, Any]:
        """The workspace as JSON-ready data: what `GET /_sandbox/state` answers."""
        return {
            "workspace_id": self.settings.workspace_id,
            "counts": {
                "users": len(self.users),
                "devices": len(self.devices),
                "events": len(self.events),
                "drops": len(self.drops),
                "requests": len(self.requests),
            },
            "users": {customer_id: dict(attrs) for customer_id, attrs in self.users.items()},
            "devices": [
                {"customer_id": customer_id, "device_id": device_id, "attributes": attributes}
                for (customer_id, device_id), attributes in self.devices.items()
            ],
            "events": [asdict(event) for event in self.events],
            "drops": [asdict(drop) for drop in self.drops],
            "requests": [asdict(record) for record in self.requests],
        }

    async def _state_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _reset_handler(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "success"})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = RequestRecord(
            number=len(self.requests) + 1,
            method=request.method,
            path="/" + request.match_info["tail"],
            status=0,
            body_bytes=0,
            users=0,
            events=0,
            at=time.monotonic(),
        )
        self.requests.append(record)
        body = await self._read_body(request, record)
        faults = self.faults
        if faults.reset_next > 0:
            faults.reset_next -= 1
            if request.transport is not None:
                request.transport.abort()
            # The transport is gone: aiohttp fails to write this and drops the request quietly.
            return web.Response()
        if faults.slow_next > 0:
            faults.slow_next -= 1
            await asyncio.sleep(faults.slow_s)
            if request.transport is None:
                # The client gave up while it waited: nothing is applied, status stays 0, so
                # that this fault stays unambiguous (timeout_after_processing_next is not).
                return web.Response()
        if faults.fail_next > 0:
            faults.fail_next -= 1
            response = _failure(faults.fail_status, record)
        else:
            try:
                response = self._answer(request, record, body)
            except _Refusal as refusal:
                response = _error(refusal.status, refusal.problem, record)
                response.headers.update(refusal.headers)
        record.status = response.status
        if faults.timeout_after_processing_next > 0:
            faults.timeout_after_processing_next -= 1
            await asyncio.sleep(faults.slow_s)
        return response

    async def _read_body(self, request: web.Request, record: RequestRecord) -> bytes:
        # Read the stream ourselves: request.read() would enforce the client_max_size of
        # whichever root app mounts this one. Bytes past the limit are counted, not kept.
        kept: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            if size <= self.settings.max_body_bytes:
                kept.append(chunk)
            size += len(chunk)
        record.body_bytes = size
        return b"".join(kept)

    def _answer(self, request: web.Request, record: RequestRecord, body: bytes) -> web.Response:
        """The response to an API request; raises _Refusal for every error answer."""
        match = _DATA_PATH.fullmatch(record.path)
        if (match is None and record.path != _EXPORT_PATH) or (
            match is not None and match.group(1) == "customer" and match.group(2) in _UNSIMULATED
        ):
            raise _Refusal(404, Problem(f"Not found: {record.path}", "Not Found"))
        if request.method != "POST":
            raise _Refusal(
                405,
                Problem(f"Method {request.method} not allowed", "Method Not Allowed"),
                {"Allow": "POST"},
            )
        kind = match.group(1) if match else "export"
        self._authenticate(request, path_workspace=match.group(2) if match else "")
        _check_content_type(request, kind)
        if record.body_bytes > self.settings.max_body_bytes:
            kib = self.settings.max_body_bytes // 1024
            raise _Refusal(413, Problem(f"Payload size exceeds {kib} KB", "PayloadTooLarge"))
        try:
            if kind == "export":
                return self._export(decode_body(body, bulk=False))
            return self._import(kind, decode_body(body, bulk=kind == "transition"), record)
        except BadRequest as bad:
            raise _Refusal(400, bad.problem) from None

    def _authenticate(self, request: web.Request, *, path_workspace: str) -> None:
        """Raises _Refusal with the documented 401, 400 or 409 unless the request may act
        on this workspace."""
        settings = self.settings
        user, password = _basic_credentials(request.headers.get("Authorization"))
        if user != settings.workspace_id:
            raise _unauthorized("Invalid APP_ID used in Authentication Header")
        if password != settings.api_key:
            raise _unauthorized(
                "App Secret key mismatch. Please login to the dashboard to verify key"
            )
        appkey = request.headers.get("MOE-APPKEY")
        if appkey is None and settings.require_appkey_header:
            raise _unauthorized("MOE-APPKEY is missing in Header")
        if appkey is not None and appkey != user:
            raise _unauthorized(
                "MOE_APPKEY doesn't match the Username (APP_KEY) used in Basic Auth authorization."
            )
        query_workspace = request.query.get("app_id")
        if not path_workspace and query_workspace is None:
            raise _Refusal(
                400, Problem("app_id is required in path/query params.", "ParamsRequired")
            )
        # As merge's 409: the workspace in the path or the app_id query (accepted and
        # otherwise ignored) differs from the Basic username.
        if any(ws not in (None, "", user) for ws in (path_workspace, query_workspace)):
            raise _Refusal(
                409,
                Problem(
                    "App key mismatch in params and authentication.", "Authentication required."
                ),
            )

    def _import(self, kind: str, body: dict[str, Any], record: RequestRecord) -> web.Response:
        """Validates, rate-limits and applies a bulk or single-element body."""
        settings = self.settings
        bulk = kind == "transition"
        elements = transition_elements(body) if bulk else [body]
        record.users, record.events = units(elements)
        bad: dict[int, Problem] = {}
        for index, element in enumerate(elements):
            problem = element_problem(element, expected_type=None if bulk else kind)
            if problem is not None:
                if not bulk or settings.structural_errors == "reject_batch":
                    raise BadRequest(problem)
                bad[index] = problem
        if not bulk:
            _check_single(kind, body)
        self._admit(record, kind)
        soft_limit = settings.bulk_soft_limit_bytes
        if bulk and soft_limit is not None and record.body_bytes > soft_limit:
            reason = f"bulk body over {soft_limit} bytes (bulk import: at most 100 KB)"
            for element in elements:
                self.workspace.drop_element(element, record.number, reason)
            return web.json_response(_SUCCESS)
        received_at = datetime.now(UTC)
        for index, element in enumerate(elements):
            if index in bad:
                self.workspace.drop_element(element, record.number, bad[index].message)
            else:
                self.workspace.apply(
                    element,
                    record.number,
                    received_at=received_at,
                    allow_objects=settings.object_attributes,
                    future_tolerance_s=settings.future_tolerance_s,
                )
        return web.json_response(_SUCCESS)

    def _admit(self, record: RequestRecord, kind: str) -> None:
        """Counts the request against the workspace's budgets, or raises the 429."""
        settings = self.settings
        window_s = settings.window_s
        now = time.monotonic()
        budget = self._budgets.setdefault(settings.workspace_id, _Budget())
        while budget.admitted and budget.admitted[0][0] <= now - window_s:
            budget.admitted.popleft()
        current = list(budget.admitted)
        if settings.rate_window == "fixed":
            start = math.floor(now / window_s) * window_s
            current = [entry for entry in current if entry[0] >= start]
        users = sum(entry[1] for entry in current) + record.users
        events = sum(entry[2] for entry in current) + record.events
        if users <= settings.users_per_window and events <= settings.events_per_window:
            budget.admitted.append((now, record.users, record.events))
            return
        if kind == "customer":
            problem = Problem("Rate limit exceeded", "RateLimitError")
        else:
            # /transition has no documented 429 body; the event and device one is used.
            problem = Problem(
                "Rate limits for customers exceeded. Please Try After Some Time",
                "Rate Limits Exceeded",
            )
        headers = {}
        if settings.send_retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(self._wait_s(current, users, events))))
        raise _Refusal(429, problem, headers)

    def _wait_s(self, current: list[tuple[float, int, int]], users: int, events: int) -> float:
        """Seconds until a request that brings the totals to users/events would fit."""
        settings = self.settings
        now = time.monotonic()
        if settings.rate_window == "fixed":
            return (math.floor(now / settings.window_s) + 1) * settings.window_s - now
        for at, entry_users, entry_events in current:
            users -= entry_users
            events -= entry_events
            if users <= settings.users_per_window and events <= settings.events_per_window:
                return at + settings.window_s - now
        return settings.window_s  # too big for any window: it will never fit

    def _export(self, body: dict[str, Any]) -> web.Response:
        """`POST /v1/customers/export`: up to 20 users by customer_id, for read-back."""
        data = body.get("data")
        if not isinstance(data, dict):
            raise BadRequest(missing("data", bulk=False))
        identifiers = data.get("identifiers")
        if not isinstance(identifiers, list):
            raise BadRequest(missing("identifiers", bulk=False))
        if len(identifiers) > _MAX_EXPORT_IDENTIFIERS:
            raise BadRequest(
                Problem(f"max limit allowed is {_MAX_EXPORT_IDENTIFIERS}", "LimitBreached", "users")
            )
        fields = data.get("user_fields_to_export")
        found: list[dict[str, Any]] = []
        not_found: list[Any] = []
        for identifier in identifiers:
            customer_id = identifier.get("identifier") if isinstance(identifier, dict) else None
            # Only customer_id lookups are simulated; MoEngage's internal "id" never matches.
            if not isinstance(customer_id, str) or customer_id not in self.users:
                not_found.append(identifier)
                continue
            user = {"customer_id": customer_id, **self.users[customer_id]}
            if isinstance(fields, list) and fields:
                user = {name: value for name, value in user.items() if name in fields}
            found.append({"user_attributes": user})
        return web.json_response(
            {
                "status": "success",
                "type": "export_users",
                "data": {"users_not_found": not_found, "users": found},
            }
        )


def _basic_credentials(header: str | None) -> tuple[str, str]:
    """(username, password) from a Basic Authorization header; raises the documented 401s."""
    if header is None:
        raise _unauthorized("Authentication Header Required")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(
            "Invalid authorization used. MoEngage only supports 'Basic Auth' authorization."
        )
    if not encoded.strip():
        raise _unauthorized("Authorization details are missing")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("Invalid identity information found") from None
    user, _, password = decoded.partition(":")
    if not user:
        raise _unauthorized("Username (APP_KEY) is missing in the Basic Auth authorization.")
    if not password:
        raise _unauthorized("Password (APP_SECRET) is missing in the Basic Auth authorization.")
    return user, password


def _unauthorized(message: str) -> _Refusal:
    return _Refusal(401, Problem(message, "Authentication required"))


def _check_content_type(request: web.Request, kind: str) -> None:
    """Raises the 415 unless the body is declared application/json."""
    header = request.headers.get("Content-Type")
    if header is None:
        raise _Refusal(
            415,
            Problem(
                "The header 'Content-Type' is missing. Kindly provide the header 'Content-Type' "
                "and set it as 'application/json'",
                "MediaTypeError",
            ),
        )
    if request.content_type != "application/json":
        if kind in ("customer", "export"):
            raise _Refusal(415, Problem("Unsupported Media Type", "MediaTypeError"))
        raise _Refusal(415, Problem("Content type is not supported", "Unsupported media type"))


def _check_single(kind: str, element: dict[str, Any]) -> None:
    """The 400s the single endpoints document where bulk drops silently."""
    if kind == "device" and (problem := device_problem(element)) is not None:
        raise BadRequest(problem)
    customer_id = element["customer_id"]
    if isinstance(customer_id, str) and not customer_id.strip():
        raise BadRequest(
            Problem(
                "customer_id can not be empty Unicode String",
                "MissingAttributeError",
                "customer_id",
            )
        )


def _request_id() -> str:
    return "".join(_request_ids.choices(_REQUEST_ID_CHARS, k=8))


def _error(status: int, problem: Problem, record: RequestRecord) -> web.Response:
    """The documented error envelope, with a fresh 8-character request_id."""
    record.request_id = _request_id()
    record.error_type = problem.type
    error: dict[str, str] = {}
    if problem.attribute is not None:
        error["attribute"] = problem.attribute
    error.update(message=problem.message, type=problem.type, request_id=record.request_id)
    return web.json_response({"status": "fail", "error": error}, status=status)


def _failure(status: int, record: RequestRecord) -> web.Response:
    """A simulated failure: gateway errors as a proxy's HTML page, the rest in the envelope."""
    if status in (502, 503, 504):
        record.error_type = "gateway"
        reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[status]
        html = f"<html><head><title>{status} {reason}</title></head><body></body></html>"
        return web.Response(status=status, text=html, content_type="text/html")
    if status == 429:
        problem = Problem(
            "Rate limits for customers exceeded. Please Try After Some Time", "Rate Limits Exceeded"
        )
    elif status >= 500:
        problem = Problem(
            "An unexpected error was encountered while processing this request. "
            "Please contact MoEngage Team",
            "ServerError",
        )
    else:
        problem = Problem(f"Simulated failure ({status})", "SimulatedFailure")
    return _error(status, problem, record)
