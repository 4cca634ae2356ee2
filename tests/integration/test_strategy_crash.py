"""Every extraction strategy, killed with SIGKILL mid-stream, and read while its source changes.

For each strategy of ``syncer.extract`` one stream, picked from MOCO's catalog by its strategy
(the test fails if a strategy has none), is read twice over:

* **kill -9**: ``python -m syncer sync moco --stream S`` runs as a real process against the
  sandbox and is SIGKILLed in the middle of S, twice: first inside the transaction storing a
  page (the test holds a lock on S's table and lets the answers through one by one until a
  commit waits for it), then, the rerun resuming, while it waits for an answer. The sandbox
  holds back the answers to S's requests after the first few (a request hook), so where the
  process stands when it dies does not depend on the machine's speed. After each kill records
  change at the source, among those listed first (a deletion there shifts every later record
  across the page boundaries of an offset-paged read): deleted only after the first kill (no
  record's stamp shows that), created, updated and deleted after the second. Then a run to
  the end: S must hold the source, or, read from a watermark, at least whatever the next run
  would not read again; and, where deletions are found by ``syncer sweep``, after a sweep and
  one more run, S's table must equal the source exactly.
* **drift**: records are deleted, then created, updated and deleted at the source while S is
  read (right after some of its pages are served); after one more quiet run (and sweep) S's
  table must equal the source exactly, and no record the source still has may ever be marked
  deleted.

"Exactly" per strategy: a record list holds one live row per record, ``data`` as served
(volatile fields aside), ``_parent_id`` its parent, and the records the source no longer has
marked ``_deleted_at``; a detail stream one live row per live record of its list, as its detail
read serves it; a report, per period, exactly one answer the source gave for it (the latest for
an open period: closed periods are pulled once and kept); an object, one row as served. And the
stream's position is at rest: no walk, listing or per-parent walk left in progress.

One concept: every strategy's guarantees under kill -9 and drift, checked alike; the kill, the
changes and the comparison are the same for each, only the stream and what "exact" means for
its strategy differ.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from syncer.catalog import STRATEGIES, Stream
from syncer.config import RateLimit
from syncer.extract.reports import Period, is_open, period_key, periods
from syncer.runners.sweep import sweep_source
from syncer.runners.sync import sync_source
from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings, RequestRecord
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.moco_routes import Routes
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moco.catalog import CATALOG
from tests.conftest import SANDBOX_KEY, moco_source, wait_for_dead_sessions

KINDS = (
    "sorted",
    "unsorted",
    "unsorted-clock",
    "unsorted-unheaded",
    "listing",
    "listing-unheaded",
    "unpaged",
    "parents",
    "report",
    "object",
    "detail",
)
# Which streams stand for each kind (in catalog order; a report: the one with most rows).
CHOICES: dict[str, Callable[[Stream], bool]] = {
    "sorted": lambda s: s.strategy == "sorted" and s.parent is None and s.takes("per_page"),
    "unsorted": lambda s: (
        s.strategy == "unsorted"
        and s.parent is None
        and s.takes("per_page")
        and s.paged_headers
        and s.replication_key is not None
    ),
    # Records without updated_at: the watermark is the server's clock.
    "unsorted-clock": lambda s: (
        s.strategy == "unsorted"
        and s.parent is None
        and s.takes("per_page")
        and s.paged_headers
        and s.replication_key is None
    ),
    # Lists without paging headers: a short page ends them, nothing shows a change while they
    # are read (an offset walk reads such a query again at its end, a listing until two passes
    # agree); MOCO's pages of 100, where per_page is not documented.
    "unsorted-unheaded": lambda s: (
        s.strategy == "unsorted" and s.parent is None and not s.paged_headers and _pages_of_100(s)
    ),
    "listing": lambda s: s.strategy == "listing" and s.parent is None and s.takes("per_page"),
    "listing-unheaded": lambda s: (
        s.strategy == "listing" and s.parent is None and not s.paged_headers and _pages_of_100(s)
    ),
    "unpaged": lambda s: s.strategy == "unpaged" and s.parent is None,
    # A list per parent record, read by updated_after per parent (not through a list of its own).
    "parents": lambda s: (
        s.parent is not None and s.parent.twin is None and s.takes("updated_after")
    ),
    "report": lambda s: s.strategy == "report" and s.takes("page") and s.period is not None,
    "object": lambda s: s.strategy == "object",
    "detail": lambda s: s.strategy == "detail" and not s.aggregate,
}
# The kills of each kind: the stream's requests answered before each, and whether it lands in
# the transaction of a page (else while an answer is awaited). About a third of what the stream
# needs at first, and a little more of what is left after.
KILLS: dict[str, tuple[tuple[int, bool], ...]] = {
    "sorted": ((5, True), (3, False)),
    "unsorted": ((4, True), (2, False)),
    "unsorted-clock": ((3, True), (2, False)),
    "unsorted-unheaded": ((1, True), (1, False)),
    "listing": ((3, True), (2, False)),
    "listing-unheaded": ((1, True), (1, False)),
    "unpaged": ((0, True), (0, False)),
    "parents": ((6, True), (3, False)),
    "report": ((9, True), (5, False)),
    "object": ((0, True), (0, False)),
    "detail": ((6, True), (3, False)),
}
# The stream's requests after which the source changes while it is read (else: 2 and 5, or 1).
DRIFT_AT = {
    # Its 8 pages: the first change (a deletion, which only X-Total shows) must make the
    # listing read again; the second comes as it starts over.
    "listing": (2, 9),
    "unsorted-unheaded": (2, 3),
    "listing-unheaded": (2, 3),
}
PER_PAGE = 3
MONTHS = 4  # report_months: two closed periods, and two open ones
OPEN_MONTHS = 2  # report_open_months
COUNTS = {
    "activities": 45,
    "projects": 16,
    "companies": 30,
    "contacts": 12,
    "users": 12,
    "invoices": 20,
    "offers": 10,
    "deals": 10,
}
SETTINGS: dict[str, Any] = {
    "per_page": PER_PAGE,
    "page_concurrency": 4,
    "concurrency": 2,
    "overlap_s": 0.0,  # no re-read window: a watermark too far shows as a record missed
    "report_months": MONTHS,
    "report_open_months": OPEN_MONTHS,
    "details_budget": 1000,
    "rate_limit": RateLimit(1000, 1.0),
}
FAST = {"backoff_base_s": 0.01}
ROUTES = Routes(CATALOG)


@pytest.fixture
def moco() -> MocoSandbox:
    settings = MocoSandboxSettings(rate_limit_requests=100_000, rate_limit_window_s=1.0)
    # Lists paged by 100 whatever per_page says: long enough for three pages.
    long = {s.name: 250 for k in KINDS if k.endswith("-unheaded") for s in candidates(k)[:1]}
    return MocoSandbox(MocoData(seed=5, counts={**COUNTS, **long}), settings)


# --- which stream, and what it needs ----------------------------------------------------------


def _pages_of_100(stream: Stream) -> bool:
    return stream.takes("page") and not stream.takes("per_page")


def candidates(kind: str) -> list[Stream]:
    return [s for s in CATALOG if CHOICES[kind](s)]


def representative(kind: str, moco: MocoSandbox) -> Stream:
    found = candidates(kind)
    if not found:
        pytest.fail(f"no stream of MOCO's catalog is read by the {kind} strategy any more")
    if kind == "report":  # the one with the most rows a period, so that a period takes pages
        month = periods("month", 1, datetime.now(UTC).date())[0]
        found.sort(key=lambda s: -len(moco.data.report_rows(s.name, month)))
    return found[0]


def upstream(stream: Stream) -> list[str]:
    """The streams ``stream`` is read for (its parent, a detail's list), synced before it."""
    up = CATALOG.upstream(stream.name)
    return [] if up is None else [up]


def watched(stream: Stream) -> bool:
    """Whether a run takes changes made just before it for changes while it read (a full
    listing, an offset walk of a list of its own)."""
    return stream.parent is None and stream.strategy in ("listing", "unsorted")


def reads_everything(stream: Stream) -> bool:
    """Whether every run reads the whole list (and finds deletions by what it no longer
    lists), not just what changed."""
    return stream.strategy in ("listing", "unpaged", "object")


def finds_deletions(stream: Stream) -> bool:
    return stream.deletions != "none"


def test_every_strategy_has_a_representative_stream() -> None:
    """Each kind names a stream of the catalog, and together they cover every strategy (one
    added to the catalog needs a kind here)."""
    first = {k: next(iter(candidates(k)), None) for k in KINDS}
    assert [k for k, s in first.items() if s is None] == []
    assert {s.strategy for s in first.values() if s} >= set(STRATEGIES)
    assert all(
        (s is not None and s.parent is not None) == (k == "parents") for k, s in first.items()
    )


# --- running syncer ----------------------------------------------------------------------------


def source(sandbox: RunningSandbox, names: list[str]) -> Any:
    return moco_source(sandbox.moco_base_url, streams=tuple(names), **SETTINGS)


def write_config(path: Path, sandbox: RunningSandbox, names: list[str]) -> None:
    limit = SETTINGS["rate_limit"]
    path.write_text(
        "\n".join(
            [
                "[sources.moco]",
                'type = "moco"',
                f'base_url = "{sandbox.moco_base_url}"',
                'api_key_env = "MOCO_API_KEY"',
                f"streams = {json.dumps(names)}",
                f"rate_limit = {{ requests = {limit.requests}, per_seconds = 1 }}",
                f"per_page = {SETTINGS['per_page']}",
                f"page_concurrency = {SETTINGS['page_concurrency']}",
                f"concurrency = {SETTINGS['concurrency']}",
                'overlap = "0s"',
                f"report_months = {SETTINGS['report_months']}",
                f"report_open_months = {SETTINGS['report_open_months']}",
                f"details_budget = {SETTINGS['details_budget']}",
            ]
        )
        + "\n"
    )


async def sync(pool: Any, sandbox: RunningSandbox, names: list[str]) -> Any:
    async with aiohttp.ClientSession() as session:
        result = await sync_source(pool, session, source(sandbox, names), **FAST)
    assert result.ok, result.errors
    return result


async def converge(pool: Any, sandbox: RunningSandbox, names: list[str]) -> Any:
    """A run to the end, after which each stream holds what the source has, or, read from a
    watermark, at least whatever the next run would not read again (an offset walk that saw
    the list move under it keeps its watermark back, and the next run reads the rest); where
    deletions are found by ``syncer sweep``, a sweep and one more run (a per-parent list's
    and a detail's rows go with their parent's). The first run's result."""
    first = await sync(pool, sandbox, names)
    problems = []
    for name in names:
        problems += await after_one_run(pool, sandbox.moco, CATALOG[name])
    assert problems == [], "after one run to the end:\n" + "\n".join(problems)
    swept = [n for n in names if CATALOG[n].sweepable]
    if swept:
        async with aiohttp.ClientSession() as session:
            result = await sweep_source(
                pool, session, source(sandbox, names), streams=swept, **FAST
            )
        assert result.ok, result.errors
        await sync(pool, sandbox, names)
    return first


async def next_second() -> None:
    """Changes made in the second a run starts look, at MOCO's whole-second timestamps, as if
    made while it read (a full listing reads again, an offset walk keeps its watermark where
    it began): start in the next one."""
    now = time.time()
    await asyncio.sleep(math.ceil(now) - now + 0.05)


async def settle(moco: MocoSandbox) -> None:
    """Until requests a killed process had sent have landed and been answered."""
    seen = -1
    while seen != len(moco.requests) or moco.in_flight:
        seen = len(moco.requests)
        await asyncio.sleep(0.2)


def stream_of(record: RequestRecord) -> str | None:
    route = ROUTES.find(record.path.removeprefix("/api/v1"))
    return None if route is None else route.stream.name


# --- the kill ----------------------------------------------------------------------------------


class Gate:
    """A sandbox hook holding back the answers to ``stream``'s requests after the first
    ``allowed``, until they are allowed or the gate opens."""

    def __init__(self, stream: str, allowed: int) -> None:
        self.stream, self.allowed = stream, allowed
        self.seen = 0  # the stream's requests received
        self.held = 0  # answers held back now
        self.opened = False

    def __call__(self, record: RequestRecord) -> Awaitable[None] | None:
        if self.opened or stream_of(record) != self.stream:
            return None
        self.seen += 1
        return self._hold(self.seen) if self.seen > self.allowed else None

    async def _hold(self, number: int) -> None:
        self.held += 1
        try:
            while number > self.allowed and not self.opened:
                await asyncio.sleep(0.005)
        finally:
            self.held -= 1


@dataclass
class Killed:
    walk: dict[str, Any] | None  # the stream's position as the killed run left it
    state: dict[str, Any]


async def end_sessions(pool: Any) -> None:
    """End a killed process's database sessions before the lock they wait for is released: a
    session waiting for a lock notices that its client is gone only once it has the lock, and
    would then complete the statement it was given (a statement of its own, outside a
    transaction, would commit). Ended, the statement never ran, as if the process had died
    just before sending it."""
    await pool.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where application_name = 'syncer' and datname = current_database()"
    )


