"""``syncer webhooks serve``: a real server on loopback, real PostgreSQL, the MOCO sandbox sending.

The in-process tests serve ``WebhookReceiver`` on a loopback port and POST signed deliveries to
it; the end-to-end tests run ``python -m syncer webhooks serve`` as a process and let the
sandbox deliver its own changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from syncer.config import Secret
from syncer.configfile import load_settings
from syncer.errors import ConfigError
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.moco_data import MocoData, parse_ts
from syncer.sandbox.server import RunningSandbox, running_sandbox
from syncer.sources.moco.webhooks import DELIVERIES, WebhookConfig, WebhookReceiver, sign
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import SANDBOX_KEY
from tests.integration.test_cli import assert_one_error_line, closed_port, syncer

SECRET = "7c0d4e1f9a2b3c4d5e6f708192a3b4c5"  # distinctive: finding it in any output is a leak
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STREAMS = tuple(s for s in MOCO_STREAMS if s != "deals")  # deals: configured off


def ms(when: datetime) -> str:
    return str(int(when.timestamp() * 1000))


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def project(record_id: int, minutes: int, **fields: Any) -> dict[str, Any]:
    stamp = at(minutes).isoformat().replace("+00:00", "Z")
    return {"id": record_id, "name": f"v{minutes}", "updated_at": stamp, **fields}


@dataclass
class Receiver:
    url: str
    receiver: WebhookReceiver
    session: aiohttp.ClientSession

    async def post(
        self,
        body: bytes | dict[str, Any],
        *,
        event: str = "update",
        target: str | None = "Project",
        when: datetime = T0,
        secret: str | None = SECRET,
        signature: str | None = None,
        timestamp: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """POST one delivery as MOCO does; its status and JSON answer."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Moco-Event": event,
            "X-Moco-Timestamp": timestamp if timestamp is not None else ms(when),
            "X-Moco-User-Id": "933613686",
            "X-Moco-Account-Url": "acme",
        }
        if target is not None:
            headers["X-Moco-Target"] = target
        if signature is None and secret is not None:
            signature = sign(secret, raw)
        if signature is not None:
            headers["X-Moco-Signature"] = signature
        async with self.session.post(f"{self.url}/moco", data=raw, headers=headers) as answer:
            return answer.status, await answer.json()


