"""syncer against a MOCO generated from its OpenAPI spec alone (``tests/specserver``).

The spec server is independent of syncer's catalog: every endpoint honours exactly the query
parameters its spec documents. syncer runs as a user runs it (``syncer sync moco``, ``syncer
sweep moco`` as subprocesses, against real Postgres); then every list of the spec is compared
with its warehouse table, one row per record, ``data`` as served. Each test prints the
requests per endpoint and run (``-s``), and collects every mismatch before failing, so one run
shows all of them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from tests.integration.test_cli import Env, Ran, syncer
from tests.specserver import SpecServer

ROOT = Path(__file__).resolve().parents[2]
STREAMS: list[dict[str, Any]] = json.loads(
    (ROOT / "syncer" / "sources" / "moco" / "catalog.json").read_text()
)["streams"]
BY_PATH = {s["path"]: s for s in STREAMS}
REPORTS = [s["name"] for s in STREAMS if s["strategy"] == "report"]
DETAILS = [s["name"] for s in STREAMS if s["strategy"] == "detail"]
# A project's lists that a top-level list holds too (opt-in: read through that list).
TWINNED = [s["name"] for s in STREAMS if s["parent"] and s["parent"]["twin"]]
RUN_TIMEOUT_S = 300.0

pytestmark = pytest.mark.slow


# --- the server, the configuration, the runs -----------------------------------------------


@pytest.fixture
def spec() -> SpecServer:
    return SpecServer(seed=7)


@pytest.fixture
async def base_url(spec: SpecServer) -> AsyncIterator[str]:
    async with TestServer(spec.app(), host="127.0.0.1") as server:
        yield f"http://127.0.0.1:{server.port}{spec.spec.base_path}"


@pytest.fixture
def spec_env(db_url: str, tmp_path: Path, spec: SpecServer) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    environ.update(SYNCER_DATABASE_URL=db_url, MOCO_API_KEY=spec.api_key, SYNCER_HOME=str(home))
    return environ


class Runs:
    """Runs ``syncer`` against the spec server and keeps the requests each run made."""

    def __init__(self, spec: SpecServer, base_url: str, env: Env, tmp_path: Path) -> None:
        self.spec, self.env, self.cwd = spec, env, tmp_path
        self.config = tmp_path / "schedules.toml"
        self.requests: dict[str, Counter[str]] = {}
        self.problems: list[str] = []
        self.extra: list[str] = list(TWINNED)  # streams enabled beyond the defaults
        self.write(base_url)

    def write(self, base_url: str, *lines: str) -> None:
        body = [
            "[sources.moco]",
            'type = "moco"',
            f'base_url = "{base_url}"',
            'api_key_env = "MOCO_API_KEY"',
            "rate_limit = { requests = 100000, per_seconds = 1 }",
            *([f"enable_streams = {json.dumps(self.extra)}"] if self.extra else []),
            *lines,
        ]
        self.config.write_text("\n".join(body) + "\n")
        self.base_url = base_url

    def enable(self, *streams: str) -> None:
        self.extra += streams
        self.write(self.base_url)

    def defaults_only(self) -> None:
        self.extra = []
        self.write(self.base_url)

    def lists(self) -> list[str]:
        """Every list of the spec with records of its own (not reports) that the runs sync."""
        synced = {s["name"] for s in STREAMS if s["enabled"]} | set(self.extra)
        return [p for p in record_lists(self.spec) if BY_PATH[p]["name"] in synced]

    async def __call__(self, label: str, *args: str) -> Ran:
        self.spec.reset_log()
        ran = await syncer(
            *args, "--config", self.config, env=self.env, cwd=self.cwd, timeout_s=RUN_TIMEOUT_S
        )
        self.requests[label] = self.spec.counts()
        if ran.code != 0:
            command = " ".join(args)
            self.problems.append(f"{label}: `syncer {command}` exited {ran.code}: {ran.stderr}")
        for r in self.spec.log:
            if r.undocumented:
                self.problems.append(
                    f"{label}: GET {r.path} sent {', '.join(r.undocumented)}, which the spec "
                    f"does not document for {r.endpoint} (query {r.query})"
                )
            if r.status not in (200, 404) or (r.status == 404 and "{" not in r.endpoint):
                self.problems.append(f"{label}: GET {r.path} {r.query} answered {r.status}")
        return ran

    def summary(self) -> str:
        labels = list(self.requests)
        paths = sorted({p for c in self.requests.values() for p in c})
        width = max([len(p) for p in paths] + [8])
        lines = [f"{'endpoint':<{width}} " + " ".join(f"{x:>10}" for x in labels)]
        for path in paths:
            lines.append(
                f"{path:<{width}} " + " ".join(f"{self.requests[x][path]:>10}" for x in labels)
            )
        totals = " ".join(f"{sum(self.requests[x].values()):>10}" for x in labels)
        lines.append(f"{'total':<{width}} {totals}")
        return "\n".join(lines)

    def finish(self) -> None:
        print("\nrequests per endpoint and run:\n" + self.summary())
        if self.problems:
            print("\nproblems:\n- " + "\n- ".join(self.problems))
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def runs(spec: SpecServer, base_url: str, spec_env: Env, tmp_path: Path) -> Runs:
    return Runs(spec, base_url, spec_env, tmp_path)


# --- what the warehouse holds against what the server serves --------------------------------


def record_lists(spec: SpecServer) -> list[str]:
    """Every list of the spec with records of its own (not reports)."""
    return [e.path for e in spec.spec.lists if not e.report]


async def table(pool: Any, stream: dict[str, Any]) -> list[Any]:
    parent = ", _parent_id" if stream["parent"] else ", null as _parent_id"
    return list(
        await pool.fetch(f'select id, data, _deleted_at{parent} from moco."{stream["name"]}"')
    )


def canonical(value: Any) -> bytes:
    """A JSON value's text with sorted keys (jsonb keeps its own key order)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _differs(stored: dict[str, Any], served: dict[str, Any]) -> str:
    keys = sorted(k for k in stored.keys() | served.keys() if stored.get(k) != served.get(k))
    return ", ".join(f"{k}: stored {stored.get(k)!r} served {served.get(k)!r}" for k in keys[:3])


