"""What an incremental sync cannot see, made at the MOCO sandbox once a first sync is done.

``syncer sandbox --backdate N --delete M``: records that appear with an ``updated_at`` 6 to 12
weeks old (an import, a restore: behind any watermark) and records deleted (MOCO keeps no
tombstones), for trying ``syncer verify`` by hand. The sandbox cannot know when a client's sync
has ended; it takes this for the end of the first one: the first time the MOCO API has served
pages of records (a list asked for more than one record a page, as a sync asks; ``syncer
check``'s one-record probe is not that), the last page it served of each list linked no next
page (a sync waiting for its rate limit in the middle of a list is not done), and then it had no
request for :data:`IDLE_S` seconds. Then, once, the records are made and the ids said on
stderr. ``POST /_sandbox/backdate`` (see
``moco.py``) and ``POST /_sandbox/changes`` make the same changes whenever a script asks.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from syncer.sandbox.moco import API_PREFIX, MocoSandbox, RequestRecord

__all__ = ["IDLE_S", "first_sync_done", "plant_when_idle", "planted"]

IDLE_S = 2.0  # no request for this long, after pages were served: the first sync is done
POLL_S = 0.2


def _pages(record: RequestRecord) -> bool:
    """Whether ``record`` is a list answered with pages of records (not a one-record probe)."""
    return (
        record.method == "GET"
        and record.status == 200
        and record.path.startswith(API_PREFIX)
        and record.query.get("per_page") != "1"
    )


def first_sync_done(requests: list[RequestRecord], idle_s: float) -> bool:
    """Whether a first sync is over (module docstring)."""
    if not requests or time.monotonic() - requests[-1].at < idle_s:
        return False
    last: dict[str, RequestRecord] = {}
    for record in requests:
        if _pages(record):
            last[record.path] = record
    return bool(last) and not any(r.more for r in last.values())


def planted(moco: MocoSandbox, backdate: int, delete: int) -> dict[str, dict[str, list[int]]]:
    """``backdate`` records made with an old ``updated_at`` (spread over the lists read by
    ``updated_after``, the eight classic ones first) and ``delete`` records deleted (one a list,
    the classic ones last first: deals, offers, invoices, ...); the ids by stream."""
    made = moco.data.backdate(backdate) if backdate else {}
    order = list(reversed(moco.data.backdatable()[:8])) or moco.data.backdatable()
    gone: dict[str, list[int]] = {}
    for i in range(delete):
        stream = order[i % len(order)]
        gone.setdefault(stream, []).extend(moco.data.delete(stream, 1))
    return {"backdated": made, "deleted": gone}


def _line(kind: str, ids: dict[str, list[int]]) -> str:
    listed = "; ".join(f"{s} {', '.join(map(str, v))}" for s, v in ids.items() if v)
    return f"{sum(len(v) for v in ids.values())} {kind}" + (f" ({listed})" if listed else "")


async def plant_when_idle(
    moco: MocoSandbox,
    backdate: int,
    delete: int,
    *,
    idle_s: float = IDLE_S,
    out: TextIO | None = None,
) -> dict[str, dict[str, list[int]]]:
    """Wait for the end of the first sync (module docstring), then make the changes and say so
    on ``out`` (stderr); what was made, as :func:`planted` returns it."""
    while True:
        await asyncio.sleep(POLL_S)
        if first_sync_done(moco.requests, idle_s):
            break
    made = planted(moco, backdate, delete)
    print(
        f"sandbox: MOCO idle {idle_s:g}s after its first pages (a sync's end): "
        f"{_line('records backdated 6 to 12 weeks', made['backdated'])}, "
        f"{_line('deleted', made['deleted'])}; an incremental sync cannot see them, "
        "`syncer verify moco` finds them",
        file=out or sys.stderr,
        flush=True,
    )
    return made