@pytest.fixture
async def hooks(pool: Any) -> AsyncIterator[Receiver]:
    config = WebhookConfig("moco", STREAMS, Secret("MOCO_WEBHOOK_SECRET", SECRET))
    receiver = WebhookReceiver(pool, config)
    runner = web.AppRunner(receiver.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            yield Receiver(url, receiver, session)
    finally:
        await runner.cleanup()


async def row(pool: Any, record_id: int, table: str = "projects") -> Any:
    return await pool.fetchrow(
        f"select updated_at, data, _deleted_at from moco.{table} where id = $1", record_id
    )


def state(found: Any) -> tuple[Any, ...] | None:
    """A row as (updated_at, name, _deleted_at), to compare across ids."""
    if found is None:
        return None
    return found["updated_at"], json.loads(found["data"]).get("name"), found["_deleted_at"]


# --- applying deliveries -----------------------------------------------------------------------


async def test_a_signed_delivery_is_in_the_table_within_a_second(
    hooks: Receiver, pool: Any
) -> None:
    sent = time.monotonic()
    status, answer = await hooks.post(project(5, 1, budget=1500.5), event="create")
    assert (status, answer) == (200, {"status": "applied", "changed": True})
    async with asyncio.timeout(1):
        while (found := await row(pool, 5)) is None:
            await asyncio.sleep(0.01)
    assert time.monotonic() - sent < 1
    assert json.loads(found["data"]) == project(5, 1, budget=1500.5)
    assert found["updated_at"] == at(1)
    assert found["_deleted_at"] is None
    assert hooks.receiver.counts.by_target["Project"]["applied"] == 1


@pytest.mark.parametrize("how", ["missing", "wrong key", "one character", "another body"])
async def test_a_bad_signature_is_401_and_changes_nothing(
    hooks: Receiver, pool: Any, how: str
) -> None:
    await hooks.post(project(5, 1))
    before = await row(pool, 5)
    newer = project(5, 9)
    good = sign(SECRET, json.dumps(newer).encode())
    signature = {
        "missing": None,
        "wrong key": sign(SECRET[::-1], json.dumps(newer).encode()),
        "one character": good[:-1] + ("0" if good[-1] != "0" else "1"),
        "another body": sign(SECRET, json.dumps(project(5, 1)).encode()),
    }[how]
    for event, body in (("update", newer), ("create", project(6, 1)), ("delete", newer)):
        status, answer = await hooks.post(body, event=event, secret=None, signature=signature)
        assert status == 401
        assert answer["reason"] == "missing or wrong X-Moco-Signature"
    assert await row(pool, 5) == before
    assert await pool.fetchval("select count(*) from moco.projects") == 1
    assert hooks.receiver.counts.by_target["Project"]["rejected"] == 3


async def test_an_older_update_arriving_after_a_newer_one_does_not_overwrite_it(
    hooks: Receiver, pool: Any
) -> None:
    assert (await hooks.post(project(5, 9)))[1]["changed"] is True
    assert (await hooks.post(project(5, 3)))[1] == {"status": "applied", "changed": False}
    assert state(await row(pool, 5)) == (at(9), "v9", None)


async def test_a_delete_marks_the_row_and_an_older_update_does_not_resurrect_it(
    hooks: Receiver, pool: Any
) -> None:
    await hooks.post(project(5, 1), event="create")
    await hooks.post(project(5, 1), event="delete", when=at(4))
    assert state(await row(pool, 5)) == (at(1), "v1", at(4))
    await hooks.post(project(5, 3))  # changed before the delete, arriving after it
    assert state(await row(pool, 5)) == (at(3), "v3", at(4))
    await hooks.post(project(5, 6))  # changed after the delete: the record is back
    assert state(await row(pool, 5)) == (at(6), "v6", None)


async def test_a_delete_older_than_the_rows_last_update_is_not_applied(
    hooks: Receiver, pool: Any
) -> None:
    await hooks.post(project(5, 6))
    await hooks.post(project(5, 1), event="delete", when=at(4))
    assert state(await row(pool, 5)) == (at(6), "v6", None)


async def test_a_delete_of_an_unknown_id_is_stored_deleted_so_a_late_create_cannot_resurrect_it(
    hooks: Receiver, pool: Any
) -> None:
    status, _ = await hooks.post(project(7, 2), event="delete", when=at(4))
    assert status == 200
    assert state(await row(pool, 7)) == (at(2), "v2", at(4))
    await hooks.post(project(7, 1), event="create", when=at(1))
    assert state(await row(pool, 7)) == (at(2), "v2", at(4))


async def test_duplicate_and_out_of_order_deliveries_converge(hooks: Receiver, pool: Any) -> None:
    """One history delivered in order, reversed, shuffled with duplicates, and all at once:
    every id ends in the same state."""

    def history(record_id: int) -> list[tuple[str, dict[str, Any], datetime]]:
        return [
            ("create", project(record_id, 1), at(1)),
            ("update", project(record_id, 2), at(2)),
            ("update", project(record_id, 5), at(5)),
            ("delete", project(record_id, 5), at(7)),
            ("update", project(record_id, 6), at(6)),  # before the delete: stays deleted
        ]

    rng = random.Random(4)
    orders = {
        101: history(101),
        102: history(102)[::-1],
        103: rng.sample(history(103) * 3, 15),
    }
    for events in orders.values():
        for event, body, when in events:
            assert (await hooks.post(body, event=event, when=when))[0] == 200
    together = rng.sample(history(104) * 2, 10)
    answers = await asyncio.gather(
        *(hooks.post(body, event=event, when=when) for event, body, when in together)
    )
    assert {status for status, _ in answers} == {200}
    states = {record_id: state(await row(pool, record_id)) for record_id in (101, 102, 103, 104)}
    assert set(states.values()) == {(at(6), "v6", at(7))}, states


@pytest.mark.parametrize(
    ("target", "event", "reason"),
    [
        ("InvoiceDraft", "create", "target 'InvoiceDraft' is not synced"),
        ("Deal", "update", "stream 'deals' (target 'Deal') is not configured"),
        ("Project", "archive", "event 'archive' is not one of"),
        (None, "update", "no X-Moco-Target header"),
    ],
)
async def test_other_targets_and_events_are_answered_2xx_and_ignored(
    hooks: Receiver, pool: Any, target: str | None, event: str, reason: str
) -> None:
    ignored = DELIVERIES.value(target=target or "other", outcome="ignored")
    status, answer = await hooks.post(project(5, 1), target=target, event=event)
    assert status == 200
    assert answer["status"] == "ignored"
    assert reason in answer["reason"]
    for table in ("projects", "deals"):
        assert await pool.fetchval(f"select count(*) from moco.{table}") == 0
    assert DELIVERIES.value(target=target or "other", outcome="ignored") == ignored + 1


@pytest.mark.parametrize(
    ("body", "timestamp", "fact"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[]", None, "not a JSON object but list"),
        (b'{"name": "no id"}', None, "no integer 'id'"),
        (b'{"id": "5"}', None, "no integer 'id' (got \"5\")"),
        (b'{"id": 5, "name": "\\u0000"}', None, "cannot be stored"),
        (b'{"id": 5}', "", "X-Moco-Timestamp header is missing"),
        (b'{"id": 5}', "yesterday", "epoch milliseconds"),
    ],
)
async def test_a_signed_body_that_is_not_a_record_is_400_and_writes_nothing(
    hooks: Receiver, pool: Any, body: bytes, timestamp: str | None, fact: str
) -> None:
    status, answer = await hooks.post(body, timestamp=timestamp)
    assert status == 400, answer
    assert fact in answer["reason"]
    assert await pool.fetchval("select count(*) from moco.projects") == 0
    assert hooks.receiver.counts.by_target["Project"]["rejected"] == 1


# --- the sandbox's deliveries ------------------------------------------------------------------


@dataclass
class Captured:
    headers: dict[str, str]
    body: bytes


@pytest.fixture
async def capture() -> AsyncIterator[tuple[str, list[Captured]]]:
    """A hook URL on loopback that answers 200 and keeps what arrived."""
    arrived: list[Captured] = []

    async def keep(request: web.Request) -> web.Response:
        arrived.append(Captured(dict(request.headers), await request.read()))
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", keep)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", arrived
    finally:
        await runner.cleanup()


async def test_the_sandbox_registers_hooks_and_signs_its_changes_as_moco_does(
    capture: tuple[str, list[Captured]], moco: MocoSandbox
) -> None:
    url, arrived = capture
    async with running_sandbox(moco=moco) as box, aiohttp.ClientSession() as session:
        control = f"{box.base_url}/moco/_sandbox"
        hook = {"url": url, "secret": SECRET, "targets": ["Deal"]}
        async with session.post(f"{control}/web_hooks", json=hook) as answer:
            assert answer.status == 201
            assert "secret" not in await answer.json()
        before = int(time.time() * 1000)
        change = {"stream": "deals", "event": "update", "n": 2}
        async with session.post(f"{control}/changes", json=change) as answer:
            ids = (await answer.json())["ids"]
        moco.data.update("projects", 2)  # not a subscribed target
        async with asyncio.timeout(5):
            while moco.webhooks.pending or len(arrived) < 2:
                await asyncio.sleep(0.01)
        async with session.get(f"{control}/web_hooks") as answer:
            listing = await answer.json()
    assert len(arrived) == 2
    records = {r["id"]: r for r in moco.data.records("deals")}
    for delivery in arrived:
        h = delivery.headers
        assert (h["X-Moco-Target"], h["X-Moco-Event"]) == ("Deal", "update")
        assert h["X-Moco-Signature"] == sign(SECRET, delivery.body)
        assert before <= int(h["X-Moco-Timestamp"]) <= int(time.time() * 1000)
        assert h["X-Moco-User-Id"].isdigit()
        assert h["X-Moco-Account-Url"]
        record = json.loads(delivery.body)
        assert record == records[record["id"]]
    assert sorted(json.loads(d.body)["id"] for d in arrived) == ids
    assert [d["status"] for d in listing["deliveries"]] == [200, 200]
    assert listing["hooks"][0]["targets"] == ["Deal"]
    assert SECRET not in json.dumps(listing)


async def test_a_hook_failing_500_times_in_a_row_is_disabled(moco: MocoSandbox) -> None:
    async with running_sandbox(moco=moco):
        moco.webhooks.retry_delay_s = 0.0
        hook = moco.webhooks.register(f"http://127.0.0.1:{closed_port()}/", SECRET)
        moco.data.update("activities", 20)  # 5 attempts each: 100 failures
        async with asyncio.timeout(10):
            while moco.webhooks.pending:
                await asyncio.sleep(0.01)
        assert hook.consecutive_failures == 100
        assert not hook.disabled
        for _ in range(4):
            moco.data.update("activities", 20)
        async with asyncio.timeout(30):
            while moco.webhooks.pending:
                await asyncio.sleep(0.01)
    assert hook.disabled
    assert hook.disabled_at is not None
    assert len(moco.webhooks.deliveries) == 500
    assert {d.status for d in moco.webhooks.deliveries} == {0}


# --- the command -------------------------------------------------------------------------------

COUNTS = {
    "activities": 20,
    "projects": 20,
    "companies": 20,
    "contacts": 20,
    "users": 5,
    "invoices": 20,
    "offers": 20,
    "deals": 20,
}


@pytest.fixture
def moco() -> MocoSandbox:
    """A small account: the data is built in milliseconds."""
    return MocoSandbox(MocoData(seed=11, counts=COUNTS))


def write_config(tmp_path: Path, sandbox: RunningSandbox, *extra: str) -> Path:
    path = tmp_path / "schedules.toml"
    lines = [
        "[sources.moco]",
        'type = "moco"',
        f'base_url = "{sandbox.moco_base_url}"',
        'api_key_env = "MOCO_API_KEY"',
        'streams = ["activities", "projects", "companies", "contacts",',
        '    "users", "invoices", "offers", "deals"]',
        *extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(db_url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "MOCO_WEBHOOK_SECRET")}
    return {
        **env,
        "SYNCER_DATABASE_URL": db_url,
        "MOCO_API_KEY": SANDBOX_KEY,
        "SYNCER_HOME": str(tmp_path / "home"),
        **more,
    }


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> tuple[int, str, str]:
        """SIGTERM; the exit code, stdout and the log."""
        self.process.send_signal(signal.SIGTERM)
        return await self.wait()

    async def wait(self) -> tuple[int, str, str]:
        """Until the process exits; the exit code, stdout and the log."""
        out, _ = await asyncio.wait_for(self.process.communicate(), 15)
        assert self.process.returncode is not None
        return self.process.returncode, out.decode(), self.log.read_text()


@pytest.fixture
async def served(db_url: str, sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Served]:
    """``syncer webhooks serve`` as a process on a free port, listening."""
    path = write_config(tmp_path, sandbox, 'webhook_secret_env = "MOCO_WEBHOOK_SECRET"')
    port = closed_port()
    log = tmp_path / "webhooks.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncer",
            "webhooks",
            "serve",
            "--port",
            str(port),
            "--config",
            str(path),
            env=environment(db_url, tmp_path, MOCO_WEBHOOK_SECRET=SECRET),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            stdin=asyncio.subprocess.DEVNULL,
        )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 60)
    assert f"receiving MOCO webhooks on http://127.0.0.1:{port}/" in first.decode(), log.read_text()
    server = Served(process, port, log)
    try:
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_for_rows(pool: Any, moco: MocoSandbox, stream: str, ids: list[int]) -> None:
    """Until each id's row holds the sandbox's current record (5 s at most)."""
    current = {r["id"]: r for r in moco.data.records(stream)}
    async with asyncio.timeout(5):
        while True:
            rows = await pool.fetch(
                f"select id, updated_at, data from moco.{stream} where id = any($1::bigint[])"
                " and _deleted_at is null",
                ids,
            )
            found = {r["id"]: r for r in rows}
            if all(
                i in found and found[i]["updated_at"] == parse_ts(current[i]["updated_at"])
                for i in ids
            ):
                break
            await asyncio.sleep(0.02)
    for i in ids:
        stored = json.loads(found[i]["data"])
        stored.pop("file_url", None)
        current[i].pop("file_url", None)
        assert stored == current[i]


