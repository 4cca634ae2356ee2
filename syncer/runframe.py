"""The frame of every exclusive run (sync, sweep, backfill, load): locks, run row, leases, end.

:func:`exclusive_run` takes the run's advisory locks, one per unit of work (a sync locks the
streams it reads: ``moco.activities``; a load its destination), in sorted order and all or
none: at the first one held elsewhere it releases what it took and raises :class:`BusyError`
naming it. Then, in one transaction, it starts the run's row and takes the leases of its
resources (``store/leases.py``); closes the runs that held them before and died; runs the work;
finishes the run's row (shielded from cancellation) and releases the locks.

A session advisory lock dies with its connection. The frame watches the connection holding
the locks (a termination listener, and a cheap query every :data:`WATCH_S`): once it is gone
the run stops (its work is cancelled; a load may first finish the request it has in flight,
see ``grace_s``) and ends failed with one line naming the lock it lost. Until the run notices,
the leases keep it from writing anything once another run has taken its locks over.

The run's row is a ``syncer.runs`` row by default (``store/runs.py``): started with the run's
kind, source and command, the dead runs of the same kind and source closed, and ended as the
work says (:meth:`Frame.end`, :meth:`Frame.end_as`), or interrupted if the work is cancelled.
A run with a row of its own kind (a backfill's) passes ``start``, ``close_dead`` and ``finish``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import asyncpg

from syncer import shutdown
from syncer.errors import BusyError
from syncer.results import Outcome
from syncer.store import leases, runs
from syncer.store.types import Connection, Pool, PoolConnection

log = logging.getLogger(__name__)

WATCH_S = 1.5  # how often the lock connection is asked whether it is still there
WATCH_TIMEOUT_S = 10.0  # a watchdog query slower than this counts as a lost connection
DATABASE_ERRORS = (asyncpg.PostgresError, *leases.CONNECTION_LOST)
# How a run ends that the work did not end (an error it did not handle), and one it cancelled.
UNFINISHED = "the run was cancelled"
STOPPED = "stopped by a signal before it finished"
CANCELLED = "cancelled before it finished (by its daemon job's timeout)"


class _Stream(Protocol):
    """A stream's part of a run (a sync's or a sweep's), as :meth:`Frame.end_as` reads it."""

    @property
    def stream(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def error(self) -> str | None: ...


@dataclass
class Frame:
    """What the work inside the frame knows of its run, and how the work says it ended."""

    run_id: int
    fence: leases.Fence
    outcome: Outcome = Outcome.FAILED
    error: str | None = UNFINISHED

    @property
    def lost(self) -> str | None:
        """The message to end with, once the run lost its locks."""
        return self.fence.message if self.fence.lost else None

    def end(self, outcome: Outcome, error: str | None = None) -> None:
        """How the run ended, for its row (the default ``finish``)."""
        self.outcome, self.error = outcome, error

    def end_as(self, streams: Sequence[_Stream]) -> None:
        """The run ends as its streams did: succeeded if all did, else interrupted if a signal
        stopped one, else failed; its error names each failed stream's."""
        if all(s.outcome == Outcome.SUCCEEDED for s in streams):
            outcome = Outcome.SUCCEEDED
        elif any(s.outcome == Outcome.INTERRUPTED for s in streams):
            outcome = Outcome.INTERRUPTED
        else:
            outcome = Outcome.FAILED
        self.end(outcome, "; ".join(f"{s.stream}: {s.error}" for s in streams if s.error) or None)


async def record_end(conn: Connection, frame: Frame) -> None:
    """The default ``finish``: the run's row ends as the work said (a run that lost its locks
    ends failed with why, unless it had succeeded; its unfinished streams fail alike)."""
    await runs.end_run(conn, frame.run_id, frame.outcome, frame.error, lost=frame.lost)


@contextlib.asynccontextmanager
async def exclusive_run(
    pool: Pool,
    *,
    lock_class: int,
    kind: str,
    keys: Sequence[str],
    source: str | None = None,
    command: str | None = None,
    busy: Callable[[list[str]], str] | None = None,
    start: Callable[[Connection], Awaitable[int]] | None = None,
    close_dead: Callable[[Connection, int, list[int]], Awaitable[object]] | None = None,
    finish: Callable[[Connection, Frame], Awaitable[object]] | None = None,
    grace_s: float = 0.0,
) -> AsyncIterator[Frame]:
    """Run the block as the one holder of ``keys`` (lock names such as "moco.activities").

    ``busy(keys)`` is the message when some are held elsewhere (default: "another {kind} of
    {keys} is running against this database; ..."). ``start(conn)`` inserts the run's row and
    returns its id (in the transaction that takes the leases); ``close_dead(conn, run_id,
    previous)`` closes the runs that died holding these keys (``previous``: the runs that held
    their leases before); ``finish(conn, frame)`` records the outcome, with ``frame.lost`` set
    if the run lost its locks. Left out, they keep a ``syncer.runs`` row of ``kind`` for
    ``source`` and ``command`` (``kind`` if not given), ended by :func:`record_end`.
    ``grace_s``: how long the work may go on, once the lock is lost, to finish what it has in
    flight (it writes nothing new meanwhile: the fence refuses).
    """
    if source is None and (start is None or close_dead is None):
        raise TypeError("exclusive_run: a run with a syncer.runs row needs its source")
    name = source or ""
    if busy is None:
        busy = partial(_busy, kind)
    if start is None:
        start = partial(runs.start_run, kind=kind, source=name, command=command or kind)
    if close_dead is None:

        async def close_dead(conn: Connection, run_id: int, previous: list[int]) -> object:
            return await runs.mark_interrupted(
                conn, kind=kind, source=name, current_run=run_id, previous=previous
            )

    finish = finish or record_end
    wanted = sorted(set(keys))
    resources = [f"{kind}:{key}" for key in wanted]
    lock_conn = await pool.acquire()
    taken: list[str] = []
    on_lost: Callable[[Connection], None] | None = None
    try:
        for key in wanted:
            # Stop at the first key held elsewhere: two runs started at once take their keys
            # in the same (sorted) order, so the one that wins the first key they share is
            # never refused by one the other took further on; both refused would be a race.
            if not await lock_conn.fetchval(
                "select pg_try_advisory_lock($1, hashtext($2))", lock_class, key
            ):
                raise BusyError(busy([key]))
            taken.append(key)
        async with lock_conn.transaction():
            run_id = await start(lock_conn)
            tokens, previous = await leases.take(lock_conn, resources, run_id)
        await close_dead(lock_conn, run_id, previous)
        frame = Frame(run_id, leases.Fence(tokens, _label(wanted)))

        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        stopper: list[asyncio.TimerHandle] = []
        stop = _Stop(task)

        def stop_soon(why: str) -> None:  # once, however the run learns it lost its locks
            log.info("%s: %s", frame.fence.label, why)
            stopper.append(loop.call_later(grace_s, stop.fire))

        frame.fence.on_lost = stop_soon
        lose = frame.fence.lose

        def on_terminated(_conn: Connection) -> None:
            lose("the connection holding the lock was closed")

        on_lost = on_terminated
        lock_conn.add_termination_listener(on_lost)
        watchdog = asyncio.create_task(_watch(lock_conn, lose))
        try:
            with leases.fencing(frame.fence):
                yield frame
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                # A signal asks for a stop first; a cancellation without one is a job's timeout.
                frame.end(Outcome.INTERRUPTED, STOPPED if shutdown.requested() else CANCELLED)
            if frame.fence.lost is None and isinstance(exc, DATABASE_ERRORS):
                # A database error in the work: if the lock's connection went with it, say so.
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
                try:
                    await lock_conn.fetchval("select 1", timeout=WATCH_TIMEOUT_S)
                except (*DATABASE_ERRORS, TimeoutError):
                    frame.fence.lose("the connection holding the lock failed")
            if frame.fence.lost is None:
                raise
            if isinstance(exc, asyncio.CancelledError):
                stop.consume()
            raise leases.LeaseLost(frame.fence.message) from None
        finally:
            for handle in stopper:
                handle.cancel()

            async def cleanup() -> None:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
                # On a connection of the pool: the lock's own may be gone.
                try:
                    await _finish(pool, finish, frame, retry=frame.fence.lost is not None)
                except (*DATABASE_ERRORS, TimeoutError):
                    if frame.fence.lost is None:
                        raise
                    # The database is away: the run stays 'running' until the next run of its
                    # work closes it; what the user sees is why it stopped.
                    log.info("%s: could not record the run's end", frame.fence.label)

            done = asyncio.ensure_future(cleanup())
            while True:
                try:
                    await asyncio.shield(done)
                    break
                except asyncio.CancelledError:
                    if not stop.consume():  # a cancellation from outside: let it through
                        raise
    finally:
        if on_lost is not None:
            with contextlib.suppress(Exception):
                lock_conn.remove_termination_listener(on_lost)
        await asyncio.shield(_release(pool, lock_conn, lock_class, taken))


class _Stop:
    """Cancels the run's task once; the cancellation is taken back when it arrives."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.pending = False

    def fire(self) -> None:
        self.pending = True
        self.task.cancel()

    def consume(self) -> bool:
        """Whether the cancellation that arrived was this one (then it is taken back)."""
        if not self.pending:
            return False
        self.pending = False
        self.task.uncancel()
        return True


def _busy(kind: str, keys: list[str]) -> str:
    return (
        f"another {kind} of {', '.join(keys)} is running against this database; "
        "wait for it to finish (see `syncer status`)"
    )


def _label(keys: Sequence[str]) -> str:
    if len(keys) <= 3:
        return ", ".join(keys)
    return f"{keys[0]} and {len(keys) - 1} more"


async def _finish(
    pool: Pool,
    finish: Callable[[Connection, Frame], Awaitable[object]],
    frame: Frame,
    *,
    retry: bool,
) -> None:
    """Record the run's end; with ``retry``, once more on a new connection if the first one
    turns out dead (the pool may still hold connections whose session was terminated)."""
    for attempt in (1, 2):
        conn = await pool.acquire()
        try:
            await finish(conn, frame)
            return
        except leases.CONNECTION_LOST:
            if not retry or attempt == 2:
                raise
        finally:
            await leases.release_quietly(pool, conn)


async def _watch(conn: Connection, lose: Callable[[str], None]) -> None:
    """Ask the lock's connection every :data:`WATCH_S` whether it is there; tell when not."""
    while True:
        await asyncio.sleep(WATCH_S)
        try:
            await conn.fetchval("select 1", timeout=WATCH_TIMEOUT_S)
        except (*DATABASE_ERRORS, TimeoutError):
            lose("the connection holding the lock stopped answering")
            return


async def _release(pool: Pool, conn: PoolConnection, lock_class: int, keys: list[str]) -> None:
    try:
        if not conn.is_closed():
            for key in reversed(keys):
                await conn.execute("select pg_advisory_unlock($1, hashtext($2))", lock_class, key)
    except DATABASE_ERRORS:
        pass  # the connection is gone, and its locks with it
    finally:
        await leases.release_quietly(pool, conn)
