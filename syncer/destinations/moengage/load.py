"""MoEngage as a destination of the generic load run (``syncer.runners.load``): its models, rows
as validated elements, packed bodies, the POST and its answers.

The order of work for each row: the model's SQL says what it is; rows already acknowledged as
they are now (or dead-lettered as they are now) are skipped in SQL; the rest are validated, and
what MoEngage would silently drop goes to ``syncer.dead_letters`` with its reason; valid rows
are packed into bodies of at most ``max_request_bytes``; each body waits for the workspace's
shared rate limit, is journaled as in flight, sent, and its rows acknowledged in one
transaction once MoEngage answers 2xx.

Within one run a key is sent at most once: a later row of a key the run already met is
dead-lettered ``duplicate_key``. What MoEngage truncates (values over 512 characters, names over
200) is truncated the same way and sent; each cut is counted per model and attribute.

Throttling (429) and server errors (5xx) never cost a row: the body waits and is sent again, and
a body refused by 429 across a full window is re-packed smaller, under lower limits for the
rest of the run. A run that gives up fails and leaves the rows pending for the next one.

Ambiguity: a request that times out or loses its connection after the body left may have been
processed. MoEngage does not deduplicate events, so sending again may duplicate them; not
sending may lose them. Each such unanswered send is noted per key (``syncer.lost_answers``,
also for what a killed process left in ``syncer.inflight``), and every later send of those
events that MoEngage may have received is counted as a possible duplicate, across runs. With
``on_lost_answer = "resend"`` (the default: at least once) the events are sent again at once;
with ``"hold"`` (at most once) they wait until the user releases them
(``syncer load <destination> --release-held``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from syncer.destinations import base
from syncer.destinations.moengage import models
from syncer.destinations.moengage.elements import (
    DeviceRow,
    EventRow,
    Invalid,
    Options,
    UserRow,
    device_element,
    event_action,
    user_element,
)
from syncer.destinations.moengage.packing import Item, Oversized, pack
from syncer.destinations.moengage.settings import MODELS, MoengageSettings
from syncer.errors import AuthError, FatalError, RequestRejectedError
from syncer.http.client import Credential
from syncer.pacing import margin_for
from syncer.store.rate import Limit

__all__ = ["BODY_MARGIN_S", "MODELS", "MoengageDestination"]

KIND = {"users": "user", "devices": "device", "events": "event"}
KEY_EXPRESSIONS = {
    "users": "model.customer_id::text",
    "devices": "model.customer_id::text || chr(31) || model.device_id::text",
    "events": "model.event_key::text",
}
KEY_LABELS = {"users": "customer_id", "devices": "customer_id and device_id", "events": "event_key"}
BODY_MARGIN_S = 0.25


def _scope(settings: MoengageSettings) -> str:
    # The workspace id is kept out of the database: the scope names its digest.
    digest = hashlib.sha256(settings.workspace_id.value.encode()).hexdigest()[:16]
    return f"moengage:{digest}"


def _headers(settings: MoengageSettings) -> dict[str, str]:
    ws, key = settings.workspace_id.value, settings.api_key.value
    token = base64.b64encode(f"{ws}:{key}".encode()).decode()
    return {
        "Authorization": f"Basic {token}",
        "MOE-APPKEY": ws,
        "Content-Type": "application/json",
    }


def model_list(settings: MoengageSettings) -> tuple[base.Model, ...]:
    """The destination's models: the configured SQL or the default, in merge order."""
    out = []
    for name in MODELS:
        configured = getattr(settings, name)
        out.append(
            base.Model(
                name,
                models.model_sql(name, configured.sql if configured else None),
                key=KEY_EXPRESSIONS[name],
                columns=models.COLUMNS[name],
                order="model.customer_id::text",  # merged by customer: user, devices, events
                # MoEngage does not deduplicate events; users and devices are upserts.
                idempotent=name != "events",
                key_label=KEY_LABELS[name],
            )
        )
    return tuple(out)