async def test_the_sandboxs_signed_webhooks_reach_the_tables_through_the_command(
    served: Served, moco: MocoSandbox, pool: Any
) -> None:
    hook = moco.webhooks.register(f"{served.url}/moco", SECRET)
    updated = moco.data.update("projects", 3)
    created = moco.data.create("companies", 2)
    deleted = moco.data.delete("contacts", 2)
    await wait_for_rows(pool, moco, "projects", updated)
    await wait_for_rows(pool, moco, "companies", created)
    async with asyncio.timeout(5):
        while await pool.fetchval(
            "select count(*) from moco.contacts where id = any($1::bigint[])"
            " and _deleted_at is not null",
            deleted,
        ) < len(deleted):
            await asyncio.sleep(0.02)

    # Out of order, twice, and with a bad signature first: the newest version still wins.
    moco.webhooks.faults.out_of_order_next = 10
    moco.webhooks.faults.duplicate_next = 4
    moco.webhooks.faults.bad_signature_next = 1
    users = [u["id"] for u in moco.data.records("users")]
    moco.data.update("users", len(users))
    await asyncio.sleep(0.01)  # a later updated_at for the second change
    moco.data.update("users", len(users))
    await wait_for_rows(pool, moco, "users", users)
    async with asyncio.timeout(5):
        while moco.webhooks.pending:
            await asyncio.sleep(0.02)
    statuses = [d.status for d in moco.webhooks.deliveries]
    assert statuses.count(401) == 1
    assert [d.signed for d in moco.webhooks.deliveries if d.status == 401] == [False]
    assert set(statuses) == {200, 401}
    assert not hook.disabled
    await wait_for_rows(pool, moco, "users", users)

    code, out, log = await served.stop()
    assert code == 0, log
    expected = len(updated) + len(created) + len(deleted) + 2 * len(users) + 4
    assert f"webhooks: {expected + 1} received, {expected} applied" in out
    assert "1 rejected" in out
    assert "webhook applied" in log
    assert "Traceback" not in log
    assert SECRET not in out + log


