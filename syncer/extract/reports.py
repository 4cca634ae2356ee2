"""Report snapshots: rows without an id, asked for a period, kept per period as they came.

MOCO's reports (``/report/utilization``, ``/report/finance``, ...) answer rows computed over
a period (``from``/``to``, or a ``year``), with no id and no ``updated_at``: a row is known by
its period and its natural key (the catalog's, e.g. a user and a day). So a report is pulled
per period (calendar months, or years), and pulling a period again replaces that period's rows
in one transaction: the table always holds, per period, exactly one answer.

Which periods: those of the last ``report_months`` months (this one included). A period is
pulled once it has begun, and again on every run while it is *open* (it ends within the last
``report_open_months`` months: figures of recent months still change as time is booked);
closed periods are pulled once and kept (``syncer.streams.state`` records which). A run killed
in the middle keeps the periods it finished; the others are pulled next run.

A period of several pages is not one answer: figures booked between its pages shift rows from
one page to the next (one served twice, another never) or mix two states of the account. A
closed period, kept as pulled, is therefore pulled again at once and kept only when two pulls
in a row agree (at most :data:`MAX_PULLS` times; if they never do, its rows are stored but it
is pulled again next run). An open period is pulled again every run anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from syncer import shutdown
from syncer.catalog import Stream
from syncer.extract.base import Lister, Options, Page, Query, fetch
from syncer.extract.records import Rejected, Row, has_nul
from syncer.extract.walker import log_ids
from syncer.results import StreamResult, SyncContext
from syncer.store import leases, pages, runs, snapshots
from syncer.store.rejected import record_rejected

log = logging.getLogger(__name__)

Period = tuple[date, date]
MAX_PULLS = 3  # a closed period of several pages is pulled until two pulls agree, this often


def _month_start(day: date, back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


def _month_end(start: date) -> date:
    return _month_start(start, -1) - timedelta(days=1)


def periods(unit: str, months: int, today: date) -> list[Period]:
    """The periods of the last ``months`` months (this one included), oldest first."""
    first = _month_start(today, months - 1)
    if unit == "year":
        return [(date(y, 1, 1), date(y, 12, 31)) for y in range(first.year, today.year + 1)]
    out = []
    start = first
    while start <= today:
        out.append((start, _month_end(start)))
        start = _month_start(start, -1)
    return out


def is_open(period: Period, open_months: int, today: date) -> bool:
    """Whether ``period`` ends within the last ``open_months`` months (its figures may still
    change)."""
    return period[1] >= _month_start(today, max(open_months, 1) - 1)


def period_key(period: Period) -> str:
    return f"{period[0].isoformat()}..{period[1].isoformat()}"


def natural_keys(items: Sequence[Any], fields: Sequence[str]) -> tuple[list[Row], list[Rejected]]:
    """Rows keyed by their natural key (``fields``, dotted paths, joined by ``|``); a key seen
    twice in one answer gets ``#2``, ``#3``: the answer's rows are kept as they came."""
    rows: list[Row] = []
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        text = orjson.dumps(item).decode()
        if not isinstance(item, dict):
            rejected.append(Rejected(f"not a JSON object but {type(item).__name__}", text))
            continue
        if has_nul(text):
            rejected.append(Rejected("the row holds a NUL character", text))
            continue
        parts = [_dig(item, field) for field in fields]
        key = "|".join("" if p is None else str(p) for p in parts) if fields else str(index)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}#{seen[key]}"
        rows.append(Row(key, None, text))
    return rows, rejected


def _dig(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


async def report_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
) -> None:
    """Pull the report's due periods, each replacing its rows, inside the stream run's row."""
    from syncer.extract.running import stream_run

    assert stream.period is not None
    source = context.source
    today = datetime.now(UTC).date()
    async with context.pool.acquire() as conn:
        state = await pages.load_stream_state(conn, source.name, stream.name)
    done = set(state.get("done", ()))
    wanted = periods(stream.period.unit, options.report_months, today)
    due = [
        p
        for p in wanted
        if context.full_refresh
        or is_open(p, options.report_open_months, today)
        or period_key(p) not in done
    ]
    async with stream_run(context, result):
        for period in due:
            shutdown.check()
            before = result.http.requests
            closed = not is_open(period, options.report_open_months, today)
            answers, settled = await _settled(context, stream, lister, period, result, closed)
            items = [item for page in answers for item in page]
            rows, rejected = natural_keys(items, stream.natural_key)
            async with context.pool.acquire() as conn, conn.transaction():
                await leases.check(conn)
                stored = await snapshots.replace_period(
                    conn, source.schema, stream.name, period, rows
                )
                await record_rejected(conn, context.run_id, source.name, stream.name, rejected)
                if settled:
                    done.add(period_key(period))
                kept = sorted(k for k in done if k >= period_key(wanted[0]))
                await pages.save_position(
                    conn,
                    source.name,
                    stream.name,
                    watermark=datetime.now(UTC),
                    walk=None,
                    state={"done": kept},
                    success=period == due[-1],
                )
                await runs.add_stream_counts(
                    conn,
                    context.run_id,
                    stream.name,
                    pages=len(answers),
                    requests=result.http.requests - before,
                    records=len(items),
                    upserted=stored,
                    rejected=len(rejected),
                )
            result.pages += len(answers)
            result.records += len(items)
            result.upserted += stored
            result.rejected += len(rejected)
            result.committed_requests = result.http.requests
            if not settled:
                result.warning = (
                    f"{period_key(period)} changed each time it was pulled ({MAX_PULLS} times); "
                    "its rows are stored, and it is pulled again next run"
                )
            log.info(
                "%s.%s: %s, %d rows",
                source.name,
                stream.name,
                period_key(period),
                len(rows),
                extra=log_ids(context.run_id, source.name, stream.name),
            )
        if not due:
            async with context.pool.acquire() as conn:
                await pages.save_position(
                    conn, source.name, stream.name, watermark=None, walk=None, success=True
                )


async def _settled(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    period: Period,
    result: StreamResult,
    closed: bool,
) -> tuple[list[list[Any]], bool]:
    """One period's pages, and whether they can be kept as one answer: one page is; a closed
    period of several is once two pulls in a row served the same rows."""
    answers = await _pull(context, stream, lister, period, result)
    if len(answers) < 2 or not closed:
        return answers, True
    for _ in range(MAX_PULLS - 1):
        again = await _pull(context, stream, lister, period, result)
        if again == answers:
            return answers, True
        log.info(
            "%s.%s: %s changed while it was pulled; pulling it again",
            context.source.name,
            stream.name,
            period_key(period),
            extra=log_ids(context.run_id, context.source.name, stream.name),
        )
        answers = again
    return answers, False


async def _pull(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    period: Period,
    result: StreamResult,
) -> list[list[Any]]:
    """Every page of one period's answer (one, for a report that takes no ``page``)."""
    query = Query(period=period)
    paged = stream.takes("page")
    answers: list[list[Any]] = []
    number = 1
    previous: list[Any] | None = None
    while True:
        page: Page = await fetch(
            context.client, lister, stream, query, number if paged else None, stats=result.http
        )
        items = page.items
        if paged and number > 1 and page.next_link is None and items == previous:
            break  # a server ignoring `page`: the same answer again
        answers.append(items)
        if not paged or not page.has_next:
            break
        previous, number = items, number + 1
    return answers
