"""``syncer webhooks serve``: MOCO's signed webhooks, applied to the warehouse as they arrive.

A delivery (docs/vendors/moco.md) is a POST of the entity's JSON with ``X-Moco-Target``
(``Activity``, ``Company``, …), ``X-Moco-Event`` (create, update, delete), ``X-Moco-Timestamp``
(epoch milliseconds) and ``X-Moco-Signature``: the lowercase hex HMAC-SHA256 of the raw body,
keyed by the account's signature key as an ASCII string. What the receiver answers:

- 401 for a missing or wrong signature: nothing is recorded.
- 2xx for a target that is not a configured stream, or an event other than create, update and
  delete: counted and logged as ignored. Any other answer would make MOCO retry it, and 500
  failures in a row disable the hook.
- 400 for a signed body that is not a JSON object with an integer ``id``, or a missing
  ``X-Moco-Timestamp``: nothing is written, and MOCO retries it.
- 503 when the database did not answer in time: MOCO retries it.
- 200 once the row is written by the rule in ``syncer.sources.moco.webhook_store``, which makes
  late, early and repeated deliveries converge. Each delivery is one short transaction, well within
  the 10 seconds MOCO waits.

Polling stays the safety net: a missed delivery is picked up by the next ``syncer sync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from syncer.catalog import RAW, Stream
from syncer.config import Secret, Settings
from syncer.errors import EXIT_OK, ConfigError, FatalError
from syncer.extract.records import parse_timestamp
from syncer.observability import METRICS
from syncer.sources.moco.catalog import CATALOG
from syncer.sources.moco.settings import SCHEMA, MocoSourceSettings
from syncer.sources.moco.webhook_store import Change, apply_change
from syncer.store.types import Pool
from syncer.tomlspec import Invalid, secret_from_env

log = logging.getLogger(__name__)

SECRET_KEY = "webhook_secret_env"
# MOCO cancels a delivery after 10 s; the database gets most of that, the rest is the network.
APPLY_TIMEOUT_S = 7.0
# On SIGTERM, requests in flight get this long to finish before the process exits.
SHUTDOWN_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 16 * 1024 * 1024

# X-Moco-Target -> the streams it changes, from the catalog (MOCO's WebHookTarget values). A
# customer is target "Company"; the docs' header example says "Customer", so both are taken.
ALIASES: Mapping[str, str] = {"Customer": "Company"}
# Every target MOCO documents (its WebHookTarget enum): the label values counts may take.
# Anything else (an unsigned request can send any header) is counted as "other", so counts
# stay bounded.
MOCO_TARGETS = (
    frozenset(CATALOG.targets)
    | frozenset(ALIASES)
    | {
        "InvoiceDraft",
        "Purchase::Order",
        "User::HolidayRequest",
        "User::PeriodLockOverride",
    }
)
EVENTS = ("create", "update", "delete")
OUTCOMES = ("received", "applied", "ignored", "rejected", "failed")

DELIVERIES = METRICS.registry.counter(
    "syncer_webhook_deliveries_total",
    "MOCO webhook deliveries by target and outcome (received; then applied, ignored, "
    "rejected: bad signature or body, or failed: the database did not answer).",
    ("target", "outcome"),
)


# --- the pure core -----------------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """MOCO's signature of ``body``: hex HMAC-SHA256 keyed by the secret's ASCII bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (the X-Moco-Signature header) signs the raw ``body``.

    Compared in constant time; hex case does not matter; a missing or non-ASCII header is False.
    """
    if not signature:
        return False
    try:
        given = signature.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given, sign(secret, body).encode())


def streams_for(target: str | None, event: str | None, streams: tuple[str, ...]) -> tuple[str, ...]:
    """The configured streams a delivery changes (MOCO's ``Expense`` changes both the expenses
    of all projects and a project's expenses); :class:`Ignored` with the reason for none."""
    if not target:
        raise Ignored("no X-Moco-Target header")
    known = CATALOG.by_target(ALIASES.get(target, target))
    if not known:
        raise Ignored(f"target {target!r} is not synced by syncer")
    chosen = tuple(s.name for s in known if s.name in streams)
    if not chosen:
        names = ", ".join(repr(s.name) for s in known)
        raise Ignored(f"stream {names} (target {target!r}) is not configured for the source")
    if event not in EVENTS:
        raise Ignored(f"event {event!r} is not one of {', '.join(EVENTS)}")
    return chosen


def parent_of(stream: Stream, record: Mapping[str, Any]) -> str | None:
    """A per-parent list's record: its parent's id, where the record names it
    (``project: {id}`` in a contract); None where it does not (a task), or for other streams."""
    if stream.parent is None:
        return None
    column = next((c for c in stream.columns if c.name == stream.parent.column), None)
    if column is None or column.type == RAW:
        return None
    value: Any = record
    for key in column.path:
        value = value.get(key) if isinstance(value, dict) else None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def event_time(header: str | None) -> datetime:
    """X-Moco-Timestamp (epoch milliseconds) as an aware datetime; :class:`Malformed` if not."""
    text = (header or "").strip()
    if not text.isascii() or not text.isdigit():
        raise Malformed(
            f"X-Moco-Timestamp must be the event time in epoch milliseconds, got {text[:40]!r}"
            if text
            else "the X-Moco-Timestamp header is missing"
        )
    try:
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    except (OverflowError, ValueError, OSError):
        raise Malformed(f"X-Moco-Timestamp {text[:40]!r} is out of range") from None


def parse_change(body: bytes, event: str, at: datetime) -> Change:
    """The change a signed body describes; :class:`Malformed` naming what is wrong."""
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"the body is not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise Malformed(f"the body is not a JSON object but {type(record).__name__}")
    key = record.get("id")
    if isinstance(key, bool) or not isinstance(key, int):
        got = "" if key is None else f" (got {orjson.dumps(key).decode()[:40]})"
        raise Malformed(f"the body has no integer 'id'{got}")
    if not -(2**63) <= key < 2**63:
        raise Malformed(f"'id' {key} does not fit a bigint")
    updated_at = parse_timestamp(record.get("updated_at"))
    deleted = event == "delete"
    if updated_at is None and not deleted:
        updated_at = at  # no version of its own: order it by the event time
    return Change(key, deleted, updated_at, at, orjson.dumps(record).decode())


class Ignored(Exception):
    """A verified delivery syncer does not apply; answered 2xx so that MOCO does not retry."""


class Malformed(Exception):
    """A verified delivery that cannot be applied; answered 400."""


def target_label(target: str | None) -> str:
    return target if target in MOCO_TARGETS else "other"


@dataclass
class WebhookCounts:
    """Deliveries per target and outcome since the server started."""

    by_target: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, target: str, outcome: str) -> None:
        counts = self.by_target.setdefault(target, dict.fromkeys(OUTCOMES, 0))
        counts[outcome] += 1
        DELIVERIES.inc(target=target, outcome=outcome)

    def total(self, outcome: str) -> int:
        return sum(counts[outcome] for counts in self.by_target.values())

    def summary(self) -> str:
        """One line: totals, then per target."""
        totals = ", ".join(f"{self.total(o)} {o}" for o in OUTCOMES)
        parts = [
            f"{target}: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n)
            for target, counts in sorted(self.by_target.items())
        ]
        return f"webhooks: {totals}" + (f" ({'; '.join(parts)})" if parts else "")


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConfig:
    source: str
    streams: tuple[str, ...]
    secret: Secret
    schema: str = SCHEMA  # where the source's tables are (the built-in source's by default)