async def test_sigterm_lets_a_delivery_in_flight_finish_and_exits_0(
    served: Served, pool: Any
) -> None:
    body = json.dumps(project(5, 1)).encode()
    headers = {
        "X-Moco-Target": "Project",
        "X-Moco-Event": "create",
        "X-Moco-Timestamp": ms(at(1)),
        "X-Moco-Signature": sign(SECRET, body),
    }

    async def deliver(session: aiohttp.ClientSession) -> int:
        async with session.post(served.url, data=body, headers=headers) as answer:
            return answer.status

    async with aiohttp.ClientSession() as session, pool.acquire() as blocker:
        lock = blocker.transaction()
        await lock.start()
        # The table lock keeps the delivery's insert waiting: it is in flight.
        await blocker.execute("lock table moco.projects in exclusive mode")
        request = asyncio.create_task(deliver(session))
        async with asyncio.timeout(5):
            while not await pool.fetchval(
                "select count(*) from pg_locks l join pg_class c on c.oid = l.relation"
                " where c.relname = 'projects' and not l.granted"
            ):
                await asyncio.sleep(0.02)
        served.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert served.process.returncode is None  # still finishing the delivery
        await lock.rollback()
        assert await asyncio.wait_for(request, 10) == 200
    code, out, log = await served.wait()
    assert code == 0, log
    assert await row(pool, 5) is not None
    assert "1 received, 1 applied" in out


