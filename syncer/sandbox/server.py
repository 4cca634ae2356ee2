"""Running the sandbox on loopback: one aiohttp server with each simulator mounted under a prefix.

MOCO lives under /moco, MOCA under /moca and MoEngage under /moengage.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from syncer.sandbox.moca import MocaSandbox, MocaSandboxSettings
from syncer.sandbox.moca_data import MocaData
from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.moengage import MoengageSandbox

MOCO_PREFIX = "/moco"
MOENGAGE_PREFIX = "/moengage"
MOCA_PREFIX = "/moca"

# Requests still running at shutdown (a slow fault, say) are given this long before they are
# cancelled, so that leaving a test never hangs.
_SHUTDOWN_TIMEOUT_S = 1.0


@dataclass
class RunningSandbox:
    """A sandbox that is listening: where it is and the simulators behind it."""

    host: str
    port: int
    moco: MocoSandbox
    moengage: MoengageSandbox
    moca: MocaSandbox

    @property
    def base_url(self) -> str:
        """The server's root URL, e.g. "http://127.0.0.1:8765"."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def moco_base_url(self) -> str:
        """The MOCO API base URL clients are configured with, ending in /moco/api/v1."""
        return f"{self.base_url}{MOCO_PREFIX}/api/v1"

    @property
    def moca_base_url(self) -> str:
        """The MOCA API base URL clients are configured with, ending in /moca/v2."""
        return f"{self.base_url}{MOCA_PREFIX}/v2"

    @property
    def moengage_base_url(self) -> str:
        """The MoEngage API base URL clients are configured with, ending in /moengage/v1."""
        return f"{self.base_url}{MOENGAGE_PREFIX}/v1"


def build_app(moco: MocoSandbox, moengage: MoengageSandbox, moca: MocaSandbox) -> web.Application:
    """The root app with every simulator mounted as a sub-app under its prefix."""
    root = web.Application()
    root.add_subapp(MOCO_PREFIX, moco.app())
    root.add_subapp(MOCA_PREFIX, moca.app())
    root.add_subapp(MOENGAGE_PREFIX, moengage.app())
    return root


@asynccontextmanager
async def running_sandbox(
    *,
    moco: MocoSandbox | None = None,
    moengage: MoengageSandbox | None = None,
    moca: MocaSandbox | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[RunningSandbox]:
    """Serves the sandbox on `host`:`port` (0 picks a free port) until the block exits."""
    moco = moco if moco is not None else MocoSandbox()
    moengage = moengage if moengage is not None else MoengageSandbox()
    moca = moca if moca is not None else MocaSandbox()
    runner = web.AppRunner(
        build_app(moco, moengage, moca), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield RunningSandbox(host=host, port=bound_port, moco=moco, moengage=moengage, moca=moca)
    finally:
        await runner.cleanup()


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 1,
    moca_geolocations: str = "buckets",
    ignore_sort_by: frozenset[str] = frozenset(),
    backdate: int = 0,
    delete: int = 0,
) -> None:
    """Serves a sandbox with data from `seed`, prints where and with which key, runs until
    cancelled. `moca_geolocations`: "buckets" or "aggregate" (`MocaSandboxSettings`). MOCO
    streams in `ignore_sort_by` list by id whatever `sort_by` says, over data whose ids grow
    with `updated_at`. After the first sync, `backdate` MOCO records appear with an old
    `updated_at` and `delete` are deleted (`moco_plant`)."""
    moco = MocoSandbox(
        MocoData(seed=seed, ids_follow_updates=bool(ignore_sort_by)),
        MocoSandboxSettings(ignore_sort_by=ignore_sort_by),
    )
    moca = MocaSandbox(MocaData(seed=seed), MocaSandboxSettings(geolocations=moca_geolocations))
    async with running_sandbox(moco=moco, moca=moca, host=host, port=port) as sandbox:
        key = sorted(moco.settings.api_keys)[0]
        token = sorted(moca.settings.tokens)[0]
        moe = sandbox.moengage.settings
        print(f"MOCO      {sandbox.moco_base_url}", flush=True)
        print(f"MOCA      {sandbox.moca_base_url}", flush=True)
        print(f"MoEngage  {sandbox.moengage_base_url}", flush=True)
        print("The sandboxes' credentials, for schedules.toml's *_env keys:", flush=True)
        print(f"export MOCO_API_KEY={key}", flush=True)
        print(f"export MOCA_API_TOKEN={token}", flush=True)
        print(f"export MOENGAGE_WORKSPACE_ID={moe.workspace_id}", flush=True)
        print(f"export MOENGAGE_API_KEY={moe.api_key}", flush=True)
        if not (backdate or delete):
            await asyncio.Event().wait()
        from syncer.sandbox.moco_plant import IDLE_S, plant_when_idle

        print(
            f"sandbox: once MOCO has served a sync's lists to their last pages and then been "
            f"idle {IDLE_S:g}s, "
            f"{backdate} records appear with an updated_at 6 to 12 weeks old and {delete} "
            "are deleted",
            file=sys.stderr,
            flush=True,
        )
        await plant_when_idle(moco, backdate, delete)
        await asyncio.Event().wait()