def webhook_config(
    settings: Settings, environ: Mapping[str, str], *, source: str | None = None
) -> WebhookConfig:
    """The MOCO source the hooks are for (``source``, or the one configured), with its
    signature key; ConfigError naming the fix."""
    sources = [s for s in settings.sources.values() if isinstance(s, MocoSourceSettings)]
    example = 'webhook_secret_env = "MOCO_WEBHOOK_SECRET"'
    if source is not None:
        chosen = settings.source(source)
        if not isinstance(chosen, MocoSourceSettings):
            raise ConfigError(
                f"webhooks serve --source {source}: a {chosen.type} source; MOCO webhooks are "
                f"for MOCO sources ({', '.join(s.name for s in sources) or 'none configured'})"
            )
        sources = [chosen]
    if not sources:
        raise ConfigError(
            "webhooks serve: no MOCO source is configured; add a [sources.moco] table with type = "
            f'"moco" and {example} (see docs/operations.md, Webhooks)'
        )
    if len(sources) > 1:
        names = ", ".join(s.name for s in sources)
        raise ConfigError(
            f"webhooks serve: several MOCO sources are configured ({names}); choose the one "
            f"these hooks are for with --source, e.g. --source {sources[0].name} (one server "
            "per MOCO account: each has its own signature key)"
        )
    account = sources[0]
    key = f"sources.{account.name}.{SECRET_KEY}"
    if account.webhook_secret_env is None:
        raise ConfigError(
            f"{key}: required by `syncer webhooks serve`; add {example} to "
            f"[sources.{account.name}] and export the signature key from MOCO's web hook overview "
            "in that variable"
        )
    try:
        secret = secret_from_env(
            account.webhook_secret_env,
            "MOCO webhook signature key (the 32 hex characters shown in MOCO's web hook overview)",
            environ,
            Secret,
        )
    except Invalid as exc:
        raise ConfigError(f"{key}: {exc.message}") from None
    return WebhookConfig(account.name, account.streams, secret, account.schema)