@pytest.mark.parametrize(
    ("extra", "env", "facts"),
    [
        ((), {}, ("sources.moco.webhook_secret_env", "required by `syncer webhooks serve`")),
        (
            ('webhook_secret_env = "MOCO_WEBHOOK_SECRET"',),
            {},
            ("sources.moco.webhook_secret_env", "MOCO_WEBHOOK_SECRET is not set"),
        ),
        (
            ('webhook_secret_env = "MOCO_WEBHOOK_SECRET"',),
            {"MOCO_WEBHOOK_SECRET": " "},
            ("sources.moco.webhook_secret_env", "MOCO_WEBHOOK_SECRET is empty"),
        ),
    ],
)
async def test_without_a_secret_the_command_exits_2_naming_the_key(
    db_url: str,
    sandbox: RunningSandbox,
    tmp_path: Path,
    extra: tuple[str, ...],
    env: dict[str, str],
    facts: tuple[str, ...],
) -> None:
    path = write_config(tmp_path, sandbox, *extra)
    ran = await syncer(
        "webhooks",
        "serve",
        "--port",
        str(closed_port()),
        "--config",
        path,
        env=environment(db_url, tmp_path, **env),
        cwd=tmp_path,
    )
    assert_one_error_line(ran, 2, *facts)


async def test_a_literal_secret_in_the_file_is_refused_and_never_echoed(
    db_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    path = write_config(tmp_path, sandbox, f'webhook_secret = "{SECRET}"')
    ran = await syncer(
        "webhooks", "serve", "--config", path, env=environment(db_url, tmp_path), cwd=tmp_path
    )
    assert_one_error_line(ran, 2, "sources.moco.webhook_secret", 'webhook_secret_env = "MOCO_')
    assert SECRET not in ran.output


def test_webhooks_serve_is_not_accepted_as_a_scheduled_job(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text('[[jobs]]\nid = "hooks"\nrun = "webhooks serve"\nevery = "1m"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.exit_code == 2
    assert "jobs[0].run" in str(info.value)