async def waiting_for_a_lock(pool: Any) -> str | None:
    """The statement a syncer session waits with for a lock, if one does."""
    query: str | None = await pool.fetchval(
        "select query from pg_stat_activity where application_name = 'syncer'"
        " and datname = current_database() and wait_event_type = 'Lock' limit 1"
    )
    return query


def tail(log: Path) -> str:
    """The end of a killed process's output, for a failure's message."""
    return log.read_text()[-3000:]


async def spawn_sync(config: Path, db_url: str, names: list[str], log: Path) -> Any:
    """``syncer sync moco --stream ...`` as a real process (its output into ``log``)."""
    env = {k: v for k, v in os.environ.items() if k != "SYNCER_CONFIG"}
    env.update(SYNCER_DATABASE_URL=db_url, MOCO_API_KEY=SANDBOX_KEY)
    args = ["-m", "syncer", "sync", "moco", "--config", str(config), "-v"]
    for name in names:
        args += ["--stream", name]
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args, env=env, stdout=out, stderr=out
        )


async def position(pool: Any, stream: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The stream's walk (None: none in progress) and state, in ``syncer.streams``."""
    row = await pool.fetchrow(
        "select walk, state from syncer.streams where source = 'moco' and stream = $1", stream
    )
    walk = orjson.loads(row["walk"]) if row and row["walk"] else None
    state = orjson.loads(row["state"]) if row and row["state"] else {}
    return walk, state


async def kill_mid_stream(
    pool: Any,
    moco: MocoSandbox,
    config: Path,
    db_url: str,
    names: list[str],
    stream: Stream,
    *,
    after: int,
    committing: bool,
    log: Path,
) -> Killed:
    """``syncer sync moco`` as a real process, SIGKILLed once ``after`` of ``stream``'s requests
    were answered: while it waits for the next answer, or (``committing``) inside the
    transaction storing a page."""
    gate = Gate(stream.name, after)
    moco.hooks.append(gate)
    lock = None
    child = await spawn_sync(config, db_url, names, log)
    try:
        async with asyncio.timeout(60):
            while not gate.held:
                assert child.returncode is None, (
                    f"the run ended before {stream.name} asked more than {after} requests: "
                    f"make the data bigger; {tail(log)}"
                )
                await asyncio.sleep(0.01)
            if committing:
                lock = await pool.acquire()
                transaction = lock.transaction()
                await transaction.start()
                await lock.execute(f'lock table moco."{stream.name}" in share mode')
                while not await waiting_for_a_lock(pool):
                    assert child.returncode is None, (
                        f"the run ended before it stored a page of {stream.name}: {tail(log)}"
                    )
                    if gate.held:  # let the next answer through
                        gate.allowed = max(gate.allowed, gate.seen - gate.held + 1)
                    await asyncio.sleep(0.01)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
        gate.opened = True
        moco.hooks.remove(gate)
        if lock is not None:
            await end_sessions(pool)
            await transaction.rollback()
            await pool.release(lock)
    assert child.returncode == -signal.SIGKILL, tail(log)
    await wait_for_dead_sessions(pool)
    await settle(moco)
    walk, state = await position(pool, stream.name)
    return Killed(walk, state)


# --- the source changing -----------------------------------------------------------------------


@dataclass
class Versions:
    """A report's rows per period, each time the source changed (the first: before any)."""

    stream: str
    seen: list[dict[Period, list[bytes]]] = field(default_factory=list)

    def take(self, moco: MocoSandbox) -> None:
        if CATALOG[self.stream].snapshots:  # (nothing to keep of another stream)
            self.seen.append({p: served_rows(moco, self.stream, p) for p in report_periods()})


def report_periods() -> list[Period]:
    return periods("month", MONTHS, datetime.now(UTC).date())


def served_rows(moco: MocoSandbox, stream: str, period: Period) -> list[bytes]:
    return sorted(canonical(r) for r in moco.data.report_rows(stream, period))


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def change(
    moco: MocoSandbox, kind: str, stream: Stream, *, scale: int = 1, deletions: bool = False
) -> None:
    """Records of ``stream`` (or of what it is made from) updated, created and deleted (only
    deleted: ``deletions``, which no record's stamp shows). Of a record list, among the first
    by id, which an offset-paged read under way has passed: a deletion there moves every later
    record one place forward, across the page boundaries, and records updated there are not
    served again."""
    data = moco.data
    if stream.strategy in ("sorted", "unsorted", "listing", "unpaged"):
        first = [int(r["id"]) for r in data.live(stream.name)[: 3 * scale]]
        if not deletions:
            data.update(stream.name, 2 * scale, ids=first[: 2 * scale])
            data.create(stream.name, scale)
        data.delete(stream.name, scale, ids=first[2 * scale :])
        if kind == "parents":  # a parent goes, and its lists with it (they answer 404)
            assert stream.parent is not None
            data.delete(stream.parent.stream, 1)
    elif kind == "detail":
        assert stream.detail_of is not None
        if not deletions:
            data.update(stream.detail_of, 2 * scale)
            data.create(stream.detail_of, scale)
        data.delete(stream.detail_of, scale)
        # ... and the account elsewhere: an unchanged record's detail stays as it was.
        data.create("companies", 1)
        data.delete("offers", 1)
    elif kind == "report":  # what its rows are made of
        data.create("users", 1)
        data.delete("projects", 1)
    else:  # the object: the account's users (its first ones) change
        before = data.hourly_rates(stream.name)
        for _ in range(5):
            data.delete("users", 1)
            if data.hourly_rates(stream.name) != before:
                break


class Drift:
    """A sandbox hook changing the source right after ``stream``'s requests number ``at``
    were answered: deleting records the first time, then changing them every way."""

    def __init__(
        self, moco: MocoSandbox, kind: str, stream: Stream, at: tuple[int, ...], versions: Any
    ) -> None:
        self.moco, self.kind, self.stream, self.at = moco, kind, stream, at
        self.versions = versions
        self.seen = 0
        self.changes = 0

    def __call__(self, record: RequestRecord) -> None:
        if stream_of(record) != self.stream.name:
            return
        self.seen += 1
        if self.seen in self.at:  # once this answer is made: the next ones see the change
            asyncio.get_running_loop().call_soon(self._change)

    def _change(self) -> None:
        change(self.moco, self.kind, self.stream, deletions=self.changes == 0)
        if self.versions is not None:
            self.versions.take(self.moco)
        self.changes += 1


# --- what the warehouse must hold --------------------------------------------------------------


def volatile(stream: Stream) -> tuple[str, ...]:
    of = CATALOG[stream.detail_of].volatile if stream.detail_of else ()
    return (*stream.volatile, *of)


def strip(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


async def after_one_run(pool: Any, moco: MocoSandbox, stream: Stream) -> list[str]:
    """What a stream must hold after one run to the end, whatever happened before."""
    if stream.strategy in ("sorted", "unsorted"):
        return await behind_watermark(pool, moco, stream)
    if stream.strategy in ("listing", "unpaged"):  # deletions found by the run itself
        return await record_problems(pool, moco, stream)
    if stream.strategy == "detail":  # a record deleted is found by the sweep
        return await record_problems(pool, moco, stream, deletions=False)
    return []  # reports and objects: exact after this run, checked at the end


async def behind_watermark(pool: Any, moco: MocoSandbox, stream: Stream) -> list[str]:
    """Records the table lacks, or holds an older version of, that the next run would not read
    again: changed no later than (the second of) the watermark it starts from (a per-parent
    list's: its parent's)."""
    name, skip = stream.name, volatile(stream)
    rows = await pool.fetch(f'select id, data from moco."{name}" where _deleted_at is null')
    stored = {r["id"]: strip(orjson.loads(r["data"]), skip) for r in rows}
    if stream.parent is None:
        watermarks = {
            None: await pool.fetchval(
                "select watermark from syncer.streams where source = 'moco' and stream = $1",
                name,
            )
        }
    else:
        watermarks = {
            int(r["parent"]): r["watermark"]
            for r in await pool.fetch(
                "select parent, watermark from syncer.parent_positions"
                " where source = 'moco' and stream = $1",
                name,
            )
        }
    lost = []
    for record in moco.data.records(name):
        if stored.get(record["id"]) == strip(record, skip):
            continue
        parent = moco.data.parent_of(name, record["id"]) if stream.parent else None
        watermark = watermarks.get(parent)
        if watermark is None:
            continue  # read in full next time
        # updated_after is sent in whole seconds, and is exclusive.
        changed = moco.data.changed_at_ms(name, record)
        if changed is None or changed <= int(watermark.timestamp()) * 1000:
            lost.append(record["id"])
    problems = await record_problems(pool, moco, stream, deletions=False, missing=False)
    if lost:
        problems.append(f"{name}: records not stored as served, behind the watermark: {lost}")
    return problems


async def record_problems(
    pool: Any,
    moco: MocoSandbox,
    stream: Stream,
    *,
    deletions: bool = True,
    missing: bool = True,
) -> list[str]:
    """How a record list's (or a detail stream's) table differs from the source; without
    ``deletions``, records gone at the source may still be live; without ``missing``, records
    may be missing or older (only what is wrong is counted: a false deletion, a wrong
    parent)."""
    name, skip = stream.name, volatile(stream)
    parent = ", _parent_id" if stream.parent else ", null as _parent_id"
    rows = await pool.fetch(f'select id, data, _deleted_at{parent} from moco."{name}"')
    if stream.detail_of is not None:
        of = stream.detail_of
        served = {
            r["id"]: strip(moco.data.detail(name, r["id"]) or {}, skip) for r in moco.data.live(of)
        }
    else:
        served = {r["id"]: strip(r, skip) for r in moco.data.records(name)}
    live = {r["id"]: strip(orjson.loads(r["data"]), skip) for r in rows if not r["_deleted_at"]}
    marked = {r["id"] for r in rows if r["_deleted_at"] is not None}
    problems = []
    if missing and (lacking := sorted(served.keys() - live.keys())):
        problems.append(f"{name}: {len(lacking)} of {len(served)} records missing: {lacking}")
    if missing and (
        differ := sorted(i for i in served.keys() & live.keys() if served[i] != live[i])
    ):
        problems.append(f"{name}: {len(differ)} rows differ from the record served: {differ}")
    if wrong := sorted(marked & served.keys()):
        problems.append(f"{name}: records the source has are marked deleted: {wrong}")
    if deletions and finds_deletions(stream) and (haunting := sorted(live.keys() - served.keys())):
        problems.append(f"{name}: records the source deleted are not marked: {haunting}")
    if stream.parent is not None:
        placed = {r["id"]: r["_parent_id"] for r in rows}
        if bad := sorted(i for i in served if placed.get(i) != moco.data.parent_of(name, i)):
            problems.append(f"{name}: rows under a wrong parent: {bad}")
    return problems


async def false_deletions(pool: Any, moco: MocoSandbox, stream: Stream) -> list[int]:
    """Rows marked deleted whose record the source still has."""
    if stream.snapshots or stream.strategy == "object":
        return []
    rows = await pool.fetch(f'select id from moco."{stream.name}" where _deleted_at is not null')
    alive = (
        {r["id"] for r in moco.data.live(stream.detail_of)}
        if stream.detail_of
        else {r["id"] for r in moco.data.live(stream.name)}
    )
    return sorted(r["id"] for r in rows if r["id"] in alive)


async def report_problems(
    pool: Any, moco: MocoSandbox, stream: Stream, wanted: dict[Period, list[list[bytes]]]
) -> list[str]:
    """Each period holds one of the answers ``wanted`` for it, and no other period is held."""
    rows = await pool.fetch(f'select period_start, period_end, data from moco."{stream.name}"')
    held: dict[Period, list[bytes]] = {}
    for r in rows:
        held.setdefault((r["period_start"], r["period_end"]), []).append(
            canonical(orjson.loads(r["data"]))
        )
    problems = []
    if extra := set(held) - set(wanted):
        problems.append(f"{stream.name}: rows of periods never asked for: {sorted(extra)}")
    for period, answers in wanted.items():
        got = sorted(held.get(period, []))
        if got not in answers:
            counts = [len(a) for a in answers]
            problems.append(
                f"{stream.name} {period_key(period)}: {len(got)} rows, none of the answers "
                f"served for it ({counts} rows)"
            )
    return problems


async def object_problems(pool: Any, moco: MocoSandbox, stream: Stream) -> list[str]:
    rows = await pool.fetch(f'select id, data from moco."{stream.name}" where _deleted_at is null')
    got = [(r["id"], orjson.loads(r["data"])) for r in rows]
    if got != [("current", moco.data.hourly_rates(stream.name))]:
        return [f"{stream.name}: {len(got)} rows, not the one object served"]
    return []


async def duplicates(pool: Any, stream: Stream) -> list[str]:
    key = "period_start, period_end, key" if stream.snapshots else "id"
    rows = await pool.fetch(
        f'select {key}, count(*) from moco."{stream.name}" group by {key} having count(*) > 1'
    )
    return [f"{stream.name}: a key stored twice: {dict(r)}" for r in rows]


async def state_problems(pool: Any, stream: Stream) -> list[str]:
    """The stream's position at rest once a run ended: nothing left half-read."""
    name = stream.name
    row = await pool.fetchrow(
        "select watermark, walk, state, last_success_at from syncer.streams"
        " where source = 'moco' and stream = $1",
        name,
    )
    if row is None:
        return [f"{name}: no position in syncer.streams"]
    problems = []
    if row["walk"] is not None:
        problems.append(f"{name}: a walk left in progress: {row['walk']}")
    if row["last_success_at"] is None:
        problems.append(f"{name}: no success recorded")
    seen = await pool.fetchval(
        "select count(*) from syncer.seen_ids where source = 'moco' and stream = $1", name
    )
    if seen:
        problems.append(f"{name}: {seen} ids of a listing left in syncer.seen_ids")
    if stream.strategy in ("sorted", "unsorted") and stream.parent is None:
        newest = await pool.fetchval(f'select max(updated_at) from moco."{name}"')
        watermark = row["watermark"]
        if watermark is None:
            # Records without updated_at: a walk checks at its end whether anything changed
            # since a second before it began, and changes just before count (it then keeps
            # the watermark where it was: none, on a first read).
            if stream.replication_key is not None:
                problems.append(f"{name}: no watermark")
        elif stream.replication_key and newest is not None and watermark > newest:
            problems.append(f"{name}: watermark {watermark} past the newest record {newest}")
        elif watermark > datetime.now(UTC):
            problems.append(f"{name}: watermark {watermark} in the future")
    if stream.parent is not None:
        positions = await pool.fetch(
            "select parent, walk from syncer.parent_positions"
            " where source = 'moco' and stream = $1",
            name,
        )
        if busy := [p["parent"] for p in positions if p["walk"] is not None]:
            problems.append(f"{name}: walks left in progress under parents {busy}")
        live = {
            str(r["id"])
            for r in await pool.fetch(
                f'select id from moco."{stream.parent.stream}" where _deleted_at is null'
            )
        }
        if gone := sorted({p["parent"] for p in positions} - live):
            problems.append(f"{name}: positions kept for parents that are gone: {gone}")
    if stream.snapshots:
        today = datetime.now(UTC).date()
        done = set(orjson.loads(row["state"] or "{}").get("done", ()))
        closed = {period_key(p) for p in report_periods() if not is_open(p, OPEN_MONTHS, today)}
        if closed - done:
            problems.append(f"{name}: closed periods not recorded as pulled: {closed - done}")
    return problems


async def run_outcomes(pool: Any) -> list[str]:
    return [r["outcome"] for r in await pool.fetch("select outcome from syncer.runs order by id")]


def today() -> date:
    return datetime.now(UTC).date()


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_killed_twice_mid_read_converges_exactly(
    kind: str,
    db_url: str,
    pool: Any,
    sandbox: RunningSandbox,
    moco: MocoSandbox,
    tmp_path: Path,
) -> None:
    """Killed inside the transaction of a page; the source changes; the rerun, resuming, is
    killed while it waits for an answer; the source changes again; a run to the end (and a
    sweep) stores the stream exactly."""
    stream = representative(kind, moco)
    names = [*upstream(stream), stream.name]
    config = tmp_path / "schedules.toml"
    write_config(config, sandbox, names)
    if stream.strategy in ("unpaged", "object"):  # one request: killed, a run stores nothing
        await sync(pool, sandbox, names)  # so there is something to find deleted or replace
    versions = Versions(stream.name)
    versions.take(moco)
    pulled: dict[str, int] = {}  # a report's periods: the version of the source they hold
    kills: list[Killed] = []
    for number, (after, committing) in enumerate(KILLS[kind]):
        killed = await kill_mid_stream(
            pool,
            moco,
            config,
            db_url,
            names,
            stream,
            after=after,
            committing=committing,
            log=tmp_path / f"killed-{number}.log",
        )
        kills.append(killed)
        for key in killed.state.get("done", ()):
            pulled.setdefault(key, number)
        assert await false_deletions(pool, moco, stream) == []
        change(moco, kind, stream, scale=2, deletions=number == 0)
        versions.take(moco)
    if watched(stream):
        await next_second()

    result = await converge(pool, sandbox, names)
    problems = await duplicates(pool, stream)
    if stream.snapshots:
        # A closed period keeps the answer of the run that pulled it first; every other one
        # is pulled again at the end.
        def held(p: Period) -> list[bytes]:
            first = pulled.get(period_key(p))
            kept = first is not None and not is_open(p, OPEN_MONTHS, today())
            return versions.seen[first if kept and first is not None else -1][p]

        problems += await report_problems(
            pool, moco, stream, {p: [held(p)] for p in report_periods()}
        )
    elif stream.strategy == "object":
        problems += await object_problems(pool, moco, stream)
    else:
        for name in names:
            problems += await record_problems(pool, moco, CATALOG[name])
    problems += await state_problems(pool, stream)
    assert problems == [], "\n".join(problems)
    outcomes = [o for o in await run_outcomes(pool) if o != "succeeded"]
    assert outcomes == ["interrupted"] * len(kills), outcomes
    # A walk or listing the last kill left in progress is resumed where it stood.
    walk = kills[-1].walk
    if walk is not None and stream.parent is None and walk.get("pages"):
        resumed = {s.stream: s.resumed_after_pages for s in result.streams}
        assert resumed[stream.name] == walk["pages"], (walk, resumed)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_read_while_its_source_changes_converges_exactly(
    kind: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    stream = representative(kind, moco)
    names = [*upstream(stream), stream.name]
    if upstream(stream):
        await sync(pool, sandbox, upstream(stream))
    if reads_everything(stream):  # a run to find deletions in (missing rows, not false ones)
        await sync(pool, sandbox, names)
    versions = Versions(stream.name) if stream.snapshots else None
    if versions is not None:
        versions.take(moco)
    single = stream.strategy in ("unpaged", "object")
    drift = Drift(moco, kind, stream, DRIFT_AT.get(kind, (1,) if single else (2, 5)), versions)
    moco.hooks.append(drift)
    try:
        await sync(pool, sandbox, names)
    finally:
        moco.hooks.remove(drift)
    assert await false_deletions(pool, moco, stream) == []
    assert drift.changes == len(drift.at), "the stream was read in too few requests"

    if watched(stream):
        await next_second()
    await converge(pool, sandbox, names)
    problems = await duplicates(pool, stream)
    if versions is not None:
        # An open period holds the latest answer; a closed one, one of the answers served.
        latest = versions.seen[-1]
        problems += await report_problems(
            pool,
            moco,
            stream,
            {
                p: [latest[p]]
                if is_open(p, OPEN_MONTHS, today())
                else [v[p] for v in versions.seen]
                for p in report_periods()
            },
        )
    elif stream.strategy == "object":
        problems += await object_problems(pool, moco, stream)
    else:
        for name in names:
            problems += await record_problems(pool, moco, CATALOG[name])
    problems += await state_problems(pool, stream)
    assert problems == [], "\n".join(problems)


async def test_a_listing_killed_as_it_starts_over_marks_what_went_meanwhile(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    """A listing that saw its list change while it read it starts over, forgetting the ids it
    had seen. Killed right there (between storing its last page and forgetting them), the
    rerun still marks exactly the records deleted since: it must not count as seen what the
    pass that changed had served."""
    stream = representative("listing", moco)
    config = tmp_path / "schedules.toml"
    write_config(config, sandbox, [stream.name])
    gate = Gate(stream.name, 1)
    drift = Drift(moco, "listing", stream, (2,), None)  # the first pass sees the list change
    moco.hooks += [gate, drift]
    log = tmp_path / "killed.log"
    child = await spawn_sync(config, db_url, [stream.name], log)
    lock = await pool.acquire()
    transaction = lock.transaction()
    started = False
    try:
        async with asyncio.timeout(60):
            while not gate.held:  # page 1 stored, its ids seen
                assert child.returncode is None, tail(log)
                await asyncio.sleep(0.01)
            await transaction.start()
            started = True
            # Forgetting the ids seen waits for this lock on one of them.
            held = await lock.fetchval(
                "select key from syncer.seen_ids where source = 'moco' and stream = $1"
                " limit 1 for update",
                stream.name,
            )
            assert held is not None
            gate.opened = True
            while (waiting := await waiting_for_a_lock(pool)) is None:
                assert child.returncode is None, tail(log)
                await asyncio.sleep(0.01)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
        moco.hooks.remove(gate)
        moco.hooks.remove(drift)
        if started:
            await end_sessions(pool)
            await transaction.rollback()
        await pool.release(lock)
    assert child.returncode == -signal.SIGKILL
    await wait_for_dead_sessions(pool)
    await settle(moco)
    # The kill landed where it was meant to: as the pass that changed forgot its ids.
    assert waiting.lower().startswith("delete from syncer.seen_ids"), waiting
    walk, _ = await position(pool, stream.name)
    assert walk is not None
    assert walk["rereads"] + walk["pages"] > 0, walk
    moco.data.delete(stream.name, 2)
    await next_second()
    await sync(pool, sandbox, [stream.name])
    problems = await record_problems(pool, moco, stream) + await state_problems(pool, stream)
    assert problems == [], "\n".join(problems)
