"""Two processes' worth of limiters on one ledger stay within the limit together."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg

from syncer.store.rate import Limit, SharedLimiter


async def test_two_replicas_together_never_exceed_the_limit_in_any_window(db_url: str) -> None:
    limits = {"users": Limit(50, 0.5), "events": Limit(200, 0.5)}
    pools = [await asyncpg.create_pool(db_url, min_size=1, max_size=2) for _ in range(2)]
    try:

        async def replica(pool: Any) -> None:
            limiter = SharedLimiter(pool, "moengage:WS", limits, margin_s=0.0)
            for _ in range(12):
                await limiter.acquire({"users": 10, "events": 30})

        await asyncio.gather(*(replica(p) for p in pools))
        rows = await pools[0].fetch(
            "select unit, at, amount from syncer.rate_log where scope = 'moengage:WS' order by at"
        )
    finally:
        for p in pools:
            await p.close()
    assert sum(r["amount"] for r in rows if r["unit"] == "users") == 240
    for unit, limit in limits.items():
        entries = [(r["at"], r["amount"]) for r in rows if r["unit"] == unit]
        window = timedelta(seconds=limit.per_seconds)
        for start, _ in entries:
            inside = sum(a for at, a in entries if start <= at < start + window)
            assert inside <= limit.amount, (unit, start, inside)
    # 240 users at 50 per 0.5 s take at least 4 full windows: the pacing really waited.
    span = (rows[-1]["at"] - rows[0]["at"]).total_seconds()
    assert span >= 4 * 0.5 - 0.01


async def test_a_hold_stops_every_replica_until_it_expires(db_url: str) -> None:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        first = SharedLimiter(pool, "moco:KEY", {"requests": Limit(100, 1.0)})
        second = SharedLimiter(pool, "moco:KEY", {"requests": Limit(100, 1.0)})
        await first.hold_off(0.3)
        await second.acquire({"requests": 1})
        # The other replica's request is admitted only once the hold has expired (both times
        # are the database's: no assumption about how fast this machine is).
        until = await pool.fetchval("select until from syncer.rate_holds where scope = 'moco:KEY'")
        admitted = await pool.fetchval(
            "select min(at) from syncer.rate_log where scope = 'moco:KEY'"
        )
        assert admitted >= until
        assert second.waited_s > 0
    finally:
        await pool.close()


async def test_a_request_in_flight_holds_its_slot_across_replicas_until_settled(
    db_url: str,
) -> None:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        first = SharedLimiter(pool, "moco:KEY", {"requests": Limit(1, 0.1)}, margin_s=0.0)
        second = SharedLimiter(pool, "moco:KEY", {"requests": Limit(1, 0.1)}, margin_s=0.0)
        spent = await first.acquire({"requests": 1}, pending_s=30)
        waiter = asyncio.create_task(second.acquire({"requests": 1}, pending_s=30))
        await asyncio.sleep(0.5)  # five windows: an entry in flight does not expire
        assert not waiter.done()
        await spent.settle()
        async with asyncio.timeout(5):
            await waiter
        rows = await pool.fetch("select at from syncer.rate_log order by at")
        assert (rows[1]["at"] - rows[0]["at"]).total_seconds() >= 0.1 - 0.001
    finally:
        await pool.close()
