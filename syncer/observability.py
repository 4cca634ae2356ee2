"""What the daemon tells its operator: Prometheus metrics, ``/healthz``, and (``syncer.logs``) logs.

The daemon calls :func:`record_sync`, :func:`record_load` and :func:`record_run` after each
run; :func:`serving_health` serves ``GET /healthz`` and ``GET /metrics`` while it runs. Requests
per status class are seen on the wire, by the :func:`http_trace_config` of the HTTP session,
because a run's results only count attempts, retries and 429s. :class:`HealthMonitor` keeps
``/healthz`` honest: it checks the database with ``select 1`` every second and watches the
daemon loop's heartbeat.

Label ``job_id`` rather than ``job``: Prometheus puts its own ``job`` label on every scraped
series, and a clash would rename ours to ``exported_job``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from yarl import URL

from syncer.errors import FatalError
from syncer.logs import configure_logging
from syncer.metrics import Registry

if TYPE_CHECKING:
    from syncer.results import LoadResult, SyncResult, VerifyResult

__all__ = [
    "METRICS",
    "HealthMonitor",
    "HealthServer",
    "SyncerMetrics",
    "configure_logging",
    "http_trace_config",
    "record_load",
    "record_run",
    "record_sync",
    "record_timeout",
    "serving_health",
]

log = logging.getLogger(__name__)

RUN_OUTCOMES = ("succeeded", "failed", "interrupted", "skipped")
# Bodies are packed up to max_request_bytes (100,000 by default): the top buckets are fine.
BATCH_BYTES_BUCKETS = (1e3, 5e3, 10e3, 25e3, 50e3, 75e3, 90e3, 95e3, 100e3, 128e3, 256e3)
RUN_DURATION_BUCKETS_S = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class SyncerMetrics:
    """syncer's metric families in one registry (``METRICS`` is the process's).

    ``process=True`` adds the client library's process and Python metrics (``process_*``,
    ``python_*``), as the served registry has.
    """

    def __init__(self, *, process: bool = False) -> None:
        r = self.registry = Registry(process=process)
        stream = ("job_id", "source", "stream")
        self.records_fetched = r.counter(
            "syncer_records_fetched_total", "Records read from a source stream.", stream
        )
        self.rows_changed = r.counter(
            "syncer_rows_changed_total",
            "Warehouse rows written because their data changed (upserted) or marked deleted.",
            (*stream, "change"),
        )
        self.records_rejected = r.counter(
            "syncer_records_rejected_total",
            "Records that could not be stored (see syncer.rejected_records).",
            stream,
        )
        self.stream_runs = r.counter(
            "syncer_stream_runs_total", "Stream runs by outcome.", (*stream, "outcome")
        )
        self.http_requests = r.counter(
            "syncer_http_requests_total",
            "HTTP requests by API and status class (2xx..5xx; error: no response).",
            ("vendor", "status_class"),
        )
        self.rate_limited = r.counter(
            "syncer_http_rate_limited_total", "HTTP 429 answers.", ("vendor",)
        )
        self.retries = r.counter(
            "syncer_http_retries_total",
            "Requests sent again after a 429, a 5xx, a timeout or a reset.",
            ("vendor",),
        )
        self.batch_bytes = r.histogram(
            "syncer_moengage_batch_bytes",
            "Size of each body MoEngage accepted, in bytes of UTF-8 JSON.",
            ("job_id", "destination"),
            buckets=BATCH_BYTES_BUCKETS,
        )
        self.sent = r.counter(
            "syncer_moengage_sent_total",
            "Items MoEngage accepted, by model (users, devices, events).",
            ("job_id", "destination", "model"),
        )
        self.dead_letters = r.counter(
            "syncer_moengage_dead_letters_total",
            "Items not sent, by the rule that rejected them (see syncer.dead_letters).",
            ("job_id", "destination", "rule"),
        )
        self.possibly_duplicated = r.counter(
            "syncer_moengage_possibly_duplicated_events_total",
            "Events sent again after a request that got no answer.",
            ("job_id", "destination"),
        )
        self.run_duration = r.histogram(
            "syncer_run_duration_seconds",
            "Duration of job runs that ran (not skipped), in seconds.",
            ("job_id",),
            buckets=RUN_DURATION_BUCKETS_S,
        )
        self.runs = r.counter("syncer_runs_total", "Job runs by outcome.", ("job_id", "outcome"))
        self.busy_skips = r.counter(
            "syncer_job_busy_skips_total",
            "Job ticks skipped because another run held the job's work (also counted as "
            'syncer_runs_total{outcome="skipped"}).',
            ("job_id",),
        )
        self.timeouts = r.counter(
            "syncer_job_timeouts_total",
            "Job runs cancelled at the job's timeout (also counted as failed).",
            ("job_id",),
        )
        self.last_success = r.gauge(
            "syncer_job_last_success_timestamp_seconds",
            "When a job last succeeded, in Unix seconds.",
            ("job_id",),
        )
        self.verify_missing = r.gauge(
            "syncer_verify_missing_rows",
            "Rows the last verify found missing from a stream's table or extra in it (what the "
            "incremental sync had not seen), repaired or not.",
            ("source", "stream"),
        )
        self.verify_unrepaired = r.gauge(
            "syncer_verify_unrepaired_rows",
            "Differences the last verify of a stream found and left unrepaired.",
            ("source", "stream"),
        )
        self.verify_last_success = r.gauge(
            "syncer_verify_last_success_timestamp_seconds",
            "When a verify last left a stream exact (nothing differed, or all repaired), in "
            "Unix seconds.",
            ("source", "stream"),
        )


METRICS = SyncerMetrics(process=True)


def record_sync(
    result: SyncResult, job: str | None, *, metrics: SyncerMetrics | None = None
) -> None:
    """Count what a sync run did: per stream, records, changed rows, rejects, outcome."""
    m = metrics or METRICS
    job_id = job or ""
    for s in result.streams:
        labels = {"job_id": job_id, "source": result.source, "stream": s.stream}
        m.records_fetched.inc(s.records, **labels)
        m.rows_changed.inc(s.upserted, change="upserted", **labels)
        m.rows_changed.inc(s.deleted, change="deleted", **labels)
        m.records_rejected.inc(s.rejected, **labels)
        m.stream_runs.inc(outcome=s.outcome, **labels)
    m.rate_limited.inc(result.http.rate_limited, vendor=result.source)
    m.retries.inc(result.http.retries, vendor=result.source)


def record_verify(
    result: VerifyResult, *, metrics: SyncerMetrics | None = None, now_s: float | None = None
) -> None:
    """The completeness a verify found, per stream it could compare."""
    m = metrics or METRICS
    for s in result.streams:
        if s.verdict == "not_verified" or s.outcome != "succeeded":
            continue
        labels = {"source": result.source, "stream": s.stream}
        m.verify_missing.set(s.missing + s.extra, **labels)
        m.verify_unrepaired.set(s.unrepaired, **labels)
        if s.verdict in ("verified", "repaired"):
            m.verify_last_success.set(time.time() if now_s is None else now_s, **labels)


def record_load(
    result: LoadResult, job: str | None, *, metrics: SyncerMetrics | None = None
) -> None:
    """Count what a load run did: bodies, items sent, dead letters. A dry run counts nothing."""
    if result.dry_run:
        return
    m = metrics or METRICS
    labels = {"job_id": job or "", "destination": result.destination}
    for size in result.body_sizes:
        m.batch_bytes.observe(size, **labels)
    for model, n in result.sent.items():
        m.sent.inc(n, model=model, **labels)
    for rule, n in result.dead_letters.items():
        m.dead_letters.inc(n, rule=rule, **labels)
    m.possibly_duplicated.inc(result.possibly_duplicated, **labels)
    m.rate_limited.inc(result.rate_limited, vendor=result.destination)
    # Each 429 and each 5xx is followed by the body sent again (resends after no answer are
    # not counted by the result).
    m.retries.inc(result.rate_limited + result.server_errors, vendor=result.destination)


def record_run(
    job: str,
    outcome: str,
    duration_s: float,
    *,
    metrics: SyncerMetrics | None = None,
    now_s: float | None = None,
) -> None:
    """Count a job run by ``outcome``; time it unless skipped; stamp it if it succeeded.

    ``"busy"`` (the job's work was held by another run) counts as ``skipped`` and in
    ``syncer_job_busy_skips_total``, never as failed.
    """
    m = metrics or METRICS
    for known in RUN_OUTCOMES:  # every outcome is a series from the first run on
        m.runs.inc(0, job_id=job, outcome=known)
    m.busy_skips.inc(0, job_id=job)
    m.timeouts.inc(0, job_id=job)
    if outcome == "busy":
        m.busy_skips.inc(job_id=job)
        outcome = "skipped"
    m.runs.inc(job_id=job, outcome=outcome)
    if outcome != "skipped":
        m.run_duration.observe(duration_s, job_id=job)
    if outcome == "succeeded":
        m.last_success.set(time.time() if now_s is None else now_s, job_id=job)


def record_timeout(job: str, *, metrics: SyncerMetrics | None = None) -> None:
    """Count a job run cancelled at its timeout (its outcome is recorded as failed)."""
    (metrics or METRICS).timeouts.inc(job_id=job)


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299 and so on; ``"other"`` outside 100..599."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def http_trace_config(
    vendors: Mapping[str, str], *, metrics: SyncerMetrics | None = None
) -> aiohttp.TraceConfig:
    """Counts every request of a session by API and status class.

    ``vendors`` maps base URLs to the label to count under, e.g. each configured source's and
    destination's ``base_url`` to its name; the longest matching base URL wins, and requests to
    none count as ``"other"``. Pass it as ``aiohttp.ClientSession(trace_configs=[...])``.
    """
    m = metrics or METRICS
    prefixes = sorted(
        ((str(URL(base)).rstrip("/"), name) for base, name in vendors.items()),
        key=lambda prefix: -len(prefix[0]),
    )

    def vendor_of(url: URL) -> str:
        text = str(url)
        for base, name in prefixes:
            if text == base or text.startswith((base + "/", base + "?")):
                return name
        return "other"

    async def on_end(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        m.http_requests.inc(
            vendor=vendor_of(params.url), status_class=status_class(params.response.status)
        )

    async def on_exception(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        m.http_requests.inc(vendor=vendor_of(params.url), status_class="error")

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    return trace


@dataclass(frozen=True)
class HealthServer:
    """Where :func:`serving_health` listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:9100``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


class HealthMonitor:
    """What ``/healthz`` reports: the database answers, and the daemon loop still ticks.

    :meth:`watching` runs ``select 1`` on its own connection every ``check_every_s`` (so a
    pool busy with jobs cannot delay it), each bounded by ``timeout_s``; a failed check drops
    the connection and the next check connects anew. ``heartbeat`` returns the
    ``time.monotonic()`` of the loop's last tick; older than ``stale_after_s`` is unhealthy.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        heartbeat: Callable[[], float] | None = None,
        check_every_s: float = 1.0,
        timeout_s: float = 2.0,
        stale_after_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self.heartbeat = heartbeat
        self.check_every_s = check_every_s
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.database_problem: str | None = None
        self._conn: Any = None

    def problem(self) -> str | None:
        """Why the process is unhealthy now, or None."""
        if self.database_problem is not None:
            return self.database_problem
        if self.heartbeat is not None:
            age = time.monotonic() - self.heartbeat()
            if age > self.stale_after_s:
                return f"the scheduler loop has not ticked for {age:.0f}s"
        return None

    async def check_database(self) -> None:
        """One ``select 1``; sets :attr:`database_problem` (None when it answered)."""
        if self.database_url is None:
            return
        import asyncpg

        try:
            async with asyncio.timeout(self.timeout_s):
                if self._conn is None:
                    self._conn = await asyncpg.connect(self.database_url)
                await self._conn.fetchval("select 1")
        except Exception as exc:  # any failure means: not reachable now
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.timeout_s:g}s"
            else:
                detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            problem = f"the database does not answer ({reason}); check that it is up"
            if problem != self.database_problem:
                log.warning("healthz: %s", problem)
            self.database_problem = problem
            await self._drop()
        else:
            if self.database_problem is not None:
                log.info("healthz: the database answers again")
            self.database_problem = None

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[HealthMonitor]:
        """Check the database now and then every ``check_every_s`` until the block exits."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.check_every_s)
                await self.check_database()

        await self.check_database()
        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._drop()


@asynccontextmanager
async def serving_health(
    *,
    host: str = "127.0.0.1",
    port: int,
    ready: Callable[[], bool] = lambda: True,
    problem: Callable[[], str | None] | None = None,
    metrics: SyncerMetrics | None = None,
) -> AsyncIterator[HealthServer]:
    """Serve ``GET /healthz`` and ``GET /metrics`` on ``host``:``port`` until the block exits.

    ``/healthz`` answers 200 ``{"status": "ok"}`` while ``ready()`` is true and ``problem()``
    (e.g. :meth:`HealthMonitor.problem`) returns None, else 503
    ``{"status": "unavailable", "reason": ...}``. ``/metrics`` answers in Prometheus text format
    0.0.4, or in OpenMetrics when the scraper's ``Accept`` header asks for it. Port 0 picks a
    free port: the one bound is the yielded server's ``port``. A port that cannot be bound
    raises :class:`FatalError` naming it.
    """
    registry = (metrics or METRICS).registry

    async def healthz(request: web.Request) -> web.Response:
        reason: str | None
        try:
            reason = problem() if problem is not None else None
            if reason is None and not ready():
                reason = "not ready (starting or stopping)"
        except Exception:
            log.exception("the readiness check failed; answering /healthz with 503")
            reason = "the readiness check failed (see the log)"
        if reason is None:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)

    async def metrics_page(request: web.Request) -> web.Response:
        body, content_type = registry.exposition(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise FatalError(
                f"cannot serve /healthz and /metrics on {host}:{port} ({exc.strerror or exc}); "
                "choose another port (--metrics-port or SYNCER_METRICS_PORT) or host "
                "(--metrics-host or SYNCER_METRICS_HOST), or stop what uses it"
            ) from None
        bound = runner.addresses[0]
        log.info("serving /healthz and /metrics on %s:%d", host, bound[1])
        yield HealthServer(host, int(bound[1]))
    finally:
        await runner.cleanup()
