"""The load run every destination shares: pending rows in, acknowledgements and dead letters out.

Where a new destination goes
----------------------------
A destination type is a :class:`Destination`, built from its settings, plus a
``DestinationType`` in its ``plugin`` module whose ``load`` and ``status`` are
:func:`loader` and :func:`statuses` over that builder. The destination says only what is its
own:

- its :class:`Model` list: name, SQL, the SQL expression of a row's key, the expression rows
  are merged by, the columns the SQL must return, and whether sending a row twice is harmless;
- :meth:`Destination.item`: one row as an item to send (or :class:`Invalid`: a dead letter
  with a rule and a reason), and :meth:`Destination.payload`: what the item sends, as JSON;
- :meth:`Destination.pack`: the first body of some items, within per-unit caps (or
  :class:`TooLarge` when an item cannot fit a body alone), and its rate-limit units
  (``limits``: amount per window of each unit, shared by every process using one ``scope``);
- :meth:`Destination.deliver`: one body sent once, its answer as a :class:`Delivery`:
  :class:`Acked`, :class:`Rejected` (all or some keys, with a rule and reason), :class:`Split`,
  :class:`Throttled`, :class:`Retry` or :class:`NoAnswer`; a :class:`FatalError` ends the run.

This module does the rest: the run's frame (one load of a destination at a time, its
``syncer.runs`` row and counts), the model checks, the pending rows (a snapshot over each
model's rows not yet acknowledged as they are now, merged in the destination's order), one send
per key and run (later rows of a key are dead-lettered ``duplicate_key``), dead letters,
pacing, the in-flight journal and its recovery after a crash, acknowledgements fenced by the
run's lease, unanswered sends of rows that are not harmless to resend (resent, or held until
released), retries, splits, lowered limits after throttling, and the dry run's folder.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiohttp
import asyncpg
import orjson

from syncer import progress, shutdown
from syncer.errors import ConfigError, FatalError, UnreachableError
from syncer.http.client import Credential, fatal_status
from syncer.results import SingleReport
from syncer.runframe import Frame, exclusive_run
from syncer.store import leases, loads, locks, runs
from syncer.store.rate import Limit, SharedLimiter
from syncer.store.status import ModelStatus, json_object
from syncer.store.types import Connection, Pool

__all__ = [
    "INTEGER",
    "JSON",
    "TEXT",
    "TIMESTAMP",
    "Acked",
    "Body",
    "Column",
    "Delivery",
    "Destination",
    "Invalid",
    "LoadResult",
    "Model",
    "NoAnswer",
    "Rejected",
    "Retry",
    "Split",
    "Throttled",
    "TooLarge",
    "check_model",
    "load",
    "loader",
    "model_statuses",
    "statuses",
]

log = logging.getLogger(__name__)

CHUNK_BODIES = 20  # bodies' worth of items packed at a time; the last partial one carries over
FETCH_ROWS = 500
MAX_THROTTLED = 20  # throttled answers tolerated for one body before the run gives up

I = TypeVar("I")  # noqa: E741  (a destination's item)

# Column types a model's SQL may return (``Column.types``).
TEXT = ("text", "varchar", "bpchar", "int2", "int4", "int8", "numeric", "uuid")
JSON = ("jsonb", "json")
TIMESTAMP = ("timestamptz", "timestamp", "date")
INTEGER = ("int2", "int4", "int8", "numeric")


# --- what a destination declares ---------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    types: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Model:
    """One SQL model of a destination: what it sends of the warehouse.

    ``key`` is an SQL expression over the model's row (``model.<column>``) naming what the
    destination identifies it by; ``order`` the expression rows of all models are merged by
    (byte order, nulls last; ties go to the model listed first). A model that is not
    ``idempotent`` is sent until acknowledged and never after, and a send of it without an
    answer is noted per key (it may have arrived: another send may duplicate it).
    """

    name: str
    sql: str
    key: str
    columns: tuple[Column, ...]
    order: str | None = None  # None: the key
    idempotent: bool = True
    key_label: str = "key"  # what the key is, for messages ("customer_id")

    @property
    def json_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if set(c.types) <= set(JSON))


class Invalid(Exception):
    """A row the destination cannot take (or would silently drop): dead-lettered."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class Body(Generic[I]):
    """One request's body: the bytes, the items it carries and its rate-limit units."""

    data: bytes
    items: tuple[I, ...]
    units: Mapping[str, int]
    wire: Any = None  # the destination's own view of it


