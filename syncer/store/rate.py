"""A rate limit shared by every process that uses one credential, kept in PostgreSQL.

Each admitted use is logged (``syncer.rate_log``: scope, unit, amount, time by the database's
clock). While its request is in flight an entry is stamped in the future (``pending_s`` ahead,
the request's timeout), so it counts against the limit; when the answer is in it is settled to
that moment, and frees one window later (see :mod:`syncer.pacing` for why).

A process that wants to spend takes the scope's transaction-level advisory lock, sums
what was spent inside each unit's sliding window, and either logs its spending and goes, or
learns how long to wait. All replicas see one ledger, so together they stay within the limit.
A 429 from the server puts a hold on the whole scope (``syncer.rate_holds``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncer.pacing import margin_for
from syncer.store.leases import CONNECTION_LOST
from syncer.store.types import Pool


@dataclass(frozen=True)
class Limit:
    amount: int  # at most this much of the unit ...
    per_seconds: float  # ... in any window of this length


def wait_s(spent: Sequence[tuple[datetime, int]], limit: Limit, need: int, now: datetime) -> float:
    """How long until ``need`` more fits under ``limit``, given ``spent`` (time, amount) entries
    (oldest first, all inside the window ending ``now``). 0 when it fits now. Pure."""
    if need > limit.amount:
        raise ValueError(f"asking for {need} at once can never fit a limit of {limit.amount}")
    used = sum(amount for _, amount in spent)
    excess = used + need - limit.amount
    if excess <= 0:
        return 0.0
    window = timedelta(seconds=limit.per_seconds)
    for at, amount in spent:
        excess -= amount
        if excess <= 0:
            return max(0.0, (at + window - now).total_seconds())
    return limit.per_seconds  # unreachable while need <= limit.amount


class Spent:
    """What one ``acquire`` logged; ``settle`` it once the request's answer is in."""

    def __init__(self, pool: Pool, ids: Sequence[int]) -> None:
        self._pool = pool
        self._ids = list(ids)

    async def settle(self) -> None:
        if not self._ids:
            return
        ids, self._ids = self._ids, []
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "update syncer.rate_log set at = clock_timestamp()"
                    " where id = any($1::bigint[])",
                    ids,
                )
        except CONNECTION_LOST:
            # The answer is in: losing the database now must not lose it (its rows would be
            # sent again). Unsettled, the entries count as in flight until pending_s: later,
            # never earlier, than they would have.
            pass


