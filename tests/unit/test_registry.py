"""Plugins are found three ways: built in, installed with an entry point, named in
``$SYNCER_PLUGINS``; each registers its types when imported."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer import registry
from syncer.errors import ConfigError

PLUGIN = """
from syncer import registry

registry.register_destination(
    registry.DestinationType(
        name="{name}",
        vendor="Test",
        keys=(),
        build=lambda **fields: None,
        models=("things",),
        load=None,
        status=None,
        check_detail=lambda settings: "",
    )
)
"""


@pytest.fixture(autouse=True)
def restored_registry() -> Iterator[None]:
    """These tests register types of their own: the process's registry is put back after."""
    registry.load_plugins({})
    saved = (dict(registry._SOURCES), dict(registry._DESTINATIONS), set(registry._LOADED))
    yield
    registry._SOURCES.clear()
    registry._SOURCES.update(saved[0])
    registry._DESTINATIONS.clear()
    registry._DESTINATIONS.update(saved[1])
    registry._LOADED.clear()
    registry._LOADED.update(saved[2])


def test_the_built_in_types_are_registered() -> None:
    assert {"moco", "moca"} <= set(registry.source_types())
    assert "moengage" in registry.destination_types()


def test_an_installed_package_registers_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A distribution as pip installs one: its metadata and entry points beside its module.
    assert "by_entry_point" not in registry.destination_types()
    (tmp_path / "entry_plugin_mod.py").write_text(PLUGIN.format(name="by_entry_point"))
    info = tmp_path / "entry_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[syncer.plugins]\nthings = entry_plugin_mod:ignored\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugins({})
    assert registry.destination_type("by_entry_point").models == ("things",)


def test_a_module_named_in_the_environment_registers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env_plugin_mod.py").write_text(PLUGIN.format(name="by_environment"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugins({registry.PLUGINS_ENV: " env_plugin_mod , "})
    assert registry.destination_type("by_environment").models == ("things",)


def test_a_plugin_that_cannot_load_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin_mod.py").write_text("raise RuntimeError('half written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        registry.load_plugins({registry.PLUGINS_ENV: "broken_plugin_mod"})
    assert "plugin module 'broken_plugin_mod' failed while loading" in info.value.message
    assert "RuntimeError: half written" in info.value.message
    with pytest.raises(ConfigError) as info:
        registry.load_plugins({registry.PLUGINS_ENV: "no_such_plugin_mod"})
    assert "cannot import plugin module 'no_such_plugin_mod'" in info.value.message
    sys.modules.pop("broken_plugin_mod", None)


def test_an_unknown_type_names_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as info:
        registry.source_type("hubspot")
    assert 'unknown source type "hubspot"; registered: ' in info.value.message
    assert "moca, moco" in info.value.message
