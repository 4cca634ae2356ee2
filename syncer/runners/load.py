"""The load run every destination shares: pending rows in, acknowledgements and dead letters out.

A destination gives what is its own (``syncer.destinations.base``: its models, rows as items,
bodies, one delivery); this module does the run around it: the run's frame (one load of a
destination at a time, its ``syncer.runs`` row and counts), the model checks, the pending rows
(``runners.pending``: a snapshot over each model's rows not yet acknowledged as they are now,
merged in the destination's order), one send per key and run (later rows of a key are
dead-lettered ``duplicate_key``), rows the destination refuses as dead letters, the in-flight
journal's recovery after a crash, and the dry run's folder. Sending (packing, pacing, the
journal, acknowledgements fenced by the run's lease, unanswered sends, retries, splits,
lowered limits after throttling) is ``runners.sender``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from syncer import progress, registry, shutdown
from syncer.destinations.base import Destination, Invalid, Model
from syncer.errors import ConfigError, FatalError
from syncer.results import LoadResult
from syncer.runframe import Frame, exclusive_run
from syncer.runners.pending import FETCH_ROWS, check_model, once, pending_rows
from syncer.runners.sender import Pending, Sender
from syncer.store import loads, locks, runs
from syncer.store.rate import SharedLimiter
from syncer.store.types import Connection, Pool

if TYPE_CHECKING:
    from syncer.config import DestinationSettings
    from syncer.results import LoadOutcome

__all__ = ["CHUNK_BODIES", "destination_of", "load", "load_destination"]

CHUNK_BODIES = 20  # bodies' worth of items packed at a time; the last partial one carries over


def destination_of(settings: DestinationSettings) -> Destination[Any]:
    """The destination its type's ``destination`` makes of ``settings``."""
    kind = registry.destination_type(settings.type)
    if kind.destination is None:
        raise ConfigError(
            f"destination type {kind.name!r} gives no destination to load into; its plugin's "
            "DestinationType needs destination= (or a load and status of its own)"
        )
    made: Destination[Any] = kind.destination(settings)
    return made


async def load_destination(
    pool: Pool,
    session: aiohttp.ClientSession,
    settings: DestinationSettings,
    *,
    only: Sequence[str] = (),
    dry_run_dir: Path | None = None,
    command: str = "load",
    backoff_base_s: float = 1.0,
) -> LoadOutcome:
    """One load of the configured destination ``settings``: the generic run (:func:`load`)
    into what its type makes of them, or the type's own ``load`` (given the same options but
    ``backoff_base_s``, which is the generic run's)."""
    options: dict[str, Any] = {"only": only, "dry_run_dir": dry_run_dir, "command": command}
    kind = registry.destination_type(settings.type)
    if kind.load is not None:
        return await kind.load(pool, session, settings, **options)
    destination = destination_of(settings)
    return await load(pool, session, destination, backoff_base_s=backoff_base_s, **options)


async def load(
    pool: Pool,
    session: aiohttp.ClientSession,
    destination: Destination[Any],
    *,
    only: Sequence[str] = (),
    dry_run_dir: Path | None = None,
    command: str = "load",
    backoff_base_s: float = 1.0,
) -> LoadResult:
    """One load run; with ``dry_run_dir`` nothing is sent or written but the bodies."""
    started = time.monotonic()
    name = destination.name
    result = LoadResult(
        name,
        dry_run=dry_run_dir is not None,
        models=tuple(m.name for m in destination.models),
        vendor=destination.vendor,
        once=tuple(once(destination.models)),
    )
    progress.watch([result])
    wanted = [m for m in destination.models if not only or m.name in only]
    async with pool.acquire() as conn:
        for model in wanted:
            await check_model(conn, name, model)
    if dry_run_dir is not None:
        await asyncio.to_thread(_empty_folder, dry_run_dir)
        await _run(pool, session, destination, wanted, result, dry_run_dir, backoff_base_s)
        result.outcome = "succeeded"
        result.elapsed_s = time.monotonic() - started
        return result

    async def finish(conn: Connection, frame: Frame) -> None:
        if frame.lost and result.outcome != "succeeded":
            result.outcome, result.error = "failed", frame.lost
        await _finish(conn, result)

    async with exclusive_run(
        pool,
        lock_class=locks.LOAD,
        kind="load",
        source=name,
        command=command,
        keys=[name],
        busy=lambda _keys: (
            f"another load of {name!r} is running against this database; "
            f"wait for it to finish (see `syncer status`)"
        ),
        finish=finish,
        grace_s=destination.timeout_s,  # a body in flight is answered and recorded first
    ) as frame:
        result.run_id = frame.run_id
        result.outcome, result.error = "failed", "the run was cancelled"
        try:
            async with pool.acquire() as conn:
                await loads.recover_inflight(conn, name, once(destination.models))
            await _run(pool, session, destination, wanted, result, None, backoff_base_s)
            result.outcome, result.error = "succeeded", None
        except shutdown.Interrupted:
            result.outcome, result.error = (
                "interrupted",
                "stopped by a signal; resumes next run",
            )
        except FatalError as exc:
            result.outcome, result.error = "failed", exc.message
        except asyncio.CancelledError:
            result.outcome, result.error = "interrupted", "stopped before it finished"
            raise
        finally:
            result.elapsed_s = time.monotonic() - started
    return result


