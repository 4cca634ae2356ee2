"""/healthz and /metrics over real loopback HTTP, and requests counted on the wire."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from syncer.errors import FatalError
from syncer.observability import (
    HealthMonitor,
    SyncerMetrics,
    http_trace_config,
    record_run,
    serving_health,
)
from tests.unit.test_observability import parse_exposition


async def test_healthz_answers_200_when_ready_and_503_when_not() -> None:
    ready = True
    async with (
        serving_health(port=0, ready=lambda: ready, metrics=SyncerMetrics()) as server,
        aiohttp.ClientSession() as session,
    ):
        assert server.port > 0
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        ready = False
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            assert (await response.json())["status"] != "ok"


async def test_healthz_answers_503_when_the_readiness_check_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("pool closed")

    async with (
        serving_health(port=0, ready=broken, metrics=SyncerMetrics()) as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/healthz") as response,
    ):
        assert response.status == 503


async def test_metrics_serves_the_registry_in_text_format_0_0_4() -> None:
    metrics = SyncerMetrics()
    record_run("moco-every-15-min", "succeeded", 4.2, metrics=metrics)
    async with (
        serving_health(port=0, ready=lambda: True, metrics=metrics) as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = parse_exposition(await response.text())
    runs = families["syncer_runs_total"]
    assert runs.value("syncer_runs_total", job_id="moco-every-15-min", outcome="succeeded") == 1
    duration = families["syncer_run_duration_seconds"]
    assert duration.value("syncer_run_duration_seconds_count", job_id="moco-every-15-min") == 1


async def test_a_port_in_use_is_refused_with_a_message_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FatalError, match=f"127.0.0.1:{port}.*choose another port"):
            async with serving_health(port=port, ready=lambda: True):
                pass


@pytest.fixture
async def api() -> AsyncIterator[str]:
    """A loopback API whose paths answer with the status they name."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["status"]))

    app = web.Application()
    app.router.add_get("/{prefix}/v1/{status}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_requests_are_counted_by_vendor_and_status_class_on_the_wire(api: str) -> None:
    metrics = SyncerMetrics()
    vendors = {f"{api}/moco/v1": "moco", f"{api}/moengage/v1/": "moengage"}
    trace = http_trace_config(vendors, metrics=metrics)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        for path in ("moco/v1/200", "moco/v1/200", "moco/v1/429", "moengage/v1/503", "x/v1/204"):
            async with session.get(f"{api}/{path}", params={"page": "1"}) as response:
                await response.read()
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{_closed_port()}/moco/v1/200")

    count = metrics.http_requests.value
    assert count(vendor="moco", status_class="2xx") == 2
    assert count(vendor="moco", status_class="4xx") == 1
    assert count(vendor="moengage", status_class="5xx") == 1
    assert count(vendor="other", status_class="2xx") == 1
    assert count(vendor="other", status_class="error") == 1


async def test_healthz_names_a_stalled_scheduler_loop_and_recovers_when_it_ticks() -> None:
    beat = time.monotonic() - 60
    monitor = HealthMonitor(heartbeat=lambda: beat, stale_after_s=5)
    async with (
        serving_health(port=0, problem=monitor.problem, metrics=SyncerMetrics()) as server,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["status"] == "unavailable"
        assert "scheduler loop has not ticked" in body["reason"]
        beat = time.monotonic()
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 200


async def test_healthz_checks_the_database_on_its_own_connection(db_url: str) -> None:
    good = HealthMonitor(db_url, check_every_s=0.1)
    bad = HealthMonitor(f"postgresql://syncer:secret-pw@127.0.0.1:{_closed_port()}/x")
    async with good.watching(), bad.watching():
        assert good.problem() is None
        problem = bad.problem()
        assert problem is not None
        assert problem.startswith("the database does not answer")
        assert "secret-pw" not in problem
        async with (
            serving_health(port=0, problem=bad.problem, metrics=SyncerMetrics()) as server,
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/healthz") as response,
        ):
            assert response.status == 503
            assert (await response.json())["reason"] == problem


async def test_metrics_are_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = SyncerMetrics()
    record_run("moco", "succeeded", 1.0, metrics=metrics)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with (
        serving_health(port=0, metrics=metrics) as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics", headers={"Accept": accept}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    assert text.endswith("# EOF\n")
    assert 'syncer_runs_total{job_id="moco",outcome="succeeded"} 1.0' in text


async def test_the_process_metrics_are_served_beside_syncers() -> None:
    async with (
        serving_health(host="127.0.0.1", port=0) as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics") as response,
    ):
        families = parse_exposition(await response.text())
    assert "syncer_runs_total" in families
    assert "python_info" in families