async def compare(
    pool: Any,
    spec: SpecServer,
    paths: list[str],
    *,
    deleted: dict[str, set[Any]] | None = None,
) -> list[str]:
    """Mismatches between each list's table and the server's records; ``deleted``: per path
    the ids that must be marked deleted (default: none may be)."""
    problems: list[str] = []
    for path in paths:
        stream = BY_PATH.get(path)
        if stream is None:
            problems.append(f"{path}: the spec's list has no stream in syncer's catalog")
            continue
        name = stream["name"]
        rows = await table(pool, stream)
        live = {r["id"]: orjson.loads(r["data"]) for r in rows if r["_deleted_at"] is None}
        marked = {r["id"] for r in rows if r["_deleted_at"] is not None}
        want = spec.expected(path)
        missing = sorted(want.keys() - live.keys(), key=str)
        extra = sorted(live.keys() - want.keys(), key=str)
        differ = sorted((i for i in want.keys() & live.keys() if live[i] != want[i]), key=str)
        should = (deleted or {}).get(path, set())
        if missing:
            problems.append(
                f"{name} ({path}): {len(missing)} of {len(want)} records missing, "
                f"e.g. {missing[:3]}"
            )
        if extra:
            problems.append(
                f"{name}: {len(extra)} live rows the server does not list, e.g. {extra[:3]}"
            )
        if differ:
            problems.append(
                f"{name}: {len(differ)} rows differ from the record served {differ[:10]}, "
                f"e.g. {differ[0]}: " + _differs(live[differ[0]], want[differ[0]])
            )
        if marked != should:
            wrong = sorted(marked - should, key=str)
            unmarked = sorted(should - marked, key=str)
            problems.append(
                f"{name}: deletions marked {len(marked)}, expected {len(should)}"
                f" (marked but not deleted {wrong[:3]}, deleted but not marked {unmarked[:3]})"
            )
        if stream["parent"]:
            parents = spec.parents(path)
            bad = [r["id"] for r in rows if r["id"] in want and r["_parent_id"] != parents[r["id"]]]
            if bad:
                problems.append(f"{name}: {len(bad)} rows with a wrong _parent_id, e.g. {bad[:3]}")
    return problems


async def live_ids(pool: Any, paths: list[str]) -> dict[str, set[Any]]:
    out = {}
    for path in paths:
        if path in BY_PATH:
            rows = await table(pool, BY_PATH[path])
            out[path] = {r["id"] for r in rows if r["_deleted_at"] is None}
    return out


