"""The README is the five-minute page and the reference is in ``docs/``: the README stays short,
links every page of ``docs/``, and keeps the set-up and test commands CI runs; every relative
link of the README and of ``docs/`` resolves; the flags the docs show exist; the environment
variables syncer reads are documented; the configuration examples load."""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.cli import build_parser
from syncer.configfile import load_settings
from tests.unit.test_deploy import variables_syncer_reads

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

DEMO = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/syncer demo"
TESTS = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest -n 2"


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links(path: Path) -> Iterator[str]:
    yield from _LINK.findall(prose(path.read_text(encoding="utf-8")))


def relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``path`` that leads nowhere (a file, or a heading of it)."""
    out = []
    for target in links(path):
        if not relative(target):
            if target.startswith("#") and target[1:] not in anchors(path):
                out.append(f"{path.relative_to(root)}: {target}")
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve()
        if not resolved.is_file():
            out.append(f"{path.relative_to(root)}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            out.append(f"{path.relative_to(root)}: {target} (no such heading)")
    return out


def test_the_readme_reads_in_five_minutes() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 300, f"README.md has {len(lines)} lines; move reference to docs/"


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README) if relative(t)}
    unlinked = [str(p.relative_to(ROOT)) for p in pages() if p.resolve() not in linked]
    assert unlinked == [], "link these pages from README.md"


def test_every_relative_link_resolves() -> None:
    broken = [b for path in (README, *pages()) for b in broken_links(path)]
    assert broken == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A page\n\n## Its part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#its-part) [no](gone.md) [no](there.md#other) "
        "[web](https://example.com/x.md) `[code](gone.md)`\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "page.md: gone.md (no such file)",
        "page.md: there.md#other (no such heading)",
    ]


def test_the_readme_keeps_the_set_up_and_test_commands_ci_runs() -> None:
    readme = README.read_text(encoding="utf-8")
    assert DEMO in readme.splitlines()
    assert TESTS in readme.splitlines()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[dev]'" in ci
    assert "pytest -n 2" in ci
    run = next(line for line in ci.splitlines() if "pytest -n 2" in line)
    assert run.replace(" -q", "") == TESTS, ".ci/run must run the README's test command"


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, set[str]]:
    """``"webhooks serve"`` -> its option strings, for every (sub)command."""
    found: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[prefix + name] = {o for a in sub._actions for o in a.option_strings}
                found.update(subcommands(sub, f"{prefix}{name} "))
    return found


def documented_commands(path: Path) -> Iterator[str]:
    """Each ``syncer ...`` in inline code or a shell block of ``path``."""
    text = path.read_text(encoding="utf-8")
    yield from re.findall(r"`(syncer [^`\n]+)`", text)
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            # The command alone: not its comment, nor what it is piped or redirected to.
            command = re.split(r"#|\||>|&&|&$", line, maxsplit=1)[0].strip()
            if command.startswith("syncer "):
                yield command


def table_rows(path: Path) -> Iterator[tuple[str, list[str]]]:
    """A commands table's rows: the row's command, and the flags its cells name in code."""
    for line in path.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\| `syncer ([a-z]+(?: serve)?)", line)
        if row:
            yield row.group(1), re.findall(r"`(--[a-z][\w-]*)", line)


def test_every_flag_a_commands_table_names_exists() -> None:
    known = subcommands(build_parser())
    unknown = [
        f"{path.relative_to(ROOT)}: syncer {name} {flag}"
        for path in (README, *pages())
        for name, flags in table_rows(path)
        for flag in flags
        if flag not in known.get(name, set())
    ]
    rows = [row for path in (README, *pages()) for row in table_rows(path)]
    assert len(rows) >= 26  # the README's table and docs/operations.md's
    assert unknown == []


def test_every_flag_the_docs_show_exists() -> None:
    known = subcommands(build_parser())
    unknown = []
    for path in (README, *pages()):
        for command in documented_commands(path):
            words = command.split()
            name = " ".join(words[1:3]) if " ".join(words[1:3]) in known else words[1]
            if name not in known:
                unknown.append(f"{path.relative_to(ROOT)}: {command} (no command {name})")
                continue
            for flag in re.findall(r"(?<![\w-])--?[a-z][\w-]*", command):
                if flag not in known[name]:
                    unknown.append(f"{path.relative_to(ROOT)}: {command} ({flag})")
    assert unknown == []


def test_every_variable_syncer_reads_is_in_the_configuration_page() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    names = {n for n in variables_syncer_reads() if n.startswith(("SYNCER_", "DATABASE_URL"))}
    assert names, "found no variables"
    assert sorted(n for n in names if f"`{n}`" not in page) == []


ENV = {
    "HOME": "/home/ada",
    "SYNCER_DATABASE_URL": "postgresql://syncer@db.example.com/syncer",
    "MOCO_API_KEY": "k",
    "MOCA_API_TOKEN": "t",
    "MOENGAGE_WORKSPACE_ID": "w",
    "MOENGAGE_API_KEY": "a",
    "ACME_MOCO_KEY": "k",
    "GLOBEX_MOCO_KEY": "k",
}


def examples() -> Iterator[tuple[str, str]]:
    for path in (README, *pages()):
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"^```toml\n(.*?)^```", text, flags=re.S | re.M):
            if re.search(r'^type = "', block, flags=re.M):
                yield str(path.relative_to(ROOT)), block


@pytest.mark.parametrize(("where", "text"), list(examples()), ids=lambda v: v[:40])
def test_the_configuration_examples_load(where: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "schedules.toml"
        path.write_text(text, encoding="utf-8")
        settings = load_settings(path, ENV)  # raises ConfigError naming every problem
    assert settings.sources
