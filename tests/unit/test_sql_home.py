"""Every SQL statement on syncer's own tables (``syncer.*``) is in ``syncer/store/``, behind a
named function; vendor packages, runners and the CLI call those. This walks every module's
string constants (docstrings aside) and fails on one outside the store that reads or writes a
``syncer.*`` table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "syncer"
STATEMENT = re.compile(
    r"\b(select|insert\s+into|update|delete\s+from|create|alter|drop|truncate|copy)\b", re.I
)
BOOKKEEPING = re.compile(r"\bsyncer\.[a-z_]+\b")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes (module, class and function docstrings)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_on_bookkeeping(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skip:
                continue
            text = node.value
        else:
            continue
        if STATEMENT.search(text) and BOOKKEEPING.search(text):
            hit = f"{path.name}:{node.lineno}: {text[:70]!r}"
            if not any(h.startswith(f"{path.name}:{node.lineno}:") for h in hits):
                hits.append(hit)
    return hits


def test_sql_on_syncer_tables_is_only_in_the_store() -> None:
    outside = [p for p in ROOT.rglob("*.py") if ROOT / "store" not in p.parents]
    hits = [
        f"{path.parent.relative_to(ROOT.parent)}/{hit}"
        for path in sorted(outside)
        for hit in sql_on_bookkeeping(path)
    ]
    assert hits == [], "SQL on syncer.* outside syncer/store/:\n" + "\n".join(hits)


def test_the_check_finds_a_statement(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""Docstrings may say: select * from syncer.runs."""\n'
        'Q = "update syncer.streams set watermark = null"\n'
        'F = f"select id from syncer.runs where id = {run}"\n'
    )
    hits = sql_on_bookkeeping(planted)
    assert len(hits) == 2, hits