async def compare_objects(pool: Any, spec: SpecServer) -> list[str]:
    problems = []
    for e in spec.spec.endpoints.values():
        if e.kind != "object":
            continue
        name = BY_PATH[e.path]["name"]
        rows = await pool.fetch(f'select data from moco."{name}" where _deleted_at is null')
        served = spec.expected(e.path)[0]
        if [orjson.loads(r["data"]) for r in rows] != [served]:
            problems.append(f"{name} ({e.path}): {len(rows)} rows, not the one object served")
    return problems


async def stream_runs(pool: Any) -> list[str]:
    """Streams whose last run failed or warned, as syncer.stream_runs says."""
    rows = await pool.fetch(
        "select distinct on (stream) stream, outcome, error, warning from syncer.stream_runs"
        " order by stream, run_id desc"
    )
    return [
        f"{r['stream']}: {r['outcome']} {r['error'] or ''} {r['warning'] or ''}".strip()
        for r in rows
        if r["outcome"] != "succeeded" or r["warning"]
    ]


async def next_second() -> None:
    """Wait for the next whole second: changes made in the second a run starts look, at
    MOCO's whole-second timestamps, as if made while it read (a full listing then reads again
    and defers its deletions); a real change rarely lands in that very second."""
    now = time.time()
    await asyncio.sleep(math.ceil(now) - now + 0.05)


def minimal_requests(spec: SpecServer, path: str) -> int:
    """What a correct incremental read of an unchanged list costs: one request where the list
    takes ``updated_after``, else every page (a short page ends a list without paging
    headers); per project for a project's list."""
    e = spec.spec.endpoints[path]
    lists = len(spec.store.records["/projects"]) if e.kind == "child" else 1
    if e.takes("updated_after") or not e.paged:
        return lists
    if e.kind == "child":
        sizes = Counter(spec.parents(path).values())
        projects = spec.store.records["/projects"]
        return sum(_pages(e.headers, sizes.get(p, 0)) for p in projects)
    return _pages(e.headers, len(spec.expected(path)))


def _pages(headers: frozenset[str], count: int) -> int:
    if "Link" in headers or "X-Total" in headers:
        return max(1, math.ceil(count / 100))
    return count // 100 + 1


# --- the server itself, as its spec documents ------------------------------------------------


async def test_the_spec_server_answers_as_its_spec_documents(
    spec: SpecServer, base_url: str
) -> None:
    """The reference is checked too: auth, paging only where documented, the documented
    filters, 404s (plain HTTP, no syncer)."""
    token = {"Authorization": f"Token token={spec.api_key}"}
    bearer = {"Authorization": f"Bearer {spec.api_key}"}

    async def get(path: str, headers: dict[str, str] = token, **query: str) -> Any:
        async with session.get(base_url + path, params=query, headers=headers) as r:
            return r.status, r.headers, await r.json()

    async with aiohttp.ClientSession() as session:
        assert (await get("/activities", {}))[0] == 401
        assert (await get("/activities", {"Authorization": "Token token=nope"}))[0] == 401
        assert (await get("/activities", bearer))[0] == 200
        for e in spec.spec.lists:
            if e.kind == "child" or e.report:
                continue
            status, headers, body = await get(e.path, page="1")
            assert status == 200, e.path
            paging = {h for h in ("X-Page", "X-Per-Page", "X-Total", "Link") if h in headers}
            assert paging <= e.headers, e.path  # only documented headers
            assert body == spec.records_without_page_params(e.path), e.path
            if not e.paged:  # page is not documented: the whole list, whatever page says
                assert (await get(e.path, page="2"))[2] == body, e.path
        # per_page: at most the spec's maximum; where undocumented, pages of 100 whatever
        # per_page says; Link's next while more pages follow.
        status, headers, body = await get("/activities", per_page="1000", page="2")
        assert (len(body), headers["X-Per-Page"], headers["X-Total"]) == (100, "100", "250")
        assert 'rel="next"' in headers["Link"]
        assert "page=3" in headers["Link"]
        last = await get("/activities", per_page="100", page="3")
        assert len(last[2]) == 50
        assert 'rel="next"' not in last[1].get("Link", "")
        payments = await get("/purchases/payments", per_page="5")
        assert len(payments[2]) == 100
        assert "X-Total" not in payments[1]
        # updated_after: strictly after; where undocumented (/todos) ignored.
        served = spec.expected("/activities")
        stamp = sorted(r["updated_at"] for r in served.values())[-10]
        newer = (await get("/activities", updated_after=stamp, per_page="100"))[2]
        assert newer
        assert all(r["updated_at"] > stamp for r in newer)
        todos = await get("/todos", updated_after="2099-01-01T00:00:00Z")
        assert len(todos[2]) == 100
        assert (await get("/activities", updated_after="yesterday"))[0] == 400
        # ids, sort_by, include_archived, include_disregarded
        some = sorted(served)[:3]
        chosen = (await get("/activities", ids=",".join(map(str, some))))[2]
        assert [r["id"] for r in chosen] == some
        desc = (await get("/activities", sort_by="updated_at desc"))[2]
        assert [r["updated_at"] for r in desc] == sorted(
            (r["updated_at"] for r in desc), reverse=True
        )
        companies = spec.expected("/companies")
        listed = (await get("/companies", per_page="100", page="2"))[1]["X-Total"]
        everything = (await get("/companies", include_archived="true"))[1]["X-Total"]
        archived = sum(1 for r in companies.values() if r["active"] is False)
        assert (int(listed), int(everything)) == (len(companies) - archived, len(companies))
        invoices = spec.expected("/invoices")
        disregarded = sum(1 for r in invoices.values() if r["status"] == "disregarded")
        shown = (await get("/invoices"))[1]["X-Total"]
        assert disregarded
        assert int(shown) == len(invoices) - disregarded
        # 404: a missing project's list, a missing detail, an unknown path
        assert (await get("/projects/1/tasks"))[0] == 404
        assert (await get("/invoices/1"))[0] == 404
        assert (await get("/nothing/here"))[0] == 404
        project = spec.store.big_project
        tasks = await get(f"/projects/{project}/tasks", page="2")
        assert tasks[0] == 200
        assert len(tasks[2]) == 30


