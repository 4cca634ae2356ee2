"""A toy destination type, registered from outside ``syncer/``: ``type = "toy_sink"``.

It shows what a destination has to say for itself (``syncer.destinations.base``); the generic
load run (``syncer.runners.load``) does the rest. Its one model, ``items``, returns ``key`` and
``payload`` (by default from a table ``toy_items``). Bodies are ``{"items": [{"key": ...,
"payload": ...}, ...]}``, at most ``max_items`` items, POSTed to ``{base_url}/items`` with
``Authorization: Bearer <token>``. The answers: 200 takes the body; 400 with
``{"rejected": [keys], "reason": "..."}`` refuses those keys (dead letters) and takes the rest;
429 is throttling; 5xx is retried; 401/403/404 end the run.

Configuration::

    [destinations.sink]
    type = "toy_sink"
    base_url = "http://127.0.0.1:8080"
    token_env = "TOY_TOKEN"
    max_items = 10                                   # optional (default 100)
    rate_limit = { items = 1000, per_seconds = 1 }   # optional
    sql = "select key, payload from toy_items"       # optional
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import aiohttp
import orjson

from syncer import registry
from syncer.config import Secret, env_secret
from syncer.destinations import base
from syncer.http.client import Credential
from syncer.store.rate import Limit
from syncer.tomlspec import Key, duration, http_url, integer, nested, number, string

DEFAULT_SQL = "select key, payload from toy_items"
COLUMNS = (base.Column("key", base.TEXT), base.Column("payload", base.JSON))


@dataclass(frozen=True)
class ToyRateLimit:
    items: int = 1000
    per_seconds: float = 1.0


@dataclass(frozen=True)
class ToySettings:
    name: str
    base_url: str
    token: Secret
    max_items: int = 100
    rate_limit: ToyRateLimit = ToyRateLimit()
    sql: str = DEFAULT_SQL
    timeout_s: float = 10.0
    type: Literal["toy_sink"] = "toy_sink"

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.token,)


KEYS = (
    Key(
        "base_url",
        http_url,
        example='base_url = "http://127.0.0.1:8080"',
        help="the toy sink",
    ),
    Key(
        "token_env",
        env_secret("toy sink token"),
        attr="token",
        example='token_env = "TOY"',
        help="the environment variable holding the token",
    ),
    Key("max_items", integer(1), default=100, help="items per body"),
    Key(
        "rate_limit",
        nested(
            (
                Key("items", integer(1), default=1000, help="items per window"),
                Key("per_seconds", number(above=0), default=1.0, help="the window, in seconds"),
            ),
            ToyRateLimit,
        ),
        default=ToyRateLimit(),
        help="the sink's limit",
    ),
    Key("sql", string(), default=DEFAULT_SQL, help="the model's query over the warehouse"),
    Key(
        "timeout",
        duration(positive=True),
        default=10.0,
        attr="timeout_s",
        help="per request",
    ),
)


@dataclass(frozen=True)
class ToyItem:
    key: str
    payload: Any


class ToySink:
    """One configured toy sink, as the generic load run sees it."""

    vendor = "Toy sink"
    max_body_bytes = 1_000_000
    margin_s = 0.05
    max_attempts = 4
    hold_lost = False

    def __init__(self, settings: ToySettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.models = (
            base.Model("items", settings.sql.strip().rstrip(";"), "model.key::text", COLUMNS),
        )
        self.scope = f"toy:{settings.name}"
        rate = settings.rate_limit
        self.limits: Mapping[str, Limit] = {"items": Limit(rate.items, rate.per_seconds)}
        self.timeout_s = settings.timeout_s
        self.credential = Credential(
            self.vendor,
            settings.token.env,
            {"Authorization": f"Bearer {settings.token.value}"},
        )

    def item(
        self, model: base.Model, row: Mapping[str, Any], now: datetime, cuts: list[str]
    ) -> ToyItem:
        payload = row["payload"]
        payload = orjson.loads(payload) if isinstance(payload, str) else payload
        if payload is None:
            raise base.Invalid("no_payload", "the row's payload is null; give it a value")
        return ToyItem(row["_key"], payload)

    def payload(self, item: ToyItem) -> Any:
        return {"key": item.key, "payload": item.payload}

    def pack(
        self, items: Sequence[ToyItem], caps: Mapping[str, int]
    ) -> base.Body[ToyItem] | base.TooLarge:
        taken = tuple(items[: min(self.settings.max_items, caps["items"])])
        data = orjson.dumps({"items": [self.payload(i) for i in taken]})
        if len(data) > self.max_body_bytes:
            return base.TooLarge(f"the item needs {len(data)} bytes of a body")
        return base.Body(data, taken, {"items": len(taken)})

    async def deliver(
        self,
        session: aiohttp.ClientSession,
        body: base.Body[ToyItem],
        answered: Callable[[], Awaitable[None]],
    ) -> base.Delivery:
        return await base.post(
            session,
            f"{self.settings.base_url}/items",
            body,
            self.credential,
            answered,
            timeout_s=self.timeout_s,
            rejected=_rejected,
            headers={"Content-Type": "application/json"},
        )


def _rejected(status: int, raw: bytes) -> base.Rejected:
    """The toy sink names the keys it refuses (the rest of the body is taken)."""
    answer = orjson.loads(raw) if raw.startswith(b"{") else {}
    keys = answer.get("rejected")
    reason = f"the toy sink refused it (HTTP {status}): {answer.get('reason', 'no reason')}"
    return base.Rejected(
        f"http_{status}", reason, keys=frozenset(keys) if isinstance(keys, list) else None
    )


TYPE = registry.register_destination(
    registry.DestinationType(
        name="toy_sink",
        vendor=ToySink.vendor,
        keys=KEYS,
        build=ToySettings,
        models=("items",),
        check_detail=lambda settings: f"${settings.token.env} is set",
        destination=ToySink,
    )
)
