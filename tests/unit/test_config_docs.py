"""Each key of ``schedules.toml`` is declared once, by its :class:`~syncer.tomlspec.Key`: its
default and its help are there, the reference (``docs/configuration.md``) is written from them
by ``tools/config_docs.py``, and the defaults the settings dataclasses repeat (for code that
builds settings directly) agree with them."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from syncer import configfile, registry
from syncer.config import JobSettings
from syncer.destinations.moengage import settings as moengage
from syncer.sources.moca import settings as moca
from syncer.sources.moco import settings as moco
from syncer.tomlspec import REQUIRED, Key, Nested

ROOT = Path(__file__).resolve().parents[2]


def built_in_keys() -> dict[str, Sequence[Key]]:
    found: dict[str, Sequence[Key]] = {
        "database": configfile._DATABASE_KEYS,
        "jobs": configfile._JOB_KEYS,
    }
    for module in registry.BUILT_IN:
        kind = importlib.import_module(module).TYPE
        found[kind.name] = kind.keys
    return found


def walk(keys: Sequence[Key], prefix: str = "") -> Iterator[tuple[str, Key]]:
    for key in keys:
        yield prefix + key.name, key
        if isinstance(key.convert, Nested):
            yield from walk(key.convert.keys, f"{prefix}{key.name}.")


def test_every_key_of_every_built_in_table_says_what_it_means() -> None:
    silent = [
        f"{table}.{name}"
        for table, keys in built_in_keys().items()
        for name, key in walk(keys)
        if not key.help.strip()
    ]
    assert silent == [], "give these keys a help text"


def key_calls_without_help(path: Path, root: Path = ROOT) -> list[str]:
    """``Key(...)`` calls in ``path`` without ``help=``, as ``path:line`` (from ``root``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(root).as_posix()}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Key"
        and not any(k.arg == "help" for k in node.keywords)
    ]


def test_every_key_declared_in_syncer_and_the_toy_plugin_has_a_help() -> None:
    files = [*(ROOT / "syncer").rglob("*.py"), *(ROOT / "tests" / "plugins").rglob("*.py")]
    missing = [where for path in files for where in key_calls_without_help(path)]
    assert missing == []


def test_a_key_without_help_is_found(tmp_path: Path) -> None:
    planted = tmp_path / "plugin.py"
    planted.write_text('K = (Key("a", int, help="x"),\n     Key("b", int))\n', encoding="utf-8")
    assert key_calls_without_help(planted, tmp_path) == ["plugin.py:2"]


SETTINGS = [
    (moco.KEYS, moco.MocoSourceSettings),
    (moca.KEYS, moca.MocaSourceSettings),
    (moengage.KEYS, moengage.MoengageSettings),
    (moengage.RATE_LIMIT_KEYS, moengage.MoengageRateLimit),
    (configfile._JOB_KEYS, JobSettings),
]


def field_defaults(cls: type) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize(("keys", "cls"), SETTINGS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_settings_dataclass_defaults_are_the_keys_defaults(
    keys: Sequence[Key], cls: type
) -> None:
    defaults = field_defaults(cls)
    differ = {
        key.attr or key.name: (defaults[key.attr or key.name], key.default)
        for key in keys
        if key.default is not REQUIRED
        and (key.attr or key.name) in defaults
        and defaults[key.attr or key.name] != key.default
    }
    assert differ == {}, "field default != Key default"
    # Every key fills a field (but those `build` consumes).
    names = {f.name for f in dataclasses.fields(cls)}
    unfilled = [key.name for key in keys if (key.attr or key.name) not in names]
    consumed = ["enable_streams", "disable_streams"] if cls is moco.MocoSourceSettings else []
    assert unfilled == consumed


def test_docs_configuration_md_has_the_key_tables_the_tool_writes() -> None:
    from tools import config_docs

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == config_docs.render(page), (
        "docs/configuration.md is out of date: run python -m tools.config_docs"
    )


def test_a_key_changed_without_a_rerun_is_caught() -> None:
    from tools import config_docs

    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    stale = page.replace('| `overlap` | `"5m"` |', '| `overlap` | `"10m"` |', 1)
    assert stale != page
    assert config_docs.render(stale) == page
    with pytest.raises(ValueError, match="without markers"):
        config_docs.render(page.replace("<!-- keys:jobs -->", ""))


def test_defaults_are_written_as_toml() -> None:
    from tools import config_docs

    text = config_docs.table("moco", moco.KEYS)
    assert "| `rate_limit` | `{ requests = 120, per_seconds = 120 }` |" in text
    assert "| `rate_limit.requests` | required |" in text
    assert '| `overlap` | `"5m"` |' in text
    assert "| `deletion_guard` | `0.2` |" in text
    assert "| `webhook_secret_env` | none |" in text
    assert "| `schema` | the source's name |" in text
    assert "| `flatten` | `true` |" in config_docs.table("moengage", moengage.KEYS)
