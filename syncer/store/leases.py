"""Leases: what keeps a run that lost its lock from writing over the run that took it over.

A run holds its resources (``sync:moco.activities``, ``load:moengage``) with session advisory
locks, and such a lock dies with its connection: after a failover, a restart or
``pg_terminate_backend``, another run may take the lock while the first one has not noticed
yet. So each resource also has a row in ``syncer.leases`` whose token every new holder bumps
once it holds the advisory lock, and every write of a run checks, in the write's own
transaction, that its tokens are still the ones it took (``select … for share``: a new holder
cannot bump a token while a write that checked it is in progress). A run whose token moved
writes nothing more and ends failed.

The run frame (``syncer/runframe.py``) takes the leases and sets the run's :class:`Fence` for
the work it runs; the writes call :func:`check` without being handed anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg.transaction import Transaction

from syncer.errors import FatalError
from syncer.store.types import Connection, Pool, PoolConnection

log = logging.getLogger(__name__)

# Errors that say the connection is gone (terminated, reset, closed), not that a statement failed.
CONNECTION_LOST = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection lost in the middle of an operation
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)


class LeaseLost(FatalError):
    """The run lost the lock of its work; it stopped, and the next run resumes."""


@dataclass
class Fence:
    """The leases one run holds: resource → token, and whether the run knows it lost them."""

    tokens: dict[str, int]
    label: str  # what the resources are, for messages: "moco.activities", "moengage"
    lost: str | None = None  # why, once the run knows
    on_lost: Callable[[str], None] | None = None  # told once, when the run learns it

    @property
    def message(self) -> str:
        return (
            f"lost the database connection that held the lock of {self.label}; stopped; "
            "the next run resumes from the last committed page"
        )

    def lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            if self.on_lost is not None:
                self.on_lost(why)

    def raise_if_lost(self) -> None:
        if self.lost is not None:
            raise LeaseLost(self.message)


_current: ContextVar[Fence | None] = ContextVar("syncer_fence", default=None)


def current() -> Fence | None:
    """The fence of the run this task works for (None outside a run frame)."""
    return _current.get()


@contextlib.contextmanager
def fencing(fence: Fence) -> Iterator[None]:
    """Writes made in this context (and in tasks it starts) check ``fence``."""
    token = _current.set(fence)
    try:
        yield
    finally:
        _current.reset(token)


async def take(
    conn: Connection, resources: Sequence[str], run_id: int
) -> tuple[dict[str, int], list[int]]:
    """Become the holder of ``resources`` (call with their advisory locks held, in a
    transaction); the new tokens, and the runs that held them before."""
    previous = await conn.fetch(
        "select run_id from syncer.leases where resource = any($1::text[]) for update",
        list(resources),
    )
    rows = await conn.fetch(
        """
        insert into syncer.leases as l (resource, token, run_id)
        select r, 1, $2 from unnest($1::text[]) as r
        on conflict (resource) do update
            set token = l.token + 1, run_id = excluded.run_id, acquired_at = now()
        returning resource, token
        """,
        list(resources),
        run_id,
    )
    tokens = {r["resource"]: r["token"] for r in rows}
    return tokens, [r["run_id"] for r in previous if r["run_id"] is not None]


async def check(conn: Connection, *, sent: bool = False) -> None:
    """Inside the caller's transaction: lock the run's lease rows (for share) until it ends,
    and raise :class:`LeaseLost` if the run lost them.

    With ``sent``, what is written records what already happened (an answer to a request that
    was sent): only a moved token refuses it, not the run merely knowing its lock is gone.
    """
    fence = _current.get()
    if fence is None:
        return
    if not sent:
        fence.raise_if_lost()
    rows = await conn.fetch(
        "select resource, token from syncer.leases where resource = any($1::text[]) for share",
        list(fence.tokens),
    )
    if {r["resource"]: r["token"] for r in rows} != fence.tokens:
        fence.lose("another run took the lease over")
        raise LeaseLost(fence.message)


@dataclass
class _Hold:
    """The connection whose transaction locks the run's lease rows, once taken."""

    pool: Pool
    conn: PoolConnection | None = None
    transaction: Transaction | None = None


