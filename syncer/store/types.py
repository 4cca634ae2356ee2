"""The database's types as the code sees them: asyncpg's pool and connections, typed by
``asyncpg-stubs`` (a development dependency; at run time these names are plain strings)."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
import asyncpg.pool

__all__ = ["Connection", "Pool", "PoolConnection"]

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What a pool hands out, or a connection of its own (the daemon's health check, migrations).
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)
# A connection the pool handed out (what goes back with ``pool.release``).
PoolConnection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
