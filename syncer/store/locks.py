"""Advisory lock classes: one per kind of exclusive work, all in one place so none collide.

Each lock is ``(class, hashtext(name))``, session-level, taken with ``pg_try_advisory_lock``
by the work that must not run twice at once against one database.
"""

from __future__ import annotations

from syncer.store.types import Connection

SYNC = 7_233_911  # name: the source; one sync of a source at a time
LOAD = 7_233_912  # name: the destination; one load of a destination at a time
JOB = 7_233_913  # name: the job id; one run of a daemon job across replicas
SWEEP = 7_233_914  # name: the source; one deletion sweep of a source at a time
BACKFILL = 7_233_915  # name: "source.stream"; one backfill of a stream at a time
# name: "schema"; one migration of a database at a time. Waited for (pg_advisory_lock), not
# tried: a process that starts while another migrates waits for it and then finds nothing to do.
MIGRATE = 7_233_916
# name: the schema; one process at a time creates a source's schema and tables (transaction
# lock, waited for: a process that starts beside another finds them made and does nothing).
PROVISION = 7_233_917


async def try_lock(conn: Connection, lock_class: int, name: str) -> bool:
    """Take the session lock ``(lock_class, hashtext(name))`` on ``conn`` if it is free;
    whether it was taken."""
    held = await conn.fetchval("select pg_try_advisory_lock($1, hashtext($2))", lock_class, name)
    return bool(held)


async def unlock(conn: Connection, lock_class: int, name: str) -> None:
    """Release the session lock ``(lock_class, hashtext(name))`` that ``conn`` holds."""
    await conn.execute("select pg_advisory_unlock($1, hashtext($2))", lock_class, name)