@dataclass(frozen=True)
class TooLarge:
    """An item that does not fit any body alone: dead-lettered ``too_large``."""

    reason: str


@dataclass(frozen=True)
class Acked:
    """The destination took the whole body."""


@dataclass(frozen=True)
class Rejected:
    """The destination refused the body (``keys`` None) or some of its items' keys: those are
    dead-lettered with ``rule`` and ``reason``; the rest of the body is acknowledged."""

    rule: str
    reason: str
    keys: frozenset[str] | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Split:
    """The body is too large for the destination: sent again in halves. (A body of one item
    cannot be split: answer :class:`Rejected` for it; a split of one item is retried.)"""

    detail: str


@dataclass(frozen=True)
class Throttled:
    """Rate limited: nothing was applied; every user of the limits waits a window."""

    detail: str


@dataclass(frozen=True)
class Retry:
    """Not applied, or not knowably (a server error): sent again after a backoff."""

    detail: str


@dataclass(frozen=True)
class NoAnswer:
    """The body left but no answer came: it may have been applied."""

    detail: str


Delivery = Acked | Rejected | Split | Throttled | Retry | NoAnswer


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Body[Any],
    credential: Credential,
    answered: Callable[[], Awaitable[None]],
    *,
    timeout_s: float,
    rejected: Callable[[int, bytes], Rejected],
    accepted: Callable[[int, bytes], bool] = lambda status, _raw: 200 <= status < 300,
    headers: Mapping[str, str] | None = None,
) -> Delivery:
    """POST one body and read the destination's answer the way every bulk API answers:
    ``accepted`` (default: any 2xx) is :class:`Acked`; 413 for a body of several items is
    :class:`Split`; 429 :class:`Throttled`; 5xx :class:`Retry`; no answer :class:`NoAnswer`;
    a status no request of ``credential`` can get past (401, 403, 404, its own ``fatal``) is
    raised as the HTTP layer maps it; any other status is the destination's ``rejected``."""
    try:
        async with session.post(
            url,
            data=body.data,
            headers={**credential.headers, **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            await answered()  # the destination has counted the body by now
            status, raw = response.status, await response.read()
    except aiohttp.ClientConnectorError as exc:
        raise UnreachableError(
            f"cannot connect to {credential.vendor} ({exc.os_error}); check base_url and the "
            "network"
        ) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        return NoAnswer(f"no answer ({type(exc).__name__})")
    if accepted(status, raw):
        return Acked()
    detail = f"HTTP {status}"
    if status == 413 and len(body.items) > 1:
        return Split(detail)
    if status == 429:
        return Throttled(detail)
    if status >= 500:
        return Retry(detail)
    fatal = fatal_status(credential, status, raw, url)
    if fatal is not None:
        raise fatal
    return rejected(status, raw)


class Destination(Protocol[I]):
    """One configured destination, as the generic load run sees it (see the module's doc)."""

    @property
    def name(self) -> str: ...

    @property
    def vendor(self) -> str: ...  # for messages

    @property
    def models(self) -> Sequence[Model]: ...

    @property
    def scope(self) -> str: ...  # who shares the rate limits (never a secret)

    @property
    def limits(self) -> Mapping[str, Limit]: ...  # per unit

    @property
    def margin_s(self) -> float: ...  # pacing margin between a body's budget and its count

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def hold_lost(self) -> bool: ...  # hold non-idempotent rows after a send without answer

    def item(self, model: Model, row: Mapping[str, Any], now: datetime, cuts: list[str]) -> I:
        """The row as an item (``cuts``: labels of what was truncated); :class:`Invalid`."""
        ...

    def payload(self, item: I) -> Any:
        """What ``item`` sends, JSON-encodable (sizes, dead letters)."""
        ...

    def pack(self, items: Sequence[I], caps: Mapping[str, int]) -> Body[I] | TooLarge:
        """The first body of ``items`` (a prefix of them), at most ``caps`` of each unit."""
        ...

    async def deliver(
        self,
        session: aiohttp.ClientSession,
        body: Body[I],
        answered: Callable[[], Awaitable[None]],
    ) -> Delivery:
        """Send ``body`` once; call ``answered`` once the destination has answered."""
        ...


# --- the result --------------------------------------------------------------------------------


@dataclass
class LoadResult(SingleReport):
    destination: str
    dry_run: bool
    run_id: int | None = None
    outcome: str = "running"
    error: str | None = None
    body_sizes: list[int] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)  # per model
    dead_letters: Counter[str] = field(default_factory=Counter)  # per rule
    rejected_batches: int = 0
    possibly_duplicated: int = 0  # sends of rows an earlier unanswered send may have delivered
    held: int = 0  # rows held after an unanswered send
    truncated: Counter[str] = field(default_factory=Counter)  # "model.attribute" -> rows
    lowered_limits: dict[str, int] = field(default_factory=dict)  # after 429s: unit -> limit
    truncations: list[dict[str, str]] = field(default_factory=list)  # dry run: each cut
    rate_limited: int = 0
    server_errors: int = 0
    splits: int = 0
    waited_s: float = 0.0
    elapsed_s: float = 0.0
    models: tuple[str, ...] = ()  # the destination's models, in its order
    vendor: str = ""  # whom the destination sends to, for messages ("MoEngage")
    once: tuple[str, ...] = ()  # the models whose rows a second send may duplicate

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
class _Pending(Generic[I]):
    """A row to send, as an item, with what its acknowledgement records."""

    item: I
    ack: loads.Ack
    size: int  # bytes of its payload


# --- the run -----------------------------------------------------------------------------------


def loader(
    build: Callable[[Any], Destination[Any]],
) -> Callable[..., Awaitable[LoadResult]]:
    """A ``DestinationType.load``: one run into the destination ``build(settings)`` makes."""

    async def run(
        pool: Pool, session: aiohttp.ClientSession, settings: Any, **options: Any
    ) -> LoadResult:
        return await load(pool, session, build(settings), **options)

    return run


async def load(
    pool: Pool,
    session: aiohttp.ClientSession,
    destination: Destination[Any],
    *,
    only: Sequence[str] = (),
    dry_run_dir: Path | None = None,
    command: str = "load",
    backoff_base_s: float = 1.0,
) -> LoadResult:
    """One load run; with ``dry_run_dir`` nothing is sent or written but the bodies."""
    started = time.monotonic()
    name = destination.name
    result = LoadResult(
        name,
        dry_run=dry_run_dir is not None,
        models=tuple(m.name for m in destination.models),
        vendor=destination.vendor,
        once=tuple(_once(destination.models)),
    )
    progress.watch([result])
    wanted = [m for m in destination.models if not only or m.name in only]
    async with pool.acquire() as conn:
        for model in wanted:
            await check_model(conn, name, model)
    if dry_run_dir is not None:
        await asyncio.to_thread(_empty_folder, dry_run_dir)
        await _run(pool, session, destination, wanted, result, dry_run_dir, backoff_base_s)
        result.outcome = "succeeded"
        result.elapsed_s = time.monotonic() - started
        return result

    async def finish(conn: Connection, frame: Frame) -> None:
        if frame.lost and result.outcome != "succeeded":
            result.outcome, result.error = "failed", frame.lost
        await _finish(conn, result)

    async with exclusive_run(
        pool,
        lock_class=locks.LOAD,
        kind="load",
        source=name,
        command=command,
        keys=[name],
        busy=lambda _keys: (
            f"another load of {name!r} is running against this database; "
            f"wait for it to finish (see `syncer status`)"
        ),
        finish=finish,
        grace_s=destination.timeout_s,  # a body in flight is answered and recorded first
    ) as frame:
        result.run_id = frame.run_id
        result.outcome, result.error = "failed", "the run was cancelled"
        try:
            async with pool.acquire() as conn:
                await loads.recover_inflight(conn, name, _once(destination.models))
            await _run(pool, session, destination, wanted, result, None, backoff_base_s)
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


def _once(models: Sequence[Model]) -> list[str]:
    """The models whose rows a second send may duplicate."""
    return [m.name for m in models if not m.idempotent]


def _empty_folder(folder: Path) -> None:
    """``folder`` exists and holds no bodies of an earlier dry run."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("body-*.json"):
        old.unlink()


async def _finish(conn: Connection, result: LoadResult) -> None:
    assert result.run_id is not None
    await runs.finish_run(conn, result.run_id, result.outcome, result.error)
    await conn.execute(
        "update syncer.runs set counts = $2::jsonb where id = $1",
        result.run_id,
        orjson.dumps(result.to_json()).decode(),
    )


async def _run(
    pool: Pool,
    session: aiohttp.ClientSession,
    destination: Destination[Any],
    models: Sequence[Model],
    result: LoadResult,
    dry_run_dir: Path | None,
    backoff_base_s: float,
) -> None:
    limiter = SharedLimiter(
        pool, destination.scope, dict(destination.limits), margin_s=destination.margin_s
    )
    sender = _Sender(pool, session, destination, result, dry_run_dir, backoff_base_s, limiter)
    now = datetime.now(UTC)
    chunk: list[_Pending[Any]] = []
    chunk_bytes = 0
    letters: list[loads.DeadLetter] = []
    seen: dict[str, set[str]] = {model.name: set() for model in models}
    name = destination.name
    try:
        async for model, row in _pending_rows(pool, name, models, hold=destination.hold_lost):
            if row["_key"] in seen[model.name]:
                # A key is sent at most once per run: the first row of it goes, later ones not.
                letters.append(_duplicate(name, model, row))
                result.dead_letters[loads.DUPLICATE_KEY] += 1
                continue
            seen[model.name].add(row["_key"])
            cuts: list[str] = []
            try:
                item = destination.item(model, row, now, cuts)
            except Invalid as exc:
                letters.append(_dead_letter(model, row, exc.rule, exc.reason))
                result.dead_letters[exc.rule] += 1
                continue
            pending = _Pending(
                item,
                loads.Ack(model.name, row["_key"], row["_hash"]),
                len(orjson.dumps(destination.payload(item))),
            )
            for label in cuts:
                result.truncated[f"{model.name}.{label}"] += 1
                if dry_run_dir is not None:
                    result.truncations.append(
                        {"model": model.name, "key": row["_key"], "cut": label}
                    )
            if not await sender.fits_alone(pending):
                continue
            chunk.append(pending)
            chunk_bytes += pending.size
            if chunk_bytes >= CHUNK_BODIES * destination.max_body_bytes:
                await sender.dead_letter(letters)
                letters = []
                chunk = await sender.send_packed(chunk, final=False)
                chunk_bytes = sum(p.size for p in chunk)
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


def _duplicate(destination: str, model: Model, row: Mapping[str, Any]) -> loads.DeadLetter:
    shown = str(row["_key"]).replace("\x1f", " / ")
    reason = (
        f"the {model.name} model returned {model.key_label} {shown!r} more than once; the "
        f"first row was sent in this run, this one is not (fix "
        f"destinations.{destination}.{model.name}.sql to return one row per key)"
    )
    return _dead_letter(model, row, loads.DUPLICATE_KEY, reason)


def _dead_letter(model: Model, row: Mapping[str, Any], rule: str, reason: str) -> loads.DeadLetter:
    data = {k: v for k, v in row.items() if not k.startswith("_")}
    for key in model.json_columns:
        if isinstance(data.get(key), str):
            data[key] = orjson.loads(data[key])
    text = orjson.dumps(data, default=str).decode()
    return loads.DeadLetter(model.name, row["_key"], row["_hash"], rule, reason, text)


# --- the pending rows --------------------------------------------------------------------------


def pending_query(model: Model, *, hold: bool = False) -> str:
    """The SQL of ``model``'s pending rows ($1: the destination)."""
    return loads.pending_query(
        model.name,
        model.sql,
        key=model.key,
        order=model.order or model.key,
        once=not model.idempotent,
        hold=hold,
    )


async def _pending_rows(
    pool: Pool, destination: str, models: Sequence[Model], *, hold: bool = False
) -> AsyncIterator[tuple[Model, dict[str, Any]]]:
    """Every pending row of every model, merged by the models' order expressions.

    A model whose SQL fails while it runs (a cast of a bad value, a division by zero) is a
    ConfigError naming the model and the database's message."""
    # Released quietly: after a lost connection, the generator may be closed long after.
    conn = await pool.acquire()
    snapshot = conn.transaction(isolation="repeatable_read", readonly=True)
    try:
        await snapshot.start()
        cursors = {}
        for model in models:
            with _model_errors(destination, model.name):
                query = pending_query(model, hold=hold)
                cursors[model.name] = await conn.cursor(query, destination)
        by_name = {m.name: m for m in models}
        rank = {m.name: i for i, m in enumerate(models)}
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

            def order(m: str, live: dict[str, dict[str, Any]] = live) -> tuple[bool, str, int]:
                value = live[m]["_order"]
                # The same order as the SQL's: byte order of the text, nulls last.
                return (value is None, "" if value is None else str(value), rank[m])

            first = min(live, key=order)
            yield by_name[first], buffers[first].pop()
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


async def check_model(conn: Connection, destination: str, model: Model) -> tuple[str, ...]:
    """The optional columns the model has; ConfigError naming the column or the SQL error."""
    where = f"destinations.{destination}.{model.name}.sql"
    try:
        statement = await conn.prepare(f"select * from ({model.sql}) as model limit 0")
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"{where}: the query fails: {exc}; fix the SQL") from None
    found = {a.name: a.type.name for a in statement.get_attributes()}
    problems = []
    present = []
    for column in model.columns:
        kind = found.get(column.name)
        if kind is None:
            if column.required:
                problems.append(
                    f"{where}: no column {column.name!r}; the {model.name} model needs "
                    f"{', '.join(c.name for c in model.columns if c.required)}"
                )
            continue
        if kind not in column.types:
            problems.append(
                f"{where}: column {column.name!r} is {kind}; it must be one of "
                f"{', '.join(column.types)} (cast it, e.g. ::{column.types[0]})"
            )
            continue
        present.append(column)
    if problems:
        raise ConfigError(problems)
    return tuple(c.name for c in present if not c.required)


