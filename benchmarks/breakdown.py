"""Run a syncer command with timers around the steps of a page, and write where time went.

A sampling profiler says where the CPU goes; a sync waits more than it computes (the API, the
database), so this says where the *wall* time of a page goes: each step's calls, total and
mean, measured from call to completion. Steps overlap (the next page is fetched while the
current one commits), so their totals add up to more than the run.

Usage: python -m benchmarks.breakdown RESULT.json SYNCER-ARGS...
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# (module, attribute path, label): the steps of syncer's extraction path. Steps that do not
# exist in the code at hand (it moves) are left out of the table.
STEPS = (
    ("syncer.sources.moco.stream", "_Ahead.first", "fetch ahead: the first page of a walk"),
    ("syncer.sources.moco.stream", "_Ahead.next", "fetch ahead: the next page or sprint"),
    ("syncer.sources.moco.stream", "_Ahead._sprint", "  a sprint (pages at once, then a check)"),
    ("syncer.runners.sync", "_fetch", "fetch a page (slot, GET, parse)"),
    ("syncer.store.rate", "SharedRequestLimiter.acquire", "  take a rate-limit slot (ledger)"),
    ("syncer.store.rate", "Spent.settle", "  settle the slot (ledger)"),
    ("syncer.http.client", "ApiClient.get", "  GET incl. slot and settle"),
    ("syncer.http.client", "Response.json", "  orjson.loads of the body"),
    ("syncer.sources.moco.stream", "split_records", "  split_records (orjson.dumps per record)"),
    ("syncer.runners.sync", "split_records", "  split_records (orjson.dumps per record)"),
    ("syncer.sources.moco.stream", "_commit", "commit (one transaction: a page or a sprint)"),
    ("syncer.runners.sync", "_commit", "commit (one transaction: a page or a sprint)"),
    ("syncer.store.pages", "upsert_rows", "  COPY into stage + INSERT … ON CONFLICT"),
)

totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def _timed(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if _is_async(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                entry = totals[label]
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            entry = totals[label]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    return wrapper


def _is_async(func: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(func)


def install() -> list[str]:
    """Wrap every step that exists; the labels of those that do."""
    import importlib

    found = []
    for module_name, path, label in STEPS:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            func = getattr(owner, name)
        except (ImportError, AttributeError):
            continue
        setattr(owner, name, _timed(label, func))
        if label not in found:
            found.append(label)
    return found


def main(argv: list[str]) -> int:
    result_path, args = argv[0], argv[1:]
    found = install()
    from syncer.cli import main as syncer_main

    started = time.perf_counter()
    code = syncer_main(args)
    elapsed = time.perf_counter() - started
    steps = {
        label: {"calls": calls, "seconds": seconds} for label, (calls, seconds) in totals.items()
    }
    with open(result_path, "w") as out:
        json.dump({"elapsed_s": elapsed, "steps": steps, "order": found}, out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