# --- the server --------------------------------------------------------------------------------


class WebhookReceiver:
    """The aiohttp app that verifies and applies deliveries, with its counts."""

    def __init__(self, pool: Pool, config: WebhookConfig) -> None:
        self.pool = pool
        self.config = config
        self.counts = WebhookCounts()

    def app(self) -> web.Application:
        """POST a delivery to any path; ``GET /healthz`` answers 200 while serving."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_post("/{tail:.*}", self._deliver)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _deliver(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        raw_target, event = headers.get("X-Moco-Target"), headers.get("X-Moco-Event")
        target = target_label(raw_target)
        self.counts.add(target, "received")
        if not signature_matches(self.config.secret.value, body, headers.get("X-Moco-Signature")):
            self.counts.add(target, "rejected")
            log.warning(
                "webhook rejected: missing or wrong X-Moco-Signature",
                extra={"target": target, "remote": request.remote},
            )
            return _answer(401, "rejected", "missing or wrong X-Moco-Signature")
        try:
            streams = streams_for(raw_target, event, self.config.streams)
            assert event is not None
            change = parse_change(body, event, event_time(headers.get("X-Moco-Timestamp")))
        except Ignored as exc:
            self.counts.add(target, "ignored")
            log.info("webhook ignored: %s", exc, extra={"target": target, "event": event})
            return _answer(200, "ignored", str(exc))
        except Malformed as exc:
            self.counts.add(target, "rejected")
            log.warning("webhook rejected: %s", exc, extra={"target": target, "event": event})
            return _answer(400, "rejected", str(exc))
        stream_names = ",".join(streams)
        fields = {"target": target, "event": event, "stream": stream_names, "record_id": change.id}
        record = orjson.loads(change.data)
        try:
            async with asyncio.timeout(APPLY_TIMEOUT_S), self.pool.acquire() as conn:
                changed = False
                for name in streams:
                    stream = CATALOG[name]
                    changed = (
                        await apply_change(
                            conn,
                            self.config.schema,
                            name,
                            change,
                            stream.volatile,
                            parent=parent_of(stream, record),
                            per_parent=stream.parent is not None,
                        )
                        or changed
                    )
        except asyncpg.DataError as exc:  # e.g. a \u0000 that jsonb cannot hold
            self.counts.add(target, "rejected")
            log.warning("webhook rejected: the record cannot be stored (%s)", exc, extra=fields)
            return _answer(400, "rejected", f"the record cannot be stored: {exc}")
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.counts.add(target, "failed")
            log.error("webhook not applied: the database failed (%s)", exc, extra=fields)
            return _answer(503, "failed", "the database did not answer; retry later")
        self.counts.add(target, "applied")
        log.info("webhook applied (%s)", "changed" if changed else "unchanged", extra=fields)
        return web.json_response({"status": "applied", "changed": changed})


def _answer(status: int, outcome: str, reason: str) -> web.Response:
    return web.json_response({"status": outcome, "reason": reason}, status=status)


async def serve_webhooks(
    pool: Pool,
    config: WebhookConfig,
    *,
    host: str,
    port: int,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Serve deliveries on ``host``:``port`` until SIGTERM/SIGINT; requests in flight finish."""
    receiver = WebhookReceiver(pool, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(receiver.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise FatalError(
                f"cannot receive webhooks on {host}:{port} ({exc.strerror or exc}); choose "
                "another --port or stop what uses it"
            ) from None
        bound = int(runner.addresses[0][1])
        print(
            f"receiving MOCO webhooks on http://{host}:{bound}/ for source {config.source}; "
            "stop with Ctrl-C or SIGTERM",
            flush=True,
        )
        async with contextlib.AsyncExitStack() as stack:
            if metrics_port is not None:
                from syncer.observability import serving_health

                await stack.enter_async_context(
                    serving_health(
                        host=metrics_host, port=metrics_port, ready=lambda: not stop.is_set()
                    )
                )
            await stop.wait()
        log.info("stopping: finishing the deliveries in flight")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print(receiver.counts.summary(), flush=True)
    return EXIT_OK