# --- sending -----------------------------------------------------------------------------------


class _Sender(Generic[I]):
    """Packs, paces, sends and records; one per run."""

    def __init__(
        self,
        pool: Pool,
        session: aiohttp.ClientSession,
        destination: Destination[I],
        result: LoadResult,
        dry_run_dir: Path | None,
        backoff_base_s: float,
        limiter: SharedLimiter,
    ) -> None:
        self.pool = pool
        self.session = session
        self.destination = destination
        self.name = destination.name
        self.result = result
        self.dry_run_dir = dry_run_dir
        self.backoff_base_s = backoff_base_s
        self.limiter = limiter
        self.once = set(_once(destination.models))
        # Units per body: the configured limits, lowered when the destination throttles
        # bodies that fit them (its real limits are lower).
        self.caps = {unit: limit.amount for unit, limit in destination.limits.items()}
        self.window = max((lim.per_seconds for lim in destination.limits.values()), default=1.0)

    async def dead_letter(self, letters: list[loads.DeadLetter]) -> None:
        if letters and self.dry_run_dir is None:
            async with self.pool.acquire() as conn:
                await loads.record_dead_letters(conn, self.name, self.result.run_id, letters)

    def _first(
        self, pending: Sequence[_Pending[I]], start: int, room: Mapping[str, int]
    ) -> Body[I]:
        """The first body of ``pending[start:]``, within the caps and what ``room`` is left."""
        caps = {u: max(1, min(cap, room.get(u, cap))) for u, cap in self.caps.items()}
        packed = self.destination.pack([p.item for p in pending[start:]], caps)
        assert not isinstance(packed, TooLarge), "screened by fits_alone"
        return packed

    async def send_packed(self, pending: list[_Pending[I]], *, final: bool) -> list[_Pending[I]]:
        """Send ``pending`` in bodies; unless ``final``, the rows of what would be the last,
        partly filled body come back, to be packed with the next rows.

        Bodies are as full as the byte limit allows, except that a body is cut to the room
        left in the rate-limit window: bodies that each fill a third of a window would
        otherwise leave a third of every window unused.
        """
        by_item = {id(p.item): p for p in pending}
        unsent = sum(p.size for p in pending)
        start = 0
        while start < len(pending):
            shutdown.check()
            if not final and unsent < 2 * self.destination.max_body_bytes:
                return pending[start:]
            room: Mapping[str, int] = {}
            if self.dry_run_dir is None:
                # Wait for room for the next full body, then cut it to the room there is.
                full = self._first(pending, start, {})
                room = await self.limiter.room(need=dict(full.units))
            packed = self._first(pending, start, room)
            start += len(packed.items)
            batch = [by_item[id(i)] for i in packed.items]
            unsent -= sum(p.size for p in batch)
            await self.send(packed, batch)
        return []

    async def fits_alone(self, p: _Pending[I]) -> bool:
        """Whether the row fits a body by itself; if not, it is dead-lettered."""
        alone = self.destination.pack([p.item], {u: limit.amount for u, limit in self._limits()})
        if isinstance(alone, TooLarge):
            letter = loads.DeadLetter(
                p.ack.model,
                p.ack.key,
                p.ack.hash,
                "too_large",
                alone.reason,
                orjson.dumps(self.destination.payload(p.item)).decode(),
            )
            self.result.dead_letters["too_large"] += 1
            await self.dead_letter([letter])
            return False
        return True

    def _limits(self) -> list[tuple[str, Limit]]:
        return list(self.destination.limits.items())

    async def send(self, body: Body[I], pending: list[_Pending[I]]) -> None:
        """Deliver one body: acknowledged, split, or dead-lettered.

        The run's lease rows stay locked while the body is sent and its answer recorded: a run
        that takes the load over (this one having lost its lock) waits until then, so it never
        sends rows this one has in flight (``store/leases.py``).
        """
        if self.dry_run_dir is not None:
            self.result.body_sizes.append(len(body.data))
            number = len(self.result.body_sizes)
            target = self.dry_run_dir / f"body-{number:05d}.json"
            await asyncio.to_thread(target.write_bytes, body.data)
            self._count_sent(pending)
            return
        async with leases.holding(self.pool):
            await self._send(body, pending)

    async def _send(self, body: Body[I], pending: list[_Pending[I]]) -> None:
        assert self.result.run_id is not None
        name, run_id, vendor = self.name, self.result.run_id, self.destination.vendor
        journal = [(p.ack.model, p.ack.key) for p in pending]
        once = [(p.ack.model, p.ack.key) for p in pending if p.ack.model in self.once]
        used_batches: list[str] = []
        ambiguous = False
        attempts = throttled = 0
        last = "no answer"
        while True:
            attempts += 1
            if attempts > self.destination.max_attempts:
                async with self.pool.acquire() as conn:
                    await loads.forget_inflight(conn, name, used_batches)
                raise FatalError(
                    f"{vendor} did not accept a request after {self.destination.max_attempts} "
                    f"attempts (the last: {last}); its rows stay pending for the next run"
                )
            spent = await self.limiter.acquire(
                dict(body.units), pending_s=self.destination.timeout_s
            )
            batch_id = uuid.uuid4().hex
            used_batches.append(batch_id)
            await leases.still_held()  # no new body once the run lost its lock
            async with self.pool.acquire() as conn:
                # Rows an earlier send delivered maybe: if this copy arrives, they may be twice.
                again = await loads.unanswered(conn, name, once) if once else 0
                await loads.journal_inflight(conn, name, run_id, batch_id, journal)
            try:
                try:
                    answer = await self.destination.deliver(self.session, body, spent.settle)
                finally:
                    await spent.settle()  # idempotent; frees the room a window from now
            except FatalError:
                async with self.pool.acquire() as conn:
                    await loads.forget_inflight(conn, name, used_batches)
                raise
            if isinstance(answer, NoAnswer):
                # The body may have been processed: each of its rows may have arrived.
                self.result.possibly_duplicated += again
                ambiguous = True
                last = answer.detail
                used_batches.remove(batch_id)
                async with self.pool.acquire() as conn:
                    await loads.note_lost_answer(conn, name, run_id, batch_id, once)
                if once and self.destination.hold_lost:
                    log.warning(
                        "%s request ended without an answer (%s); holding its %d rows that may "
                        "not be sent twice until released (syncer load %s --release-held)",
                        vendor,
                        last,
                        len(once),
                        name,
                    )
                    self.result.held += len(once)
                    async with self.pool.acquire() as conn:
                        await loads.forget_inflight(conn, name, used_batches)
                    others = [p for p in pending if p.ack.model not in self.once]
                    if others:  # rows whose second send is harmless are sent again
                        await self.send_packed(others, final=True)
                    return
                log.info("%s request ended without an answer (%s); sending again", vendor, last)
                await asyncio.sleep(self.backoff_base_s * 2 ** (attempts - 1))
                continue
            if isinstance(answer, Acked):
                self.result.possibly_duplicated += again
                await self._acked(body, pending, used_batches, attempts, ambiguous)
                return
            async with self.pool.acquire() as conn:
                await loads.forget_inflight(conn, name, used_batches)
            used_batches.clear()
            if isinstance(answer, Rejected):
                await self._reject(body, pending, answer, attempts)
                return
            last = answer.detail
            if isinstance(answer, Split) and len(pending) > 1:
                self.result.splits += 1
                half = len(pending) // 2
                for part in (pending[:half], pending[half:]):
                    await self.send_packed(part, final=True)
                return
            if isinstance(answer, Throttled):
                # Nothing was applied. Everyone using the limits waits a window; a body
                # refused again after that is over the destination's real limits.
                self.result.rate_limited += 1
                throttled += 1
                attempts -= 1  # throttling is not a failed attempt
                if throttled > MAX_THROTTLED:
                    raise FatalError(
                        f"{vendor} answered 429 (rate limited) {throttled} times to one "
                        "request, waiting a full window each time; its rows stay pending for "
                        "the next run. Another client may be using the workspace's limits, or "
                        f"[destinations.{name}.rate_limit] is above them: lower it"
                    )
                await self.limiter.hold_off(self.window)
                if throttled >= 2 and self._lower_limits(body) and len(pending) > 1:
                    await self.send_packed(pending, final=True)
                    return
                continue
            # Retry, or a split of one row: not applied, or not knowably; never a dead letter.
            self.result.server_errors += 1
            await asyncio.sleep(min(self.window, self.backoff_base_s * 2 ** (attempts - 1)))

    async def _acked(
        self,
        body: Body[I],
        pending: list[_Pending[I]],
        used_batches: list[str],
        attempts: int,
        ambiguous: bool,
    ) -> None:
        assert self.result.run_id is not None
        name, run_id = self.name, self.result.run_id

        async def acked(conn: Connection) -> None:
            await loads.record_acks(conn, name, run_id, [p.ack for p in pending], used_batches)
            await loads.record_batch(
                conn,
                run_id=run_id,
                destination=name,
                outcome="acked",
                size=len(body.data),
                units=body.units,
                attempts=attempts,
                ambiguous=ambiguous,
            )

        await leases.record_answer(self.pool, acked)  # fenced; survives a lost connection
        self.result.body_sizes.append(len(body.data))
        self._count_sent(pending)

    def _lower_limits(self, body: Body[I]) -> bool:
        """Halve the per-window limits below what ``body`` carried; whether any was lowered.

        The destination refused the body although a full window had passed: its units are
        over the destination's real limit, lower than the configured one."""
        lowered = False
        for unit, carried in body.units.items():
            if unit not in self.caps:
                continue
            cap = max(1, carried // 2)
            if carried > 0 and cap < self.caps[unit]:
                self.caps[unit] = cap
                limit = self.limiter.limits[unit]
                self.limiter.limits[unit] = Limit(min(limit.amount, cap), limit.per_seconds)
                self.result.lowered_limits[unit] = cap
                lowered = True
        if lowered:
            log.warning(
                "%s throttled a body of %s a full window apart: its limits are lower than "
                "rate_limit; sending at most %s per window",
                self.destination.vendor,
                dict(body.units),
                self.caps,
            )
        return lowered

    async def _reject(
        self, body: Body[I], pending: list[_Pending[I]], answer: Rejected, attempts: int
    ) -> None:
        assert self.result.run_id is not None
        refused = [p for p in pending if answer.keys is None or p.ack.key in answer.keys]
        taken = [p for p in pending if answer.keys is not None and p.ack.key not in answer.keys]
        letters = [
            loads.DeadLetter(
                p.ack.model,
                p.ack.key,
                p.ack.hash,
                answer.rule,
                answer.reason,
                orjson.dumps(self.destination.payload(p.item)).decode(),
            )
            for p in refused
        ]
        self.result.rejected_batches += 1
        self.result.dead_letters[answer.rule] += len(letters)
        run_id, name = self.result.run_id, self.name

        async def record(conn: Connection) -> None:
            if taken:
                await loads.record_acks(conn, name, run_id, [p.ack for p in taken], [])
            await loads.record_dead_letters(conn, name, run_id, letters)
            await loads.record_batch(
                conn,
                run_id=run_id,
                destination=name,
                outcome="rejected",
                size=len(body.data),
                units=body.units,
                attempts=attempts,
                ambiguous=False,
                request_id=answer.request_id,
                error=answer.reason,
            )

        if taken:
            await leases.record_answer(self.pool, record)
            self._count_sent(taken)
        else:
            async with self.pool.acquire() as conn:
                await record(conn)

    def _count_sent(self, pending: list[_Pending[I]]) -> None:
        for p in pending:
            self.result.sent[p.ack.model] += 1


# --- `syncer status` ---------------------------------------------------------------------------


def statuses(
    build: Callable[[Any], Destination[Any]],
) -> Callable[[Connection, Any], Awaitable[list[ModelStatus]]]:
    """A ``DestinationType.status``: :func:`model_statuses` of the destination ``build`` makes."""

    async def status(conn: Connection, settings: Any) -> list[ModelStatus]:
        return await model_statuses(conn, build(settings))

    return status


async def model_statuses(conn: Connection, destination: Destination[Any]) -> list[ModelStatus]:
    """Per model of the destination: pending, sent, dead letters by reason, unanswered or held
    rows, and what the last load truncated."""
    name, hold = destination.name, destination.hold_lost
    names = [m.name for m in destination.models]
    counts = await loads.model_counts(conn, name, names)
    last = await conn.fetchrow(
        "select counts from syncer.runs where kind = 'load' and source = $1"
        " and counts is not null order by id desc limit 1",
        name,
    )
    last_counts = json_object(last["counts"]) if last else {}
    truncated = last_counts.get("truncated") or {}
    duplicated = await conn.fetchval(
        "select coalesce(sum((counts->>'possibly_duplicated_events')::bigint), 0)"
        " from syncer.runs where kind = 'load' and source = $1",
        name,
    )
    out = []
    for model in destination.models:
        try:
            pending = await conn.fetchval(
                f"select count(*) from ({pending_query(model, hold=hold)}) p", name
            )
        except Exception:  # a broken model is reported by `syncer load`, not here
            pending = -1
        examples = [
            f"{r['rule']}: {r['reason']}"
            for r in await conn.fetch(
                "select distinct on (rule) rule, reason from syncer.dead_letters"
                " where destination = $1 and model = $2 order by rule, last_at desc",
                name,
                model.name,
            )
        ]
        count = counts[model.name]
        out.append(
            ModelStatus(
                model.name,
                pending,
                count["sent"],
                count["dead_letters"],
                examples,
                unanswered=count["unanswered"],
                held=count["held"] if hold else 0,
                possibly_duplicated=int(duplicated) if not model.idempotent else 0,
                truncated={
                    label.split(".", 1)[1]: int(n)
                    for label, n in truncated.items()
                    if label.startswith(f"{model.name}.")
                },
            )
        )
    return out