class SharedLimiter:
    """Spending under one scope's limits, coordinated through the database."""

    def __init__(
        self,
        pool: Pool,
        scope: str,
        limits: Mapping[str, Limit],
        *,
        margin_s: float | None = None,
    ) -> None:
        self._pool = pool
        self.scope = scope
        self.limits = dict(limits)
        longest = max(limit.per_seconds for limit in limits.values())
        self._margin_s = margin_for(longest) if margin_s is None else margin_s
        self.waited_s = 0.0
        self._admitted = 0

    async def acquire(self, amounts: Mapping[str, int], *, pending_s: float = 0.0) -> Spent:
        """Wait until ``amounts`` (per unit) fit every limit, then record them as spent.

        With ``pending_s``, the entries count as in flight until settled (or, if this process
        dies first, until ``pending_s`` from now)."""
        while True:
            ids, wait = await self._try(amounts, pending_s)
            if wait <= 0:
                return Spent(self._pool, ids)
            # A wait longer than a window is one for answers still in flight: look again soon.
            if wait > self._longest() + self._margin_s:
                wait = min(wait, max(0.02, self._longest() / 50))
            self.waited_s += wait
            await asyncio.sleep(wait)

    async def _try(self, amounts: Mapping[str, int], pending_s: float) -> tuple[list[int], float]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(hashtext($1))", self.scope)
            # After the lock, in one statement (its snapshot sees what the lock's previous
            # holder committed): the time, the scope's hold, and what was spent in the window.
            longest = self._longest()
            found = await conn.fetch(
                """
                select c.now, h.until as hold, l.unit, l.at, l.amount
                from (select clock_timestamp() as now) c
                left join syncer.rate_holds h on h.scope = $1
                left join syncer.rate_log l
                       on l.scope = $1 and l.at > c.now - make_interval(secs => $2)
                order by l.at
                """,
                self.scope,
                longest + self._margin_s,
            )
            now: datetime = found[0]["now"]
            hold: datetime | None = found[0]["hold"]
            if hold is not None and hold > now:
                return [], (hold - now).total_seconds()
            rows = [r for r in found if r["unit"] is not None]
            wait = 0.0
            for unit, need in amounts.items():
                if need <= 0:
                    continue
                limit = self.limits[unit]
                # The margin covers the distance between the database's clock and the server's.
                window = timedelta(seconds=limit.per_seconds + self._margin_s)
                spent = [(r["at"], r["amount"]) for r in rows if r["unit"] == unit]
                spent = [(at, amount) for at, amount in spent if at > now - window]
                padded = Limit(limit.amount, limit.per_seconds + self._margin_s)
                wait = max(wait, wait_s(spent, padded, need, now))
            if wait > 0:
                return [], wait
            units = [unit for unit, n in amounts.items() if n > 0]
            ids = await conn.fetch(
                "insert into syncer.rate_log (scope, unit, amount, at)"
                " select $1, unit, amount, $4 from unnest($2::text[], $3::int[]) as t(unit, amount)"
                " returning id",
                self.scope,
                units,
                [amounts[u] for u in units],
                now + timedelta(seconds=pending_s),
            )
            self._admitted += 1
            if self._admitted % 64 == 1:  # the ledger's old entries, now and then
                await conn.execute(
                    "delete from syncer.rate_log where scope = $1 and at < $2",
                    self.scope,
                    now - timedelta(seconds=longest + 3600),
                )
            return [r["id"] for r in ids], 0.0

    async def room(
        self, fraction: float = 0.1, *, need: Mapping[str, int] | None = None
    ) -> dict[str, int]:
        """What each unit may spend right now, waiting first until every unit has at least
        ``fraction`` of its limit free (so that a body sized to the room is worth sending), or
        ``need[unit]`` if that is less (what the next full body would carry: it then goes
        out whole rather than wait for room it does not need)."""
        while True:
            async with self._pool.acquire() as conn:
                now: datetime = await conn.fetchval("select clock_timestamp()")
                hold: datetime | None = await conn.fetchval(
                    "select until from syncer.rate_holds where scope = $1", self.scope
                )
                rows = await conn.fetch(
                    "select unit, at, amount from syncer.rate_log where scope = $1 and at > $2"
                    " order by at",
                    self.scope,
                    now - timedelta(seconds=self._longest() + self._margin_s),
                )
            if hold is not None and hold > now:
                wait = (hold - now).total_seconds()
            else:
                free: dict[str, int] = {}
                wait = 0.0
                for unit, limit in self.limits.items():
                    window = timedelta(seconds=limit.per_seconds + self._margin_s)
                    spent = [(r["at"], r["amount"]) for r in rows if r["unit"] == unit]
                    spent = [(at, amount) for at, amount in spent if at > now - window]
                    free[unit] = limit.amount - sum(amount for _, amount in spent)
                    padded = Limit(limit.amount, limit.per_seconds + self._margin_s)
                    wanted = int(limit.amount * fraction)
                    if need is not None:  # no more than the next full body would carry
                        wanted = min(wanted, need.get(unit, 0))
                    wanted = min(limit.amount, max(1, wanted))
                    wait = max(wait, wait_s(spent, padded, wanted, now))
                if wait <= 0:
                    return free
            self.waited_s += wait
            await asyncio.sleep(wait)

    def _longest(self) -> float:
        return max(limit.per_seconds for limit in self.limits.values())

    async def hold_off(self, seconds: float | None = None) -> None:
        """Admit nothing in this scope for ``seconds`` (default: the longest window)."""
        if seconds is None:
            seconds = max(limit.per_seconds for limit in self.limits.values())
        async with self._pool.acquire() as conn:
            await conn.execute(
                """
                insert into syncer.rate_holds (scope, until)
                values ($1, clock_timestamp() + make_interval(secs => $2))
                on conflict (scope) do update set until = greatest(syncer.rate_holds.until,
                                                                   excluded.until)
                """,
                self.scope,
                seconds,
            )


class SharedRequestLimiter:
    """A credential's request budget shared by every process (the HTTP client's limiter)."""

    def __init__(
        self, pool: Pool, scope: str, requests: int, per_seconds: float, *, pending_s: float = 60.0
    ) -> None:
        self._shared = SharedLimiter(pool, scope, {"requests": Limit(requests, per_seconds)})
        self.window_s = per_seconds + margin_for(per_seconds)
        self._pending_s = pending_s

    @property
    def waited_s(self) -> float:
        return self._shared.waited_s

    async def acquire(self, n: int = 1) -> Spent:
        return await self._shared.acquire({"requests": n}, pending_s=self._pending_s)

    async def hold_off(self, seconds: float | None = None) -> None:
        await self._shared.hold_off(self.window_s if seconds is None else seconds)


def credential_scope(kind: str, base_url: str, secret: str) -> str:
    """The ledger's name for one credential at one API, without the secret itself."""
    digest = hashlib.sha256(f"{base_url}\x1f{secret}".encode()).hexdigest()[:16]
    return f"{kind}:{digest}"
