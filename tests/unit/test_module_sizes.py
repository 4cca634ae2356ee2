"""No module of ``syncer/`` is over 500 lines unless it is one concept, and says so: its
docstring has a line starting "One concept:" that names it. The CLI holds no SQL and draws no
table (parsing and dispatch only)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "syncer"
LIMIT = 500


def test_long_modules_say_why_they_are_one_concept() -> None:
    unexplained = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.startswith("One concept:") for line in doc.splitlines()):
            unexplained.append(f"{path.relative_to(ROOT.parent)} ({lines} lines)")
    assert unexplained == [], "split these, or say in the docstring why each is one concept"


def test_the_cli_parses_and_dispatches_only() -> None:
    cli = (ROOT / "cli.py").read_text()
    assert cli.count("\n") <= LIMIT
    for marker in ("select ", "insert into", "update syncer", "Table(", "add_column", "rich"):
        assert marker not in cli, marker
