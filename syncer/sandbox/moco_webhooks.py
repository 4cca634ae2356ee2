"""MOCO's webhooks, simulated: the sandbox POSTs its own changes, signed, to registered hooks.

As MOCO does (docs/vendors/moco.md): for each record created, updated or deleted through
`MocoData`, every enabled hook subscribed to its target and event gets a POST of the record's
JSON (a delete sends the record's last representation, an inference) with `X-Moco-Target`,
`X-Moco-Event`, `X-Moco-Timestamp` (epoch ms), `X-Moco-Signature` (hex HMAC-SHA256 of the body,
keyed by the hook's secret as ASCII), `X-Moco-User-Id` and `X-Moco-Account-Url`. Any answer
other than 2xx (or none within the timeout) is retried after a short backoff; 500 failures in
a row disable the hook (`disabled`, `disabled_at`).

Changes may be made from any thread (tests change the data while the sandbox serves on its own
loop): they are queued, and a sender task on the server's loop delivers them one at a time, in
order unless a fault says otherwise. Control routes on the MOCO app, like MoEngage's:
`POST /_sandbox/web_hooks` registers a hook (`{"url", "secret", "targets"?, "events"?}`),
`GET /_sandbox/web_hooks` shows hooks and deliveries, `POST /_sandbox/changes`
(`{"stream", "event", "n"}`) changes records, for trying `syncer webhooks serve` by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.moco_records import Record


def stream_targets(data: MocoData) -> dict[str, str]:
    """Each stream with webhook targets and the X-Moco-Target its changes are sent as (the
    catalog's first; a per-project list's twin, the same records, as its own)."""
    found = {s.name: s.webhook_targets[0] for s in data.catalog if s.webhook_targets}
    for twin, owner in data.others.twins.items():
        if owner in found:
            found[twin] = found[owner]
    return found


EVENTS = ("create", "update", "delete")
DISABLE_AFTER_FAILURES = 500


@dataclass
class Hook:
    """One registered web hook; `targets`/`events` None means all of them."""

    id: int
    url: str
    secret: str = field(repr=False)
    targets: frozenset[str] | None = None
    events: frozenset[str] | None = None
    disabled: bool = False
    disabled_at: float | None = None
    consecutive_failures: int = 0

    def wants(self, target: str, event: str) -> bool:
        return (
            not self.disabled
            and (self.targets is None or target in self.targets)
            and (self.events is None or event in self.events)
        )

    def to_json(self) -> dict[str, Any]:
        """The hook without its secret."""
        data = {k: v for k, v in asdict(self).items() if k != "secret"}
        for key in ("targets", "events"):
            data[key] = sorted(data[key]) if data[key] is not None else None
        return data


@dataclass
class WebhookFaults:
    """Switches tests flip; each `*_next` counts down as it is used."""

    bad_signature_next: int = 0  # the next N deliveries' first attempt is signed with a wrong key
    duplicate_next: int = 0  # the next N deliveries are sent twice
    # The next N deliveries are held back until N have gathered, then sent newest first.
    out_of_order_next: int = 0


@dataclass(frozen=True)
class Delivery:
    hook: Hook
    target: str
    event: str
    record_id: int
    timestamp_ms: int
    body: bytes


@dataclass
class DeliveryRecord:
    """One attempt as sent; `status` 0 means no answer (refused, reset or timed out)."""

    hook_id: int
    target: str
    event: str
    record_id: int
    timestamp_ms: int
    attempt: int
    signed: bool  # False: the bad-signature fault was applied
    status: int
    at: float  # time.monotonic()


class MocoWebhooks:
    """The hooks of one simulated account, its delivery queue, faults and delivery log."""

    def __init__(
        self,
        data: MocoData,
        *,
        user_id: int = 933_613_686,
        account_url: str = "sandbox.mocoapp.com",
        max_attempts: int = 5,
        retry_delay_s: float = 0.05,
        timeout_s: float = 10.0,
    ) -> None:
        self.data = data
        self.user_id = user_id
        self.account_url = account_url
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.timeout_s = timeout_s
        self.hooks: list[Hook] = []
        self.faults = WebhookFaults()
        self.deliveries: list[DeliveryRecord] = []
        self._queue: deque[Delivery] = deque()
        self._held: list[Delivery] = []
        self._sending = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def register(
        self,
        url: str,
        secret: str,
        *,
        targets: Iterable[str] | None = None,
        events: Iterable[str] | None = None,
    ) -> Hook:
        """Subscribes `url` to changes (all targets and events unless named); the hook."""
        hook = Hook(
            len(self.hooks) + 1,
            url,
            secret,
            frozenset(targets) if targets is not None else None,
            frozenset(events) if events is not None else None,
        )
        unknown = (hook.targets or frozenset()) - set(stream_targets(self.data).values())
        unknown |= (hook.events or frozenset()) - set(EVENTS)
        if unknown:
            raise ValueError(f"unknown targets or events {sorted(unknown)}")
        with self._lock:
            self.hooks.append(hook)
            if self.notify not in self.data.listeners:
                self.data.listeners.append(self.notify)
        return hook

    @property
    def pending(self) -> int:
        """Deliveries queued, held back or being sent."""
        with self._lock:
            return len(self._queue) + len(self._held) + self._sending

    def notify(self, stream: str, event: str, records: list[Record], at_ms: int) -> None:
        """`MocoData`'s listener: queues a delivery per record and hook (from any thread)."""
        target = stream_targets(self.data).get(stream)
        if target is None:
            return  # MOCO sends no webhook for this stream
        hooks = [hook for hook in self.hooks if hook.wants(target, event)]
        if not hooks:
            return
        with self._lock:
            for record in records:
                body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
                for hook in hooks:
                    self._queue.append(Delivery(hook, target, event, record["id"], at_ms, body))
        self._poke()

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def install(self, app: web.Application) -> None:
        """Adds the control routes and the sender task to the MOCO app (before its catch-all)."""
        app.router.add_get("/_sandbox/web_hooks", self._list_handler)
        app.router.add_post("/_sandbox/web_hooks", self._register_handler)
        app.router.add_post("/_sandbox/changes", self._changes_handler)
        app.cleanup_ctx.append(self._sender)

    async def _sender(self, app: web.Application) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()  # whatever was queued before the server started
        task = asyncio.create_task(self._send_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._loop = self._wake = None

    async def _send_forever(self) -> None:
        assert self._wake is not None
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while batch := self._next_batch():
                    for delivery in batch:
                        try:
                            copies = 2 if self._take("duplicate_next") else 1
                            for _ in range(copies):
                                await self._deliver(session, delivery)
                        finally:
                            with self._lock:
                                self._sending -= 1

    def _next_batch(self) -> list[Delivery]:
        """The deliveries to send now, counted as being sent; [] when none."""
        with self._lock:
            while self._queue:
                delivery = self._queue.popleft()
                if self.faults.out_of_order_next <= 0:
                    self._sending += 1
                    return [delivery]
                self._held.append(delivery)
                if len(self._held) >= self.faults.out_of_order_next:
                    batch, self._held = self._held[::-1], []
                    self.faults.out_of_order_next = 0
                    self._sending += len(batch)
                    return batch
            return []

    def _take(self, fault: str) -> bool:
        with self._lock:
            left: int = getattr(self.faults, fault)
            if left > 0:
                setattr(self.faults, fault, left - 1)
            return left > 0

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        hook = delivery.hook
        for attempt in range(1, self.max_attempts + 1):
            if hook.disabled:
                return
            signed = not (attempt == 1 and self._take("bad_signature_next"))
            key = hook.secret if signed else hook.secret[::-1] + "x"
            headers = {
                "Content-Type": "application/json",
                "X-Moco-Target": delivery.target,
                "X-Moco-Event": delivery.event,
                "X-Moco-Timestamp": str(delivery.timestamp_ms),
                "X-Moco-Signature": hmac.new(
                    key.encode(), delivery.body, hashlib.sha256
                ).hexdigest(),
                "X-Moco-User-Id": str(self.user_id),
                "X-Moco-Account-Url": self.account_url,
            }
            status = 0
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.post(hook.url, data=delivery.body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
            self.deliveries.append(
                DeliveryRecord(
                    hook.id,
                    delivery.target,
                    delivery.event,
                    delivery.record_id,
                    delivery.timestamp_ms,
                    attempt,
                    signed,
                    status,
                    time.monotonic(),
                )
            )
            if 200 <= status < 300:
                hook.consecutive_failures = 0
                return
            hook.consecutive_failures += 1
            if hook.consecutive_failures >= DISABLE_AFTER_FAILURES:
                hook.disabled, hook.disabled_at = True, time.time()
                return
            await asyncio.sleep(self.retry_delay_s * attempt)

    # --- control routes ------------------------------------------------------------------------

    async def _list_handler(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "hooks": [hook.to_json() for hook in self.hooks],
                "pending": self.pending,
                "deliveries": [asdict(d) for d in self.deliveries],
            }
        )

    async def _register_handler(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        url, secret = body.get("url"), body.get("secret")
        if not isinstance(url, str) or not isinstance(secret, str) or not url or not secret:
            return _error(422, 'send {"url": "http://...", "secret": "...", "targets"?, "events"?}')
        try:
            hook = self.register(
                url, secret, targets=body.get("targets"), events=body.get("events")
            )
        except (TypeError, ValueError) as exc:
            return _error(422, str(exc))
        return web.json_response(hook.to_json(), status=201)

    async def _changes_handler(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        stream, event, n = body.get("stream"), body.get("event"), body.get("n", 1)
        streams = list(stream_targets(self.data))
        if stream not in streams or event not in EVENTS or not isinstance(n, int):
            return _error(
                422,
                f'send {{"stream": one of {streams}, "event": one of {list(EVENTS)}, "n": count}}',
            )
        change = {"create": self.data.create, "update": self.data.update}.get(
            event, self.data.delete
        )
        try:
            ids = change(stream, n)
        except ValueError as exc:
            return _error(422, str(exc))
        return web.json_response({"stream": stream, "event": event, "ids": ids})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)
