"""``syncer check``: is this installation ready to run? Nothing is written anywhere.

One row per thing a run depends on, each ✓ or ✗ with the fix for a ✗:

- the configuration (loaded and validated before this runs: a configuration error is exit 2);
- the database: reachable, its server version, and where its schema is against this syncer's
  migrations (at head; behind, which the next command migrates; or a revision this syncer does
  not know, written by a newer one). ``check`` never migrates;
- one authenticated read per source credential, sent once with a short timeout so that a dead
  host answers quickly: MOCO, one record of the first configured stream; MOCA, one list call with
  ``limit=1``. An unset credential variable is a ✗ here, not a configuration error;
- MoEngage: its Data API has no read call to try a key on, so it is listed as not checked
  (only its variables are checked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import asyncpg

from syncer import registry
from syncer.config import DestinationSettings, Settings, SourceSettings
from syncer.errors import SyncerError
from syncer.runners.sync import client_for
from syncer.store import database

Status = Literal["ok", "failed", "not_checked"]

# A check's request is tried once and waits at most this long (or the source's own timeout if
# shorter): a host that does not answer is reported, not waited for.
CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CheckRow:
    check: str  # what was checked: "configuration", "database", "source moco", ...
    status: Status
    detail: str  # what was found
    fix: str | None = None  # for a failed row: what to do

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckReport:
    rows: list[CheckRow]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.rows)


def _split(message: str) -> tuple[str, str | None]:
    """A syncer message is "cause; fix": the row shows them in their own columns."""
    cause, sep, fix = message.rpartition("; ")
    return (cause, fix) if sep else (message, None)


async def run_checks(settings: Settings) -> CheckReport:
    """Every check of this module, in order; the process' exit code follows ``ok``."""
    started = time.monotonic()
    rows = [_configuration(settings)]
    rows += await _database(settings)
    async with aiohttp.ClientSession() as session:
        rows += await asyncio.gather(
            *(_source(session, source) for source in settings.sources.values())
        )
    rows += [_destination(d) for d in settings.destinations.values()]
    return CheckReport(rows, time.monotonic() - started)


def _configuration(settings: Settings) -> CheckRow:
    where = str(settings.path) if settings.path else "no schedules.toml found: defaults"
    counts = (
        f"{len(settings.sources)} sources, {len(settings.destinations)} destinations, "
        f"{len(settings.jobs)} jobs"
    )
    return CheckRow("configuration", "ok", f"{where}; {counts}")


async def _database(settings: Settings) -> list[CheckRow]:
    try:
        # An embedded server may take a while to start the first time: no limit on that;
        # connecting gives up after 15 s (database.connect).
        url = await database.resolve_url(settings)
        conn = await database.connect(url)
    except SyncerError as exc:
        cause, fix = _split(exc.message)
        return [
            CheckRow("database", "failed", cause, fix or "check SYNCER_DATABASE_URL"),
            CheckRow("migrations", "not_checked", "the database could not be reached"),
        ]
    try:
        version = await conn.fetchval("show server_version")
        revision = await database.revision(conn)
    except asyncpg.PostgresError as exc:
        return [
            CheckRow(
                "database",
                "failed",
                f"connected to {database.redact(url)}, but reading the schema's version failed "
                f"({type(exc).__name__}: {exc})",
                "grant the database user access to the syncer schema, or use another database",
            ),
            CheckRow("migrations", "not_checked", "the schema's version could not be read"),
        ]
    finally:
        await conn.close()
    rows = [CheckRow("database", "ok", f"PostgreSQL {version} at {database.redact(url)}")]
    return [*rows, _migrations(revision)]


def _known_revisions() -> set[str]:
    versions = database.migrations_dir() / "versions"
    return {path.name[:4] for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py")}


def _migrations(revision: str | None) -> CheckRow:
    head = database.head_revision()
    if revision == head:
        return CheckRow("migrations", "ok", f"the schema is at the newest migration ({head})")
    if revision is None:
        return CheckRow(
            "migrations", "ok", f"no syncer schema yet: the next command migrates it to {head}"
        )
    if revision in _known_revisions():
        return CheckRow(
            "migrations",
            "ok",
            f"the schema is at {revision}, behind {head}: the next command migrates it",
        )
    return CheckRow(
        "migrations",
        "failed",
        f"the schema is at {revision}, a migration this syncer (newest {head}) does not know: "
        "a newer syncer migrated this database",
        "upgrade syncer to the version that migrated it, or point SYNCER_DATABASE_URL at "
        "another database",
    )


def _secret_rows(name: str, secrets: Sequence[Any]) -> CheckRow | None:
    missing = [s for s in secrets if s.missing]
    if not missing:
        return None
    causes, fixes = zip(*(_split(s.problem.split(": ", 1)[1]) for s in missing), strict=True)
    return CheckRow(name, "failed", "; ".join(causes), "; ".join(f for f in fixes if f))


async def _source(session: aiohttp.ClientSession, source: SourceSettings) -> CheckRow:
    name = f"source {source.name}"
    secret = source.secret
    unset = _secret_rows(name, [secret])
    if unset is not None:
        return unset
    kind = registry.source_type(source.type)
    client = client_for(
        session,
        source,
        timeout_s=min(source.timeout_s, CHECK_TIMEOUT_S),
        max_attempts=1,
    )
    url, params = kind.probe(source)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S * 2):
            response = await client.get(url, params)
    except SyncerError as exc:
        cause, fix = _split(exc.message)
        return CheckRow(name, "failed", cause, fix or f"check base_url and {secret.env}")
    except TimeoutError:
        return CheckRow(name, "failed", f"{url} did not answer", "check base_url and the network")
    return CheckRow(
        name, "ok", f"{kind.vendor} accepted ${secret.env}: HTTP {response.status} from {url}"
    )


def _destination(destination: DestinationSettings) -> CheckRow:
    name = f"destination {destination.name}"
    unset = _secret_rows(name, list(destination.secrets))
    if unset is not None:
        return unset
    detail = registry.destination_type(destination.type).check_detail(destination)
    return CheckRow(name, "not_checked", detail)
