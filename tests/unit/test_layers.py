"""The layers of ``pyproject.toml``'s import-linter contracts: every module of syncer is in one,
ARCHITECTURE.md draws the same list, and the contracts fail on a planted import that breaks
them (run on a copy of the package, so the check is shown to bite, not assumed to)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[2]
# Packages that hold layers of different heights: their own __init__ imports nothing of syncer.
CONTAINERS = ("syncer", "syncer.sources", "syncer.destinations")


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _layers() -> list[str]:
    return list(_contracts()["layers"]["layers"])


def _modules_of(layer: str) -> list[str]:
    return [m.strip() for m in re.split(r"[|:]", layer)]


def test_every_module_of_syncer_is_in_a_layer() -> None:
    graph = grimp.build_graph("syncer", exclude_type_checking_imports=False, cache_dir=None)
    placed = [m for layer in _layers() for m in _modules_of(layer)]
    unplaced = sorted(
        module
        for module in graph.modules
        if module not in CONTAINERS
        and not any(module == p or module.startswith(p + ".") for p in placed)
    )
    assert unplaced == [], "add these to the layers in pyproject.toml and ARCHITECTURE.md"
    for container in CONTAINERS[1:]:
        assert graph.find_modules_directly_imported_by(container) == set(), container


def test_architecture_md_draws_the_layers_of_the_contract() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"```text\n# layers.*?\n(.*?)```", text, flags=re.S)
    assert block is not None, "ARCHITECTURE.md lost its ```text # layers block"
    drawn = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert drawn == [layer.replace("syncer.", "") for layer in _layers()]


def _lint_a_copy(tmp_path: Path, plant: str, line: str) -> subprocess.CompletedProcess[str]:
    shutil.copytree(ROOT / "syncer", tmp_path / "syncer", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / plant
    target.write_text(target.read_text() + f"\n{line}\n")
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [str(lint), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_the_contracts_hold_on_an_unchanged_copy(tmp_path: Path) -> None:
    result = _lint_a_copy(tmp_path, "syncer/errors.py", "# nothing planted")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("plant", "broken"),
    [
        ("syncer/cli.py", "Nothing above the registry names a vendor"),
        ("syncer/scheduler.py", "Nothing above the registry names a vendor"),
        ("syncer/store/__init__.py", "Layers:"),
        ("syncer/sources/moca/plugin.py", "Layers:"),
    ],
)
def test_a_planted_vendor_import_breaks_a_contract(tmp_path: Path, plant: str, broken: str) -> None:
    result = _lint_a_copy(tmp_path, plant, "import syncer.sources.moco  # planted")
    assert result.returncode != 0
    assert f"{broken}" in result.stdout
    assert re.search(r"\d+ kept, [1-9]\d* broken", result.stdout)


def test_an_import_made_only_for_annotations_counts(tmp_path: Path) -> None:
    planted = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import syncer.registry"
    result = _lint_a_copy(tmp_path, "syncer/errors.py", planted)
    assert result.returncode != 0
    assert "Layers:" in result.stdout
    assert "No import cycles BROKEN" in result.stdout


def test_the_cli_the_daemon_and_the_commands_name_no_vendor() -> None:
    pattern = re.compile(r"sources\.moco|sources\.moca|destinations\.moengage")
    for name in ("cli.py", "scheduler.py", "commands.py", "dispatch.py"):
        text = (ROOT / "syncer" / name).read_text()
        assert pattern.findall(text) == [], name