# --- the scenarios -----------------------------------------------------------------------------


async def test_a_first_sync_holds_every_list_of_the_spec_exactly(
    runs: Runs, spec: SpecServer, pool: Any
) -> None:
    try:
        await runs("first", "sync", "moco")
        runs.problems += await compare(pool, spec, runs.lists())
        runs.problems += await compare_objects(pool, spec)
        runs.problems += [f"stream run: {s}" for s in await stream_runs(pool)]
        records = sum(len(spec.expected(p)) for p in runs.lists())
        print(f"\ncompared {records} records of {len(runs.lists())} lists")
        if spec.spec.unserved:
            print(f"\nlists under a record, not served nor compared: {spec.spec.unserved}")
    finally:
        runs.finish()


async def compare_reports(spec: SpecServer, pool: Any) -> list[str]:
    """Each report table holds, per period asked, exactly the rows served for it."""
    problems = []
    for name in REPORTS:
        path = next(s for s in STREAMS if s["name"] == name)["path"]
        asked = spec.report_periods(path)
        rows = await pool.fetch(f'select period_start, period_end, data from moco."{name}"')
        stored: dict[Any, list[Any]] = {}
        for r in rows:
            stored.setdefault((r["period_start"], r["period_end"]), []).append(
                orjson.loads(r["data"])
            )
        unit = next(s for s in STREAMS if s["name"] == name)["period"]["unit"]
        if len(asked) < (2 if unit == "year" else 24):  # report_months = 24 by default
            problems.append(f"{name}: only {len(asked)} periods asked for")
        if set(stored) - asked:
            problems.append(f"{name}: rows of periods never asked {set(stored) - asked}")
        for start, end in sorted(asked):
            served = spec.report_rows(path, start, end)
            held = stored.get((start, end), [])
            if sorted(map(canonical, held)) != sorted(map(canonical, served)):
                problems.append(
                    f"{name}: {start}..{end}: {len(held)} rows stored, {len(served)} served"
                )
    return problems


async def test_opt_in_reports_and_details_hold_what_was_served(
    runs: Runs, spec: SpecServer, pool: Any
) -> None:
    """Reports: every period asked holds its rows as served. Details (invoices, offers,
    project reports): one per record, as served; again after records changed, were created
    or deleted, and after activities were booked (a project's report aggregates them)."""
    runs.enable(*REPORTS, *DETAILS)
    detail_paths = [s["path"] for s in STREAMS if s["name"] in DETAILS]
    try:
        await runs("first", "sync", "moco")
        runs.problems += await compare_reports(spec, pool)
        runs.problems += await compare(pool, spec, detail_paths)
        stored = await live_ids(pool, ["/invoices", "/invoices/{id}"])
        spec.update("/invoices", 3)
        spec.create("/invoices", 2)
        spec.update("/offers", 2)
        spec.update("/projects", 2)
        booked = spec.create("/activities", 10)
        touched = {spec.expected("/activities")[i]["project"]["id"] for i in booked}
        gone = set(spec.delete("/invoices", 1))
        print(f"\nactivities booked on projects {sorted(touched)}")
        await next_second()
        await runs("second", "sync", "moco")
        await runs("sweep", "sweep", "moco")
        deleted = {p: gone & stored[p] for p in stored}
        runs.problems += [f"second run: {p}" for p in await compare_reports(spec, pool)]
        for problem in await compare(pool, spec, [*detail_paths, "/invoices"], deleted=deleted):
            runs.problems.append(f"second run and sweep: {problem}")
        runs.problems += [f"stream run: {s}" for s in await stream_runs(pool)]
    finally:
        runs.finish()


