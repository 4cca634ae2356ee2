"""``python -m benchmarks NAME``: run one benchmark (or all) and update benchmarks/README.md.

Use ``benchmarks/run NAME``, which first makes the benchmark environment (benchmarks/.venv).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
import warnings

# name: (module, what it measures, arguments it always gets)
BENCHMARKS: dict[str, tuple[str, str, list[str]]] = {
    "extract": ("extract", "extraction throughput: syncer vs dlt (100,000 activities)", []),
    "ceiling": (
        "ceiling",
        "load-path ceiling: COPY vs syncer's upsert path vs end to end, with profiles",
        [],
    ),
    "pacing": ("pacing", "requests/s against a rate-limited sandbox, one and two processes", []),
    "moengage": (
        "moengage",
        "MoEngage body packing, window use and CPU seconds per 100,000 events",
        [],
    ),
    "memory-sync": (
        "memory",
        "peak RSS of syncs of 250,000 and 1,000,000 activities",
        ["--only", "sync"],
    ),
    "memory-load": (
        "memory",
        "peak RSS of loads of 250,000 and 1,000,000 events",
        ["--only", "load"],
    ),
    "memory": ("memory", "both memory cases at once (over five minutes here)", []),
    "incremental": (
        "incremental",
        "requests and seconds of no-change and 1%%-change runs against a full run",
        [],
    ),
    "catalog": (
        "catalog",
        "the whole of MOCO at its rate limit: requests, 429s and pacing of each run",
        [],
    ),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    commands = parser.add_subparsers(dest="name", required=True, metavar="BENCHMARK")
    parsers = {}
    for name, (module_name, help_text, _) in BENCHMARKS.items():
        module = importlib.import_module(f"benchmarks.{module_name}")
        parsers[name] = commands.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(parsers[name])
    commands.add_parser(
        "all", help="every benchmark above but `memory` (its two halves run), one after another"
    )
    args = parser.parse_args(argv)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (the embedded PostgreSQL looks it up).
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    names = [n for n in BENCHMARKS if n != "memory"] if args.name == "all" else [args.name]
    for name in names:
        module_name, help_text, fixed = BENCHMARKS[name]
        given = [] if args.name == "all" else argv[1:]  # the options after the name
        options = parsers[name].parse_args([*fixed, *given])
        module = importlib.import_module(f"benchmarks.{module_name}")
        started = time.monotonic()
        print(f"# {name}: {help_text}", flush=True)
        asyncio.run(module.main(options))
        print(f"# {name} took {time.monotonic() - started:.0f}s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
