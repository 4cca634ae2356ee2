"""``syncer sync SOURCE`` with the in-process rate limiter instead of the shared ledger.

The command always paces through the ledger in PostgreSQL (a transaction per request to take
a slot and an update to settle it, see syncer/store/rate.py). This runs the very same
command, through the CLI's own ``runtime`` (``syncer.dispatch``: database resolved and
migrated, pool, HTTP session with the metrics trace), but calls ``sync_source`` without
``limiter``, which then paces in memory; the difference between the two measures what the
ledger costs.

Usage: python -m benchmarks.library_sync SOURCE (configuration and database from the same
environment variables as the command: SYNCER_CONFIG, SYNCER_DATABASE_URL, the keys).
"""

from __future__ import annotations

import asyncio
import os
import sys

from syncer.configfile import load_settings
from syncer.dispatch import runtime
from syncer.runners.sync import sync_source
from syncer.show.sync import print_sync_result


async def run(source_name: str) -> int:
    settings = load_settings(None, os.environ)
    source = settings.source(source_name)
    async with runtime(settings, pool_size=source.concurrency + 2) as rt:
        result = await sync_source(rt.pool, rt.session, source, command="benchmarks.library_sync")
    print_sync_result(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(run(sys.argv[1])))