# The lists changed in the incremental scenario, one of each kind: (updates, creations).
CHANGES = {
    "/activities": (30, 15),  # sorted (sort_by, updated_after), 3 pages
    "/invoices": (3, 2),  # sorted, include_disregarded
    "/companies": (8, 4),  # unsorted, include_archived, 2 pages
    "/receipts": (5, 3),  # records without updated_at, 2 pages
    "/account/custom_properties": (2, 1),  # records without updated_at
    "/purchases/payments": (5, 2),  # page, but neither per_page nor paging headers
    "/todos": (4, 3),  # no updated_after: every page every run
    "/account/fixed_costs": (2, 1),  # no updated_after, no paging headers
    "/letter_papers": (1, 1),  # unpaged
    "/users/roles": (1, 0),  # unpaged
    "/projects/{project_id}/tasks": (6, 4),  # a project's list, no ids
    "/projects/expenses": (3, 2),  # every project's expenses: a project's list too
    "/projects/{project_id}/recurring_expenses": (2, 1),  # a project's sorted list
}


async def test_an_incremental_sync_reads_the_changes_and_little_else(
    runs: Runs, spec: SpecServer, pool: Any
) -> None:
    runs.defaults_only()  # what a run costs as shipped
    try:
        await runs("first", "sync", "moco")
        for path, (updates, creations) in CHANGES.items():
            spec.update(path, updates)
            spec.create(path, creations)
        spec.update("/account/hourly_rates", 1)
        await next_second()
        await runs("second", "sync", "moco")
        runs.problems += await compare(pool, spec, runs.lists())
        runs.problems += await compare_objects(pool, spec)
        runs.problems += [f"stream run: {s}" for s in await stream_runs(pool)]
        changed = (
            set(CHANGES)
            | {spec.spec.endpoints[p].union_of or p for p in CHANGES}
            | {e.path for e in spec.spec.lists if e.union_of in CHANGES}
        )
        second = runs.requests["second"]
        for path in runs.lists():
            if path in changed:
                continue
            least = minimal_requests(spec, path)
            if second[path] > least:
                runs.problems.append(
                    f"second run: {second[path]} requests to the unchanged {path}, "
                    f"where {least} read it"
                )
    finally:
        runs.finish()


# Deleted in the deletion scenario: few of each list (a sweep deletes at most 20% of a list).
DELETIONS = {
    "/activities": 5,
    "/invoices": 2,
    "/companies": 3,
    "/receipts": 2,
    "/account/custom_properties": 1,
    "/purchases/payments": 3,
    "/todos": 3,
    "/account/fixed_costs": 2,
    "/invoices/bookkeeping_exports": 1,
    "/letter_papers": 1,
    "/projects": 1,  # and its lists' records
    "/projects/{project_id}/tasks": 3,
    "/projects/{project_id}/contracts": 2,
    "/projects/expenses": 2,
    "/projects/{project_id}/payment_schedules": 2,
}


async def test_deletions_are_marked_by_sync_and_sweep_and_nothing_else_is(
    runs: Runs, spec: SpecServer, pool: Any
) -> None:
    try:
        await runs("first", "sync", "moco")
        paths = runs.lists()
        before = await live_ids(pool, paths)
        for path, n in DELETIONS.items():
            spec.delete(path, n)
        await next_second()
        await runs("sync", "sync", "moco")
        await runs("sweep", "sweep", "moco")
        gone = {p: ids - spec.expected(p).keys() for p, ids in before.items()}
        print(
            "\ndeleted at the source: " + ", ".join(f"{p} {len(g)}" for p, g in gone.items() if g)
        )
        runs.problems += await compare(pool, spec, paths, deleted=gone)
        runs.problems += [f"stream run: {s}" for s in await stream_runs(pool)]
    finally:
        runs.finish()


