"""Reading profiles: py-spy's folded stacks and benchmarks.breakdown's step timings, as tables."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import common

# Leaves where the thread waits rather than computes (py-spy counts some of them as active).
_WAITING = frozenset({"EpollSelector.select", "select", "poll", "epoll_wait"})
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    frames = []
    for text in stack.split(";"):
        match = _FRAME.match(text)
        frames.append((match["func"], match["file"]) if match else (text, ""))
    return frames


def cpu_table(folded: Path, top: int = 14) -> tuple[str, int]:
    """CPU samples of a py-spy ``--format raw`` profile by the innermost syncer function on
    the stack (what syncer code the CPU was working for), and the sample count (samples
    waiting in ``select`` are left out)."""
    by_owner: Counter[str] = Counter()
    leaf_of: dict[str, Counter[str]] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if frames[-1][0] in _WAITING:
            continue
        total += count
        names = [f for f, _ in frames]
        if "migrate" in names or "_upgrade" in names:
            owner = "migrations at start (alembic)"
        elif "_find_and_load" in names and "_run_once" not in " ".join(names):
            owner = "imports at start"
        else:
            ours = [(f, p) for f, p in frames if p.startswith("syncer/")]
            if not ours or ours[-1] == ("main", "syncer/cli.py"):
                # A callback the loop runs for a socket (reading, parsing a protocol message):
                # no syncer frame below the command's main.
                owner = "event loop: socket reads, protocol callbacks"
            else:
                owner = f"{ours[-1][0]} ({ours[-1][1]})"
        by_owner[owner] += count
        leaf_func, leaf_file = frames[-1]
        package = leaf_file.split("/")[0] if "/" in leaf_file else leaf_file
        leaf = f"{leaf_func} ({package})" if package else f"{leaf_func or '?'} (native)"
        leaf_of.setdefault(owner, Counter())[leaf] += count
    by_module: Counter[str] = Counter()
    for owner, count in by_owner.items():
        module = owner.rsplit("(", 1)[-1].rstrip(")") if owner.endswith(".py)") else owner
        by_module[module] += count
    modules = ", ".join(f"{m} {n / total:.0%}" for m, n in by_module.most_common(8))
    rows = []
    for owner, count in by_owner.most_common(top):
        hottest = ", ".join(f"{leaf} {n / count:.0%}" for leaf, n in leaf_of[owner].most_common(2))
        rows.append([owner, f"{count / total:.1%}", hottest])
    table = common.markdown_table(
        ["innermost syncer function", "CPU share", "hottest leaves (share of that row)"], rows
    )
    return f"By module: {modules}.\n\n{table}", total


def step_table(breakdown: Path) -> str:
    """benchmarks.breakdown's steps: calls, total seconds, mean milliseconds per call and per
    request made (a sprint's pages may commit in one transaction: requests, not commits, are
    what every run has alike)."""
    data: dict[str, Any] = json.loads(breakdown.read_text())
    requests = data["steps"].get("  GET incl. slot and settle", {}).get("calls", 0)
    requests = max(1, requests)
    rows = []
    for label in data["order"]:
        step = data["steps"].get(label)
        if not step or not step["calls"]:
            continue
        per_call_ms = 1000 * step["seconds"] / step["calls"]
        per_request_ms = 1000 * step["seconds"] / requests
        rows.append(
            [
                label.replace(" ", "&nbsp;", 2) if label.startswith("  ") else label,
                f"{step['calls']:,}",
                f"{step['seconds']:.2f}",
                f"{per_call_ms:.2f}",
                f"{per_request_ms:.2f}",
            ]
        )
    rows.append(["whole command (wall)", "1", f"{data['elapsed_s']:.2f}", "", ""])
    return common.markdown_table(
        ["step", "calls", "total s", "ms per call", "ms per request"], rows
    )