_hold: ContextVar[_Hold | None] = ContextVar("syncer_lease_hold", default=None)


@contextlib.asynccontextmanager
async def holding(pool: Pool) -> AsyncIterator[None]:
    """A block in which, from its first :func:`still_held` on, the run's lease rows stay locked
    (for share, on a connection of their own) to the block's end: while a request is sent and
    its answer recorded, no other run can take the leases over. Nested blocks share the hold."""
    if _current.get() is None or _hold.get() is not None:
        yield
        return
    hold = _Hold(pool)
    token = _hold.set(hold)
    try:
        yield
    finally:
        _hold.reset(token)
        if hold.conn is not None:
            # Nothing to keep: the transaction only locked the rows.
            await release_quietly(pool, hold.conn, hold.transaction)


async def release_quietly(
    pool: Pool, conn: PoolConnection, transaction: Transaction | None = None
) -> None:
    """Roll ``transaction`` back and give ``conn`` back to ``pool``. A connection whose
    rollback failed or was cancelled (it died meanwhile, or its state is unknown) is closed
    rather than given back: the pool would reset it, on a dead connection, with errors that
    nobody awaits."""
    rolled_back = transaction is None
    try:
        if transaction is not None:
            with contextlib.suppress(*CONNECTION_LOST, asyncpg.PostgresError):
                await transaction.rollback()
                rolled_back = True
    finally:
        if not rolled_back:  # (a connection that closed is already out of the pool)
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        with contextlib.suppress(*CONNECTION_LOST):
            await pool.release(conn)


async def still_held() -> None:
    """Before a request: raise :class:`LeaseLost` if the run lost its leases. Inside
    :func:`holding`, lock the lease rows on the hold's connection (taking it the first time),
    which also proves that connection, and so the lock on the rows, is still alive."""
    fence = _current.get()
    if fence is None:
        return
    fence.raise_if_lost()
    hold = _hold.get()
    if hold is None:
        return
    try:
        if hold.conn is None:
            hold.conn = await hold.pool.acquire()
            hold.transaction = hold.conn.transaction()
            await hold.transaction.start()
        await check(hold.conn)
    except LeaseLost:
        raise
    except (*CONNECTION_LOST, asyncpg.PostgresError):
        fence.lose("the connection holding the lease failed")
        raise LeaseLost(fence.message) from None


async def record_answer(pool: Pool, write: Callable[[Any], Awaitable[object]]) -> None:
    """Record the answer to a request that was sent, in one transaction that checks the lease
    (``sent``: refused only if another run took over). A delivered request must not be
    forgotten because the connection died meanwhile (its rows would be sent again): on a lost
    connection, the write is tried once more on a new one."""
    for attempt in (1, 2):
        conn = await pool.acquire()
        try:
            async with conn.transaction():
                await check(conn, sent=True)
                await write(conn)
            return
        except CONNECTION_LOST:
            if attempt == 2:
                raise
        finally:
            await release_quietly(pool, conn)


async def bookkeeping(pool: Pool, write: Callable[[Any], Awaitable[object]], what: str) -> None:
    """Write a run's bookkeeping (a stream run's end) in a ``finally``: on a connection found
    dead, once more on a new one; if the database is away, leave it (the run's end, or the
    next run of the stream, closes it) rather than raise where nobody is listening."""
    for attempt in (1, 2):
        try:
            conn = await pool.acquire()
        except (*CONNECTION_LOST, TimeoutError):
            break
        try:
            await write(conn)
            return
        except CONNECTION_LOST:
            if attempt == 2:
                break
        finally:
            await release_quietly(pool, conn)
    log.info("could not record %s: the database connection was lost", what)
