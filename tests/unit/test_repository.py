"""The repository holds no path of the machine it was committed on: no tracked symbolic link
points outside it (a link to a virtualenv elsewhere dangles on every other checkout)."""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK_MODE = "120000"


def _git(repo: Path, *args: str) -> bytes:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    done = subprocess.run([git, *args], cwd=repo, capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        if "not a git repository" in message:
            pytest.skip(f"{repo} is not a git checkout")
        raise AssertionError(f"git {' '.join(args)} failed: {message}")
    return done.stdout


def links_outside(repo: Path) -> list[str]:
    """Each tracked symbolic link of ``repo`` whose target is absolute or leaves the repository,
    as ``path -> target`` (the target as committed, read from the index)."""
    out = []
    for entry in _git(repo, "ls-files", "-s", "-z").split(b"\0"):
        if not entry:
            continue
        meta, path = entry.decode().split("\t", 1)
        mode, blob, _stage = meta.split()
        if mode != LINK_MODE:
            continue
        target = _git(repo, "cat-file", "blob", blob).decode()
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if posixpath.isabs(target) or inside == ".." or inside.startswith("../"):
            out.append(f"{path} -> {target}")
    return out


def test_no_tracked_symlink_points_outside_the_repository() -> None:
    assert links_outside(ROOT) == [], "remove these links (git rm) and ignore them"


def test_a_link_outside_is_found_and_a_link_inside_is_not(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("a page\n")
    os.symlink("page.md", tmp_path / "docs" / "same.md")
    os.symlink("../README.md", tmp_path / "docs" / "readme.md")
    os.symlink("/somewhere/else/.venv", tmp_path / ".venv-core")
    os.symlink("../../outside", tmp_path / "docs" / "up")
    _git(tmp_path, "add", "--force", ".")
    assert links_outside(tmp_path) == [
        ".venv-core -> /somewhere/else/.venv",
        "docs/up -> ../../outside",
    ]
