"""One load run into MoEngage: models → validated items → packed bodies → paced sends → acks.

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

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from syncer import progress, shutdown
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
from syncer.destinations.moengage.packing import Batch, Item, Oversized, pack
from syncer.destinations.moengage.settings import MoengageSettings
from syncer.errors import (
    AuthError,
    ConfigError,
    FatalError,
    RequestRejectedError,
    UnreachableError,
)
from syncer.pacing import margin_for
from syncer.runframe import Frame, exclusive_run
from syncer.store import leases, loads, locks, runs
from syncer.store.rate import Limit, SharedLimiter

log = logging.getLogger(__name__)

MODELS = ("users", "devices", "events")
KIND = {"users": "user", "devices": "device", "events": "event"}
MODEL_OF = {kind: model for model, kind in KIND.items()}
LOAD_LOCK_CLASS = locks.LOAD
CHUNK_BODIES = 20  # bodies' worth of items packed at a time; the last partial one carries over
FETCH_ROWS = 500
BODY_MARGIN_S = 0.25
MAX_THROTTLED = 20  # 429s tolerated for one body before the run gives up


@dataclass
class LoadResult:
    destination: str
    dry_run: bool
    run_id: int | None = None
    outcome: str = "running"
    error: str | None = None
    body_sizes: list[int] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)  # per model
    dead_letters: Counter[str] = field(default_factory=Counter)  # per rule
    rejected_batches: int = 0
    possibly_duplicated: int = 0  # sends of events an earlier unanswered send may have delivered
    held: int = 0  # events held after an unanswered send (on_lost_answer = "hold")
    truncated: Counter[str] = field(default_factory=Counter)  # "model.attribute" -> rows
    lowered_limits: dict[str, int] = field(default_factory=dict)  # after 429s: unit -> limit
    truncations: list[dict[str, str]] = field(default_factory=list)  # dry run: each cut
    rate_limited: int = 0
    server_errors: int = 0
    splits: int = 0
    waited_s: float = 0.0
    elapsed_s: float = 0.0

    @property
    def errors(self) -> list[str]:
        return [self.error] if self.error else []

    @property
    def ok(self) -> bool:
        return self.outcome == "succeeded"

    def to_json(self) -> dict[str, Any]:
        sizes = self.body_sizes
        return {
            "batches": len(sizes),
            "bytes": sum(sizes),
            "max_body_bytes": max(sizes, default=0),
            "mean_body_bytes": round(sum(sizes) / len(sizes)) if sizes else 0,
            "sent": dict(self.sent),
            "dead_letters": dict(self.dead_letters),
            "rejected_batches": self.rejected_batches,
            "possibly_duplicated_events": self.possibly_duplicated,
            "held_events": self.held,
            "truncated": dict(self.truncated),
            "lowered_limits": dict(self.lowered_limits),
            "rate_limited": self.rate_limited,
            "server_errors": self.server_errors,
            "splits": self.splits,
        }


@dataclass(frozen=True)
class Pending:
    """A row to send, as an item, with what its acknowledgement records."""

    item: Item
    ack: loads.Ack


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


async def load_destination(
    pool: Any,
    session: aiohttp.ClientSession,
    settings: MoengageSettings,
    *,
    only: Sequence[str] = (),
    dry_run_dir: Path | None = None,
    command: str = "load",
    backoff_base_s: float = 1.0,
) -> LoadResult:
    """One reverse-ETL run; with ``dry_run_dir`` nothing is sent or written but the bodies."""
    started = time.monotonic()
    result = LoadResult(settings.name, dry_run=dry_run_dir is not None)
    progress.watch([result])
    wanted = [m for m in MODELS if not only or m in only]
    sqls = {
        m: models.model_sql(m, getattr(settings, m).sql if getattr(settings, m) else None)
        for m in wanted
    }
    async with pool.acquire() as conn:
        for model, sql in sqls.items():
            await models.check_model(conn, settings.name, model, sql)
    if dry_run_dir is not None:
        await asyncio.to_thread(_empty_folder, dry_run_dir)
        await _run(pool, session, settings, sqls, result, dry_run_dir, backoff_base_s)
        result.outcome = "succeeded"
        result.elapsed_s = time.monotonic() - started
        return result

    async def finish(conn: Any, frame: Frame) -> None:
        if frame.lost and result.outcome != "succeeded":
            result.outcome, result.error = "failed", frame.lost
        await _finish(conn, result)

    async with exclusive_run(
        pool,
        lock_class=LOAD_LOCK_CLASS,
        kind="load",
        keys=[settings.name],
        busy=lambda _keys: (
            f"another load of {settings.name!r} is running against this database; "
            f"wait for it to finish (see `syncer status`)"
        ),
        start=lambda conn: runs.start_run(conn, kind="load", source=settings.name, command=command),
        close_dead=lambda conn, run_id, previous: runs.mark_interrupted(
            conn, kind="load", source=settings.name, current_run=run_id, previous=previous
        ),
        finish=finish,
        grace_s=settings.timeout_s,  # a body in flight is answered and recorded first
    ) as frame:
        result.run_id = frame.run_id
        result.outcome, result.error = "failed", "the run was cancelled"
        try:
            async with pool.acquire() as conn:
                result.possibly_duplicated += await loads.recover_inflight(conn, settings.name)
            await _run(pool, session, settings, sqls, result, None, backoff_base_s)
            result.outcome, result.error = "succeeded", None
        except shutdown.Interrupted:
            result.outcome, result.error = (
                "interrupted",
                "stopped by a signal; resumes next run",
            )
        except FatalError as exc:
            result.outcome, result.error = "failed", exc.message
        except asyncio.CancelledError:
            result.outcome, result.error = "interrupted", "stopped before it finished"
            raise
        finally:
            result.elapsed_s = time.monotonic() - started
    return result


def _empty_folder(folder: Path) -> None:
    """``folder`` exists and holds no bodies of an earlier dry run."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("body-*.json"):
        old.unlink()