def _empty_folder(folder: Path) -> None:
    """``folder`` exists and holds no bodies of an earlier dry run."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("body-*.json"):
        old.unlink()


async def _finish(conn: Connection, result: LoadResult) -> None:
    assert result.run_id is not None
    await runs.finish_run(conn, result.run_id, result.outcome, result.error)
    await loads.record_run_counts(conn, result.run_id, result.to_json())


async def _run(
    pool: Pool,
    session: aiohttp.ClientSession,
    destination: Destination[Any],
    models: Sequence[Model],
    result: LoadResult,
    dry_run_dir: Path | None,
    backoff_base_s: float,
) -> None:
    limiter = SharedLimiter(
        pool, destination.scope, dict(destination.limits), margin_s=destination.margin_s
    )
    sender = Sender(pool, session, destination, result, dry_run_dir, backoff_base_s, limiter)
    now = datetime.now(UTC)
    chunk: list[Pending[Any]] = []
    chunk_bytes = 0
    letters: list[loads.DeadLetter] = []
    seen: dict[str, set[str]] = {model.name: set() for model in models}
    name = destination.name
    try:
        async for model, row in pending_rows(pool, name, models, hold=destination.hold_lost):
            if row["_key"] in seen[model.name]:
                # A key is sent at most once per run: the first row of it goes, later ones not.
                letters.append(_duplicate(name, model, row))
                result.dead_letters[loads.DUPLICATE_KEY] += 1
                continue
            seen[model.name].add(row["_key"])
            cuts: list[str] = []
            try:
                item = destination.item(model, row, now, cuts)
            except Invalid as exc:
                letters.append(_dead_letter(model, row, exc.rule, exc.reason))
                result.dead_letters[exc.rule] += 1
                continue
            pending = Pending(
                item,
                loads.Ack(model.name, row["_key"], row["_hash"]),
                len(orjson.dumps(destination.payload(item))),
            )
            for label in cuts:
                result.truncated[f"{model.name}.{label}"] += 1
                if dry_run_dir is not None:
                    result.truncations.append(
                        {"model": model.name, "key": row["_key"], "cut": label}
                    )
            if not await sender.fits_alone(pending):
                continue
            chunk.append(pending)
            chunk_bytes += pending.size
            if chunk_bytes >= CHUNK_BODIES * destination.max_body_bytes:
                await sender.dead_letter(letters)
                letters = []
                chunk = await sender.send_packed(chunk, final=False)
                chunk_bytes = sum(p.size for p in chunk)
            if len(letters) >= FETCH_ROWS:
                await sender.dead_letter(letters)
                letters = []
    except ConfigError as exc:
        result.error = exc.message  # what the run's record says, as the user is told
        raise
    await sender.dead_letter(letters)
    await sender.send_packed(chunk, final=True)
    result.waited_s = sender.limiter.waited_s
    if dry_run_dir is not None and result.truncations:
        lines = b"".join(orjson.dumps(t) + b"\n" for t in result.truncations)
        await asyncio.to_thread((dry_run_dir / "truncations.jsonl").write_bytes, lines)


def _duplicate(destination: str, model: Model, row: Mapping[str, Any]) -> loads.DeadLetter:
    shown = str(row["_key"]).replace("\x1f", " / ")
    reason = (
        f"the {model.name} model returned {model.key_label} {shown!r} more than once; the "
        f"first row was sent in this run, this one is not (fix "
        f"destinations.{destination}.{model.name}.sql to return one row per key)"
    )
    return _dead_letter(model, row, loads.DUPLICATE_KEY, reason)


def _dead_letter(model: Model, row: Mapping[str, Any], rule: str, reason: str) -> loads.DeadLetter:
    data = {k: v for k, v in row.items() if not k.startswith("_")}
    for key in model.json_columns:
        if isinstance(data.get(key), str):
            data[key] = orjson.loads(data[key])
    text = orjson.dumps(data, default=str).decode()
    return loads.DeadLetter(model.name, row["_key"], row["_hash"], rule, reason, text)
