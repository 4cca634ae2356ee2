"""Commands as typed objects: one grammar for the CLI and the daemon's job lines, and the
checks every command gets before it runs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from syncer import commands
from syncer.config import JobSettings, Settings
from syncer.configfile import load_settings
from syncer.errors import ConfigError

CONFIG = """
[sources.moco]
type = "moco"
base_url = "https://acme.mocoapp.com/api/v1"
api_key_env = "MOCO_KEY"

[sources.moca]
type = "moca"
base_url = "https://api.mocaplatform.com/v2"
token_env = "MOCA_TOKEN"

[destinations.moengage]
type = "moengage"
base_url = "https://api-01.moengage.com/v1"
workspace_id_env = "MOE_WS"
api_key_env = "MOE_KEY"
"""
ENV = {"MOCO_KEY": "k", "MOCA_TOKEN": "t", "MOE_WS": "w", "MOE_KEY": "m"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "schedules.toml"
    path.write_text(CONFIG)
    return load_settings(path, ENV)


def job(run: str) -> JobSettings:
    return JobSettings(id="j", run=run, every_s=900.0, cron=None)


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ("sync moco", commands.Sync("moco")),
        (
            "sync moco --stream projects --stream users --full-refresh",
            commands.Sync("moco", ("projects", "users"), True),
        ),
        ("load moengage --only users", commands.Load("moengage", ("users",))),
        ("sweep moco --stream deals", commands.Sweep("moco", ("deals",))),
        (
            "backfill moco --stream activities --since 2024-01-01 --window 7d",
            commands.Backfill("moco", "activities", date(2024, 1, 1), None, 7 * 86400.0),
        ),
    ],
)
def test_a_job_line_is_the_command_the_cli_would_build(run: str, expected: object) -> None:
    assert commands.parse_job(job(run)) == expected


def test_a_job_line_that_is_not_a_command_names_the_job() -> None:
    with pytest.raises(ConfigError) as info:
        commands.parse_job(job("sync"))
    assert 'jobs (j).run: "sync" is not a valid syncer command' in info.value.message


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            commands.Sync("moco", ("beacons",)),
            "--stream beacons: not a stream of source 'moco'; choose from activities,",
        ),
        (
            commands.Sweep("moca"),
            "sweep: 'moca' is a moca source; MOCA syncs scan every stream in full",
        ),
        (
            commands.Backfill("moca", "apps", date(2024, 1, 1)),
            "backfill: 'moca' is a moca source; MOCA streams are scanned in full",
        ),
        (
            commands.Load("moengage", ("people",)),
            "--only people: not a model of destination 'moengage'; choose from users, devices, "
            "events",
        ),
        (commands.Load("braze"), 'destination "braze" is not configured'),
        (commands.Sync("hubspot"), 'source "hubspot" is not configured'),
    ],
)
def test_what_a_command_cannot_do_is_refused_before_it_runs(
    settings: Settings, command: commands.Command, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        commands.check(settings, command)
    assert message in info.value.message, info.value.message


def test_what_a_command_can_do_passes(settings: Settings) -> None:
    for command in (
        commands.Sync("moco", ("projects",)),
        commands.Sync("moca"),
        commands.Sweep("moco"),
        commands.Backfill("moco", "activities", date(2024, 1, 1)),
        commands.Load("moengage", ("users", "events")),
    ):
        commands.check(settings, command)