class MoengageDestination:
    """One MoEngage workspace, as the generic load run (``syncer.runners.load``) sees it."""

    vendor = "MoEngage"

    def __init__(self, settings: MoengageSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.models = model_list(settings)
        self.scope = _scope(settings)
        rate = settings.rate_limit
        self.limits: Mapping[str, Limit] = {
            "users": Limit(rate.users, rate.per_seconds),
            "events": Limit(rate.events, rate.per_seconds),
        }
        # Bodies of 100 KB vary more than small GETs between taking their budget and being
        # counted by the server: a wider margin than the default.
        self.margin_s = max(BODY_MARGIN_S, margin_for(rate.per_seconds))
        self.max_body_bytes = settings.max_request_bytes
        self.timeout_s = settings.timeout_s
        self.max_attempts = settings.max_attempts
        self.hold_lost = settings.on_lost_answer == "hold"
        self.options = Options(flatten=settings.flatten)
        self.url = f"{settings.base_url}/transition/{settings.workspace_id.value}"
        self.timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self.credential = Credential(
            "MoEngage", settings.api_key.env, _headers(settings), fatal=_fatal(settings)
        )

    def item(
        self, model: base.Model, row: Mapping[str, Any], now: datetime, cuts: list[str]
    ) -> Item:
        try:
            return _item(model.name, row, self.options, now, cuts)
        except Invalid as exc:
            raise base.Invalid(exc.rule, exc.reason) from None

    def payload(self, item: Item) -> Any:
        return item.payload

    def pack(
        self, items: Sequence[Item], caps: Mapping[str, int]
    ) -> base.Body[Item] | base.TooLarge:
        packed = next(
            pack(
                items,
                max_request_bytes=self.settings.max_request_bytes,
                max_users=caps["users"],
                max_events=caps["events"],
            )
        )
        if isinstance(packed, Oversized):
            return base.TooLarge(
                f"the element alone needs a body of {packed.size} bytes, over "
                f"max_request_bytes = {self.settings.max_request_bytes}"
            )
        units = {"users": packed.users, "events": packed.events}
        return base.Body(packed.body, packed.items, units, packed)

    async def deliver(
        self,
        session: aiohttp.ClientSession,
        body: base.Body[Item],
        answered: Callable[[], Awaitable[None]],
    ) -> base.Delivery:
        """POST one bulk-import body; MoEngage's answer, as the generic run acts on it."""
        return await base.post(
            session,
            self.url,
            body,
            self.credential,
            answered,
            timeout_s=self.timeout_s,
            accepted=_accepted,
            rejected=_rejected,
        )


def _accepted(status: int, raw: bytes) -> bool:
    """A 2xx whose envelope does not say ``"status": "fail"``."""
    return 200 <= status < 300 and _answer(raw).get("status") != "fail"


def _rejected(status: int, raw: bytes) -> base.Rejected:
    error = _error_of(_answer(raw))
    message = str(error.get("message") or _answer(raw) or "no message")[:300]
    request_id = error.get("request_id")
    reason = f"MoEngage rejected the request (HTTP {status}): {message}" + (
        f" (request_id {request_id})" if request_id else ""
    )
    return base.Rejected(f"http_{status}", reason, request_id=request_id)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def _item(
    model: str, row: Mapping[str, Any], options: Options, now: datetime, cuts: list[str]
) -> Item:
    if model == "users":
        element = user_element(
            UserRow(row["customer_id"], _json(row["attributes"]), _json(row.get("platforms"))),
            options,
            cuts,
        )
    elif model == "devices":
        element = device_element(
            DeviceRow(row["customer_id"], row["device_id"], _json(row["attributes"])),
            options,
            cuts,
        )
    else:
        element = event_action(
            EventRow(
                row["event_key"],
                row["customer_id"],
                row["action"],
                row["occurred_at"],
                _json(row["attributes"]),
                platform=row.get("platform"),
                app_version=row.get("app_version"),
                user_timezone_offset=row.get("user_timezone_offset"),
                device_id=row.get("device_id"),
            ),
            options,
            now=now,
            cuts=cuts,
        )
    customer = str(row["customer_id"])
    return Item(KIND[model], row["_key"], customer, element)  # type: ignore[arg-type]


def _answer(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The ``error`` object of MoEngage's envelope, or an empty one."""
    error = answer.get("error")
    return error if isinstance(error, dict) else {}


def _fatal(settings: MoengageSettings) -> dict[int, Callable[[bytes], FatalError]]:
    """MoEngage's messages for the statuses no batch can get past: bad credentials, the wrong
    workspace, no endpoint (``Credential.fatal``)."""
    ws, key = settings.workspace_id.env, settings.api_key.env

    def message(body: bytes) -> str:
        return str(_error_of(_answer(body)).get("message") or "no message")[:200]

    def credentials(status: int) -> Callable[[bytes], FatalError]:
        return lambda body: AuthError(
            f"MoEngage rejected the credentials (HTTP {status}: {message(body)}); check that "
            f"{ws} holds the workspace (APP) id and {key} its data API key"
        )

    return {
        401: credentials(401),
        403: credentials(403),
        409: lambda body: AuthError(
            f"MoEngage says the workspace does not match the credentials (HTTP 409: "
            f"{message(body)}); check {ws} and base_url (the data center of the workspace)"
        ),
        404: lambda _body: RequestRejectedError(
            "MoEngage has no bulk import endpoint at base_url (HTTP 404); check base_url, "
            'e.g. "https://api-01.moengage.com/v1"'
        ),
    }
