"""Write the key tables of ``docs/configuration.md`` from the keys syncer reads.

    python -m tools.config_docs            # rewrites the tables in docs/configuration.md
    python -m tools.config_docs --check    # exit 1 if the page is out of date

Each key of ``schedules.toml`` is declared once, as a :class:`syncer.tomlspec.Key` with its
default and its ``help``: ``[database]`` and ``[[jobs]]`` in ``syncer/configfile.py``, each
table of a source or destination type in its package (``KEYS`` of its ``settings.py``, the keys
every type takes alike from ``syncer/config.py``). This tool turns them into one Markdown table
per section (key, default, meaning) and puts each between the page's markers
``<!-- keys:SECTION -->`` and ``<!-- /keys:SECTION -->``; the prose around them is written by
hand. ``tests/unit/test_config_docs.py`` fails while the page differs from what this writes, so
a key added or changed without a rerun fails CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from syncer import configfile, registry
from syncer.durations import format_duration
from syncer.tomlspec import REQUIRED, Duration, Key, Nested

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"
COMMAND = "python -m tools.config_docs"


def sections() -> dict[str, tuple[str | None, Sequence[Key]]]:
    """Each section of the page: its name -> (the table's ``type``, if any; its keys). The
    built-in types only (a plugin's types document themselves)."""
    found: dict[str, tuple[str | None, Sequence[Key]]] = {
        "database": (None, configfile._DATABASE_KEYS),
    }
    for module in registry.BUILT_IN:
        kind = importlib.import_module(module).TYPE
        role = "source" if isinstance(kind, registry.SourceType) else "destination"
        found[f"{role}:{kind.name}"] = (kind.name, kind.keys)
    found["jobs"] = (None, configfile._JOB_KEYS)
    return found


def toml(value: object, convert: object = None) -> str:
    """``value`` written as TOML (a duration as a duration string)."""
    if isinstance(convert, Duration) and isinstance(value, int | float):
        return f'"{format_duration(float(value))}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {toml(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(convert, Nested) and dataclasses.is_dataclass(value):
        parts = [
            f"{k.name} = {toml(getattr(value, k.attr or k.name), k.convert)}" for k in convert.keys
        ]
        return "{ " + ", ".join(parts) + " }"
    raise TypeError(f"no TOML for {value!r}")


def default_of(key: Key) -> str:
    """The default as the reference shows it (Markdown)."""
    if key.default_text is not None:
        return key.default_text
    if key.default is REQUIRED:
        return "required"
    if key.default is None:
        return "none"
    return f"`{toml(key.default, key.convert)}`"


def rows(keys: Sequence[Key], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    for key in keys:
        name = prefix + key.name
        yield name, default_of(key), key.help
        if isinstance(key.convert, Nested):
            yield from rows(key.convert.keys, f"{name}.")


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(type_name: str | None, keys: Sequence[Key]) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    if type_name is not None:
        lines.append(f'| `type` | required | `"{type_name}"` |')
    lines += [f"| `{k}` | {cell(d)} | {cell(h)} |" for k, d, h in rows(keys)]
    return "\n".join(lines)


_SECTION = re.compile(r"(<!-- keys:(?P<name>[\w:]+) -->\n)(.*?)(<!-- /keys:(?P=name) -->)", re.S)


def render(page: str) -> str:
    """``page`` with every marked section's table written anew. ValueError when a section has
    no markers in the page, or the page marks one that does not exist."""
    wanted = sections()
    marked = {m.group("name") for m in _SECTION.finditer(page)}
    if marked != set(wanted):
        missing = sorted(set(wanted) - marked)
        unknown = sorted(marked - set(wanted))
        raise ValueError(f"{PAGE.name}: sections without markers {missing}, unknown {unknown}")

    def write(match: re.Match[str]) -> str:
        type_name, keys = wanted[match.group("name")]
        return f"{match.group(1)}{table(type_name, keys)}\n{match.group(4)}"

    return _SECTION.sub(write, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    current = PAGE.read_text(encoding="utf-8")
    text = render(current)
    if args.check:
        if text != current:
            print(f"{PAGE} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        print(f"{PAGE} matches the keys")
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}: {len(sections())} key tables")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