async def _finish(conn: Any, result: LoadResult) -> None:
    assert result.run_id is not None
    await runs.finish_run(conn, result.run_id, result.outcome, result.error)
    await conn.execute(
        "update syncer.runs set counts = $2::jsonb where id = $1",
        result.run_id,
        orjson.dumps(result.to_json()).decode(),
    )


async def _run(
    pool: Any,
    session: aiohttp.ClientSession,
    settings: MoengageSettings,
    sqls: dict[str, str],
    result: LoadResult,
    dry_run_dir: Path | None,
    backoff_base_s: float,
) -> None:
    rate = settings.rate_limit
    limits = {
        "users": Limit(rate.users, rate.per_seconds),
        "events": Limit(rate.events, rate.per_seconds),
    }
    # Bodies of 100 KB vary more than small GETs between taking their budget and being counted
    # by the server: a wider margin than the default.
    margin = max(BODY_MARGIN_S, margin_for(rate.per_seconds))
    limiter = SharedLimiter(pool, _scope(settings), limits, margin_s=margin)
    sender = _Sender(pool, session, settings, result, dry_run_dir, backoff_base_s, limiter)
    options = Options(flatten=settings.flatten)
    now = datetime.now(UTC)
    chunk: list[Pending] = []
    chunk_bytes = 0
    letters: list[loads.DeadLetter] = []
    seen: dict[str, set[str]] = {model: set() for model in sqls}
    hold = settings.on_lost_answer == "hold"
    try:
        async for model, row in _pending_rows(pool, settings.name, sqls, hold=hold):
            if row["_key"] in seen[model]:
                # A key is sent at most once per run: the first row of it goes, later ones not.
                letters.append(_duplicate(settings.name, model, row))
                result.dead_letters[loads.DUPLICATE_KEY] += 1
                continue
            seen[model].add(row["_key"])
            cuts: list[str] = []
            try:
                pending = _to_pending(model, row, options, now, cuts)
            except Invalid as exc:
                letters.append(_dead_letter(model, row, exc.rule, exc.reason))
                result.dead_letters[exc.rule] += 1
                continue
            for label in cuts:
                result.truncated[f"{model}.{label}"] += 1
                if dry_run_dir is not None:
                    result.truncations.append({"model": model, "key": row["_key"], "cut": label})
            chunk, chunk_bytes = await _add(sender, settings, chunk, chunk_bytes, pending, letters)
            if len(letters) >= FETCH_ROWS:
                await sender.dead_letter(letters)
                letters = []
    except ConfigError as exc:
        result.error = exc.message  # what the run's record says, as the user is told
        raise
    await sender.dead_letter(letters)
    await sender.send_packed(chunk, final=True)
    result.waited_s = sender.limiter.waited_s
    if dry_run_dir is not None and result.truncations:
        lines = b"".join(orjson.dumps(t) + b"\n" for t in result.truncations)
        await asyncio.to_thread((dry_run_dir / "truncations.jsonl").write_bytes, lines)