async def test_every_typed_view_selects_one_row_per_live_record(
    runs: Runs, spec: SpecServer, pool: Any
) -> None:
    runs.enable(*REPORTS, *DETAILS)
    try:
        await runs("first", "sync", "moco")
        for stream in STREAMS:
            name = stream["name"]
            snapshots = stream["strategy"] == "report"
            live = "" if snapshots else " where _deleted_at is null"
            rows = await pool.fetchval(f'select count(*) from moco."{name}"{live}')
            try:
                seen = await pool.fetch(f'select * from moco_views."{name}"')
            except Exception as exc:  # every failing view is reported, not just the first
                runs.problems.append(f"moco_views.{name}: {type(exc).__name__}: {exc}")
                continue
            if len(seen) != rows:
                runs.problems.append(f"moco_views.{name}: {len(seen)} rows, {rows} live records")
            if not snapshots and stream["path"] in spec.spec.endpoints:
                kind = spec.spec.endpoints[stream["path"]].kind
                want = 1 if kind == "object" else len(spec.expected(stream["path"]))
                if len(seen) != want:
                    runs.problems.append(
                        f"moco_views.{name}: {len(seen)} rows, the server has {want} records"
                    )
    finally:
        runs.finish()


# Lists of 2+ pages that lose a record while read: right after page 1, one in its middle.
WHILE_READ = [
    "/activities",  # sorted
    "/companies",  # unsorted, X-Total
    "/receipts",  # records without updated_at, X-Total
    "/purchases/payments",  # unsorted, no paging headers
    "/todos",  # full listing, X-Total
    "/account/fixed_costs",  # full listing, no paging headers
]


async def false_deletions(pool: Any, spec: SpecServer, paths: list[str]) -> list[str]:
    """Rows marked deleted whose record the server still has."""
    problems = []
    for path in paths:
        stream = BY_PATH[path]
        rows = await table(pool, stream)
        alive = spec.expected(path)
        wrong = sorted(r["id"] for r in rows if r["_deleted_at"] is not None and r["id"] in alive)
        if wrong:
            problems.append(
                f"{stream['name']}: {len(wrong)} existing records marked deleted {wrong}"
            )
    return problems


def log_of(spec: SpecServer, path: str) -> str:
    return "; ".join(f"{r.query} -> {r.status}" for r in spec.log if r.endpoint == path)


async def test_records_deleted_while_a_list_is_read_neither_vanish_nor_haunt(
    runs: Runs, spec: SpecServer, pool: Any
) -> None:
    """Offset pages shift when a record before the boundary goes: the first record of page 2
    moves to page 1 and is not served by that query. The run must notice (or the next must
    read it), and no record that exists may be marked deleted. Twice: on the first sync, and
    on a later one (when only the full listings read 2+ pages)."""
    paths = runs.lists()
    churned: dict[str, set[int]] = {p: set() for p in paths}
    try:
        for phase in ("first", "later"):
            for path in WHILE_READ:
                spec.delete_while_read(path)
            spec.churned.clear()
            await runs(f"{phase}", "sync", "moco")
            for path, ids in spec.churned.items():
                churned[path] |= set(ids)
                print(f"\n{phase}: {path} lost {ids} after page 1 of: {log_of(spec, path)}")
            runs.problems += [f"{phase} run: {p}" for p in await false_deletions(pool, spec, paths)]
            await runs(f"{phase}+1", "sync", "moco")
            await runs(f"{phase} sweep", "sweep", "moco")
            problems = await compare(pool, spec, paths, deleted=churned)
            runs.problems += [f"after {phase}+1 and a sweep: {p}" for p in problems]
        runs.problems += [f"stream run: {s}" for s in await stream_runs(pool)]
    finally:
        runs.finish()


def test_a_detail_changes_with_its_record_and_only_then() -> None:
    """The server's details are the source's truth for the detail streams: records created
    in other lists (new ids in the pools references are drawn from) leave them as they were."""
    spec = SpecServer(seed=7)
    before = spec.expected("/offers/{id}")
    for _ in range(10):
        spec.create("/invoices", 2)
        spec.create("/activities", 5)
        spec.create("/contacts/people", 2)
    assert spec.expected("/offers/{id}") == before
    changed = spec.update("/offers", 1)
    after = spec.expected("/offers/{id}")
    assert {i for i in before if after[i] != before[i]} == set(changed)
