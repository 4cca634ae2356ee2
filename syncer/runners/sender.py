"""Sending a load's rows: packed into bodies, paced within the shared rate limits, sent, and
each answer recorded.

One :class:`Sender` per run. Bodies are as full as the destination's byte limit allows, cut to
the room left in the rate-limit window. Each body is journaled in flight before it leaves and
its answer recorded fenced by the run's lease: acknowledged, dead-lettered (all or some of its
rows), split in halves (too large), sent again after a window (throttled; limits lowered when
a body is throttled a full window apart), after a backoff (a server error), or, without an
answer, sent again or held (rows that may not be sent twice, ``hold_lost``). A dry run writes
each body to its folder instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import aiohttp
import orjson

from syncer import shutdown
from syncer.destinations.base import (
    Acked,
    Body,
    Destination,
    NoAnswer,
    Rejected,
    Split,
    Throttled,
    TooLarge,
)
from syncer.errors import FatalError
from syncer.results import LoadResult
from syncer.runners.pending import once
from syncer.store import leases, loads
from syncer.store.rate import Limit, SharedLimiter
from syncer.store.types import Connection, Pool

__all__ = ["MAX_THROTTLED", "Pending", "Sender"]

# The name the load run has always logged under (the "logger" of JSON logs): queries over
# logs keep finding these lines.
log = logging.getLogger(__name__)

MAX_THROTTLED = 20  # throttled answers tolerated for one body before the run gives up

I = TypeVar("I")  # noqa: E741  (a destination's item)


@dataclass(frozen=True)
class Pending(Generic[I]):
    """A row to send, as an item, with what its acknowledgement records."""

    item: I
    ack: loads.Ack
    size: int  # bytes of its payload


class Sender(Generic[I]):
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
        self.once = set(once(destination.models))
        # Units per body: the configured limits, lowered when the destination throttles
        # bodies that fit them (its real limits are lower).
        self.caps = {unit: limit.amount for unit, limit in destination.limits.items()}
        self.window = max((lim.per_seconds for lim in destination.limits.values()), default=1.0)

    async def dead_letter(self, letters: list[loads.DeadLetter]) -> None:
        if letters and self.dry_run_dir is None:
            async with self.pool.acquire() as conn:
                await loads.record_dead_letters(conn, self.name, self.result.run_id, letters)

    def _first(self, pending: Sequence[Pending[I]], start: int, room: Mapping[str, int]) -> Body[I]:
        """The first body of ``pending[start:]``, within the caps and what ``room`` is left."""
        caps = {u: max(1, min(cap, room.get(u, cap))) for u, cap in self.caps.items()}
        packed = self.destination.pack([p.item for p in pending[start:]], caps)
        assert not isinstance(packed, TooLarge), "screened by fits_alone"
        return packed

    async def send_packed(self, pending: list[Pending[I]], *, final: bool) -> list[Pending[I]]:
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

    async def fits_alone(self, p: Pending[I]) -> bool:
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

    async def send(self, body: Body[I], pending: list[Pending[I]]) -> None:
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

    async def _send(self, body: Body[I], pending: list[Pending[I]]) -> None:
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
        pending: list[Pending[I]],
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
        self, body: Body[I], pending: list[Pending[I]], answer: Rejected, attempts: int
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

    def _count_sent(self, pending: list[Pending[I]]) -> None:
        for p in pending:
            self.result.sent[p.ack.model] += 1