async def _add(
    sender: _Sender,
    settings: MoengageSettings,
    chunk: list[Pending],
    chunk_bytes: int,
    pending: Pending,
    letters: list[loads.DeadLetter],
) -> tuple[list[Pending], int]:
    """``pending`` added to the chunk; full chunks are sent but for their last partial body."""
    if not await sender.fits_alone(pending):
        return chunk, chunk_bytes
    chunk.append(pending)
    chunk_bytes += len(orjson.dumps(pending.item.payload))
    if chunk_bytes >= CHUNK_BODIES * settings.max_request_bytes:
        await sender.dead_letter(letters)
        letters.clear()
        chunk = await sender.send_packed(chunk, final=False)
        chunk_bytes = sum(len(orjson.dumps(p.item.payload)) for p in chunk)
    return chunk, chunk_bytes


def _duplicate(destination: str, model: str, row: dict[str, Any]) -> loads.DeadLetter:
    what = {"users": "customer_id", "devices": "customer_id and device_id"}.get(model, "event_key")
    shown = str(row["_key"]).replace("\x1f", " / ")
    reason = (
        f"the {model} model returned {what} {shown!r} more than once; the first row was sent "
        f"in this run, this one is not (fix destinations.{destination}.{model}.sql to return "
        "one row per key)"
    )
    return _dead_letter(model, row, loads.DUPLICATE_KEY, reason)


async def _pending_rows(
    pool: Any, destination: str, sqls: dict[str, str], *, hold: bool = False
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every pending row of every model, merged by customer: user, then devices, then events.

    A model whose SQL fails while it runs (a cast of a bad value, a division by zero) is a
    ConfigError naming the model and the database's message."""
    # Released quietly: after a lost connection, the generator may be closed long after.
    conn = await pool.acquire()
    snapshot = conn.transaction(isolation="repeatable_read", readonly=True)
    try:
        await snapshot.start()
        cursors = {}
        for model, sql in sqls.items():
            with _model_errors(destination, model):
                query = loads.pending_query(model, sql, hold=hold)
                cursors[model] = await conn.cursor(query, destination)
        buffers: dict[str, list[dict[str, Any]]] = {m: [] for m in cursors}
        done: set[str] = set()

        async def head(model: str) -> dict[str, Any] | None:
            if not buffers[model] and model not in done:
                with _model_errors(destination, model):
                    rows = await cursors[model].fetch(FETCH_ROWS)
                if len(rows) < FETCH_ROWS:
                    done.add(model)
                buffers[model] = [dict(r) for r in reversed(rows)]
            return buffers[model][-1] if buffers[model] else None

        while True:
            heads = {m: await head(m) for m in cursors}
            live = {m: r for m, r in heads.items() if r is not None}
            if not live:
                return

            def order(m: str, live: dict[str, dict[str, Any]] = live) -> tuple[int, str, int]:
                cid = live[m]["customer_id"]
                # The same order as the SQL's: byte order of the text, nulls last.
                return (cid is None, "" if cid is None else str(cid), MODELS.index(m))

            model = min(live, key=order)
            yield model, buffers[model].pop()
    finally:
        await leases.release_quietly(pool, conn, snapshot)


# Failures of the database itself, not of a model's SQL: reported as such by the caller.
_NOT_THE_MODEL = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


@contextmanager
def _model_errors(destination: str, model: str) -> Iterator[None]:
    try:
        yield
    except asyncpg.PostgresError as exc:
        if isinstance(exc, _NOT_THE_MODEL):
            raise
        raise ConfigError(
            f"destinations.{destination}.{model}.sql: the {model} model failed while running "
            f"({type(exc).__name__}: {exc}); fix the model's SQL, then load again (rows "
            "already acknowledged stay so)"
        ) from None


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def _to_pending(
    model: str, row: dict[str, Any], options: Options, now: datetime, cuts: list[str]
) -> Pending:
    ack = loads.Ack(model, row["_key"], row["_hash"])
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
    return Pending(Item(KIND[model], ack.key, customer, element), ack)  # type: ignore[arg-type]


def _dead_letter(model: str, row: dict[str, Any], rule: str, reason: str) -> loads.DeadLetter:
    data = {k: v for k, v in row.items() if not k.startswith("_")}
    for key in ("attributes", "platforms"):
        if isinstance(data.get(key), str):
            data[key] = orjson.loads(data[key])
    text = orjson.dumps(data, default=str).decode()
    return loads.DeadLetter(model, row["_key"], row["_hash"], rule, reason, text)


class _Sender:
    """Packs, paces, sends and records; one per run."""

    def __init__(
        self,
        pool: Any,
        session: aiohttp.ClientSession,
        settings: MoengageSettings,
        result: LoadResult,
        dry_run_dir: Path | None,
        backoff_base_s: float,
        limiter: SharedLimiter,
    ) -> None:
        self.pool = pool
        self.session = session
        self.settings = settings
        self.result = result
        self.dry_run_dir = dry_run_dir
        self.backoff_base_s = backoff_base_s
        self.limiter = limiter
        self.url = f"{settings.base_url}/transition/{settings.workspace_id.value}"
        self.headers = _headers(settings)
        self.timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        # Users and events per body: the configured limits, lowered when MoEngage throttles
        # bodies that fit them (the workspace's real limits are lower).
        self.caps = {"users": settings.rate_limit.users, "events": settings.rate_limit.events}

    async def dead_letter(self, letters: list[loads.DeadLetter]) -> None:
        if letters and self.dry_run_dir is None:
            async with self.pool.acquire() as conn:
                await loads.record_dead_letters(
                    conn, self.settings.name, self.result.run_id, letters
                )

    def _first(
        self, pending: Sequence[Pending], start: int, room: dict[str, int]
    ) -> Batch | Oversized:
        """The first body of ``pending[start:]``, within the limits and what ``room`` is left."""
        caps = self.caps
        packed = pack(
            (pending[i].item for i in range(start, len(pending))),
            max_request_bytes=self.settings.max_request_bytes,
            max_users=max(1, min(caps["users"], room.get("users", caps["users"]))),
            max_events=max(1, min(caps["events"], room.get("events", caps["events"]))),
        )
        return next(iter(packed))

    async def send_packed(self, pending: list[Pending], *, final: bool) -> list[Pending]:
        """Send ``pending`` in bodies; unless ``final``, the rows of what would be the last,
        partly filled body come back, to be packed with the next rows.

        Bodies are as full as the byte limit allows, except that a body is cut to the room
        left in the rate-limit window: bodies that each fill a third of a window would
        otherwise leave a third of every window unused.
        """
        acks = {(p.item.kind, p.item.key): p for p in pending}
        unsent = sum(len(orjson.dumps(p.item.payload)) for p in pending)
        start = 0
        while start < len(pending):
            shutdown.check()
            if not final and unsent < 2 * self.settings.max_request_bytes:
                return pending[start:]
            room: dict[str, int] = {}
            if self.dry_run_dir is None:
                # Wait for room for the next full body, then cut it to the room there is.
                full = self._first(pending, start, {})
                assert not isinstance(full, Oversized), "screened by fits_alone"
                room = await self.limiter.room(need={"users": full.users, "events": full.events})
            packed = self._first(pending, start, room)
            assert not isinstance(packed, Oversized), "screened by fits_alone"
            start += len(packed.items)
            unsent -= sum(len(orjson.dumps(i.payload)) for i in packed.items)
            await self.send(packed, [acks[(i.kind, i.key)] for i in packed.items])
        return []

    async def fits_alone(self, p: Pending) -> bool:
        """Whether the row fits a body by itself; if not, it is dead-lettered."""
        rate = self.settings.rate_limit
        alone = next(
            pack(
                [p.item],
                max_request_bytes=self.settings.max_request_bytes,
                max_users=rate.users,
                max_events=rate.events,
            )
        )
        if isinstance(alone, Oversized):
            await self._oversized(p, alone.size)
            return False
        return True

    async def _oversized(self, p: Pending, size: int) -> None:
        reason = (
            f"the element alone needs a body of {size} bytes, over "
            f"max_request_bytes = {self.settings.max_request_bytes}"
        )
        letter = loads.DeadLetter(
            p.ack.model,
            p.ack.key,
            p.ack.hash,
            "too_large",
            reason,
            orjson.dumps(p.item.payload).decode(),
        )
        self.result.dead_letters["too_large"] += 1
        await self.dead_letter([letter])

    async def send(self, batch: Batch, pending: list[Pending]) -> None:
        """Deliver one body: acknowledged, split (413), or dead-lettered (other 4xx).

        The run's lease rows stay locked while the body is sent and its answer recorded: a run
        that takes the load over (this one having lost its lock) waits until then, so it never
        sends rows this one has in flight (``store/leases.py``).
        """
        if self.dry_run_dir is not None:
            await self._send(batch, pending)
            return
        async with leases.holding(self.pool):
            await self._send(batch, pending)

    async def _send(self, batch: Batch, pending: list[Pending]) -> None:
        if self.dry_run_dir is not None:
            self.result.body_sizes.append(len(batch.body))
            number = len(self.result.body_sizes)
            target = self.dry_run_dir / f"body-{number:05d}.json"
            await asyncio.to_thread(target.write_bytes, batch.body)
            self._count_sent(pending)
            return
        assert self.result.run_id is not None
        name, run_id = self.settings.name, self.result.run_id
        journal = [(p.ack.model, p.ack.key) for p in pending]
        events = [p.ack.key for p in pending if p.ack.model == "events"]
        used_batches: list[str] = []
        ambiguous = False
        attempts = throttled = 0
        last = "no answer"
        window = self.settings.rate_limit.per_seconds
        while True:
            attempts += 1
            if attempts > self.settings.max_attempts:
                async with self.pool.acquire() as conn:
                    await loads.forget_inflight(conn, name, used_batches)
                raise FatalError(
                    f"MoEngage did not accept a request after {self.settings.max_attempts} "
                    f"attempts (the last: {last}); its rows stay pending for the next run"
                )
            spent = await self.limiter.acquire(
                {"users": batch.users, "events": batch.events}, pending_s=self.settings.timeout_s
            )
            batch_id = uuid.uuid4().hex
            used_batches.append(batch_id)
            await leases.still_held()  # no new body once the run lost its lock
            async with self.pool.acquire() as conn:
                # Events an earlier send delivered maybe: if this copy arrives, they may be twice.
                again = await loads.unanswered(conn, name, events) if events else 0
                await loads.journal_inflight(conn, name, run_id, batch_id, journal)
            try:
                try:
                    async with self.session.post(
                        self.url, data=batch.body, headers=self.headers, timeout=self.timeout
                    ) as response:
                        await spent.settle()  # MoEngage has counted the body by now
                        status, body = response.status, await response.read()
                finally:
                    await spent.settle()  # idempotent; frees the room a window from now
            except aiohttp.ClientConnectorError as exc:
                async with self.pool.acquire() as conn:
                    await loads.forget_inflight(conn, name, used_batches)
                raise UnreachableError(
                    f"cannot connect to MoEngage ({exc.os_error}); check base_url and the network"
                ) from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                # The body may have been processed: each of its events may have arrived.
                self.result.possibly_duplicated += again
                ambiguous = True
                last = f"no answer ({type(exc).__name__})"
                used_batches.remove(batch_id)
                async with self.pool.acquire() as conn:
                    await loads.note_lost_answer(conn, name, run_id, batch_id, events)
                if events and self.settings.on_lost_answer == "hold":
                    log.warning(
                        "MoEngage request ended without an answer (%s); holding its %d events "
                        "until released (syncer load %s --release-held)",
                        last,
                        len(events),
                        name,
                    )
                    self.result.held += len(events)
                    async with self.pool.acquire() as conn:
                        await loads.forget_inflight(conn, name, used_batches)
                    others = [p for p in pending if p.ack.model != "events"]
                    if others:  # users and devices are upserts: sending them again is harmless
                        await self.send_packed(others, final=True)
                    return
                log.info("MoEngage request ended without an answer (%s); sending again", last)
                await asyncio.sleep(self.backoff_base_s * 2 ** (attempts - 1))
                continue
            answer = _answer(body)
            if 200 <= status < 300 and answer.get("status") != "fail":
                self.result.possibly_duplicated += again

                async def acked(
                    conn: Any, attempts: int = attempts, ambiguous: bool = ambiguous
                ) -> None:
                    await loads.record_acks(
                        conn, name, run_id, [p.ack for p in pending], used_batches
                    )
                    await loads.record_batch(
                        conn,
                        run_id=run_id,
                        destination=name,
                        outcome="acked",
                        size=len(batch.body),
                        users=batch.users,
                        events=batch.events,
                        attempts=attempts,
                        ambiguous=ambiguous,
                    )

                await leases.record_answer(self.pool, acked)  # fenced; survives a lost connection
                self.result.body_sizes.append(len(batch.body))
                self._count_sent(pending)
                return
            async with self.pool.acquire() as conn:
                await loads.forget_inflight(conn, name, used_batches)
            used_batches.clear()
            last = f"HTTP {status}"
            if status == 413 and len(pending) > 1:
                self.result.splits += 1
                half = len(pending) // 2
                for part in (pending[:half], pending[half:]):
                    await self.send_packed(part, final=True)
                return
            if status == 429:
                # Nothing was applied. Everyone using the workspace waits a window; a body
                # refused again after that is over the workspace's real limits.
                self.result.rate_limited += 1
                throttled += 1
                attempts -= 1  # a 429 is not a failed attempt
                if throttled > MAX_THROTTLED:
                    raise FatalError(
                        f"MoEngage answered 429 (rate limited) {throttled} times to one request, "
                        "waiting a full window each time; its rows stay pending for the next "
                        "run. Another client may be using the workspace's limits, or "
                        f"[destinations.{name}.rate_limit] is above them: lower it"
                    )
                await self.limiter.hold_off(window)
                if throttled >= 2 and self._lower_limits(batch) and len(pending) > 1:
                    await self.send_packed(pending, final=True)
                    return
                continue
            if status >= 500:
                # Not applied, or not knowably: never a dead letter. Retried after a backoff.
                self.result.server_errors += 1
                await asyncio.sleep(min(window, self.backoff_base_s * 2 ** (attempts - 1)))
                continue
            raise_for_fatal(status, answer, self.settings)
            await self._reject(batch, pending, status, answer, attempts)
            return

    def _lower_limits(self, batch: Batch) -> bool:
        """Halve the per-window limits below what ``batch`` carried; whether any was lowered.

        MoEngage refused the body although a full window had passed: its users or events are
        over the workspace's real limit, lower than the configured one."""
        lowered = False
        for unit, carried in (("users", batch.users), ("events", batch.events)):
            cap = max(1, carried // 2)
            if carried > 0 and cap < self.caps[unit]:
                self.caps[unit] = cap
                limit = self.limiter.limits[unit]
                self.limiter.limits[unit] = Limit(min(limit.amount, cap), limit.per_seconds)
                self.result.lowered_limits[unit] = cap
                lowered = True
        if lowered:
            log.warning(
                "MoEngage throttled a body of %d users and %d events a full window apart: the "
                "workspace's limits are lower than rate_limit; sending at most %s per window",
                batch.users,
                batch.events,
                self.caps,
            )
        return lowered

    async def _reject(
        self,
        batch: Batch,
        pending: list[Pending],
        status: int,
        answer: dict[str, Any],
        attempts: int,
    ) -> None:
        error = _error_of(answer)
        message = str(error.get("message") or answer or "no message")[:300]
        request_id = error.get("request_id")
        reason = f"MoEngage rejected the request (HTTP {status}): {message}" + (
            f" (request_id {request_id})" if request_id else ""
        )
        letters = [
            loads.DeadLetter(
                p.ack.model,
                p.ack.key,
                p.ack.hash,
                f"http_{status}",
                reason,
                orjson.dumps(p.item.payload).decode(),
            )
            for p in pending
        ]
        self.result.rejected_batches += 1
        self.result.dead_letters[f"http_{status}"] += len(letters)
        assert self.result.run_id is not None
        async with self.pool.acquire() as conn:
            await loads.record_dead_letters(conn, self.settings.name, self.result.run_id, letters)
            await loads.record_batch(
                conn,
                run_id=self.result.run_id,
                destination=self.settings.name,
                outcome="rejected",
                size=len(batch.body),
                users=batch.users,
                events=batch.events,
                attempts=attempts,
                ambiguous=False,
                request_id=request_id,
                error=reason,
            )

    def _count_sent(self, pending: list[Pending]) -> None:
        for p in pending:
            self.result.sent[p.ack.model] += 1


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


def raise_for_fatal(status: int, answer: dict[str, Any], settings: MoengageSettings) -> None:
    """Statuses that no batch can get past: bad credentials, the wrong workspace."""
    error = _error_of(answer)
    message = str(error.get("message") or "no message")[:200]
    ws, key = settings.workspace_id.env, settings.api_key.env
    if status in (401, 403):
        raise AuthError(
            f"MoEngage rejected the credentials (HTTP {status}: {message}); check that {ws} "
            f"holds the workspace (APP) id and {key} its data API key"
        )
    if status == 409:
        raise AuthError(
            f"MoEngage says the workspace does not match the credentials (HTTP 409: {message}); "
            f"check {ws} and base_url (the data center of the workspace)"
        )
    if status == 404:
        raise RequestRejectedError(
            "MoEngage has no bulk import endpoint at base_url (HTTP 404); check base_url, "
            'e.g. "https://api-01.moengage.com/v1"'
        )
