"""Each command requires the secrets of what it touches, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.cli import build_parser, require_secrets
from syncer.commands import secret_values
from syncer.config import Settings
from syncer.configfile import load_settings
from syncer.errors import ConfigError

CONFIG = """
[sources.moco]
type = "moco"
base_url = "https://acme.mocoapp.com/api/v1"
api_key_env = "MOCO_API_KEY"

[sources.moca]
type = "moca"
base_url = "https://api.mocaplatform.com/v2"
token_env = "MOCA_API_TOKEN"

[destinations.moengage]
type = "moengage"
base_url = "https://api-01.moengage.com/v1"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
"""

JOBS = """
[[jobs]]
id = "moco"
run = "sync moco"
every = "15m"

[[jobs]]
id = "moengage"
run = "load moengage"
every = "1h"
"""

ALL = {
    "MOCO_API_KEY": "moco-key-1",
    "MOCA_API_TOKEN": "moca-token-2",
    "MOENGAGE_WORKSPACE_ID": "ws-3",
    "MOENGAGE_API_KEY": "moe-key-4",
}


def settings(tmp_path: Path, environ: dict[str, str], jobs: str = "") -> Settings:
    path = tmp_path / "schedules.toml"
    path.write_text(CONFIG + jobs)
    return load_settings(path, environ)


def missing_for(argv: list[str], s: Settings) -> list[str]:
    """The variables the command says are missing; [] when it may run."""
    args = build_parser().parse_args(argv)
    try:
        require_secrets(args, s)
    except ConfigError as exc:
        return [p.split("environment variable ")[1].split()[0] for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (["sync", "moco"], {"MOCO_API_KEY"}),
        (["sync", "moca"], {"MOCA_API_TOKEN"}),
        (["sweep", "moco"], {"MOCO_API_KEY"}),
        (["backfill", "moco", "--stream", "projects", "--since", "2026-01-01"], {"MOCO_API_KEY"}),
        (["load", "moengage"], {"MOENGAGE_WORKSPACE_ID", "MOENGAGE_API_KEY"}),
        (["status"], set()),
        (["migrate"], set()),
        (["check"], set()),
        (["webhooks", "serve"], set()),
    ],
)
def test_a_command_runs_with_only_its_own_secrets_and_names_each_missing_one(
    tmp_path: Path, argv: list[str], needs: set[str]
) -> None:
    only_its_own = {k: v for k, v in ALL.items() if k in needs}
    assert missing_for(argv, settings(tmp_path, only_its_own)) == []
    assert set(missing_for(argv, settings(tmp_path, {}))) == needs
    for name in needs:  # each one alone is named
        without = {k: v for k, v in ALL.items() if k != name}
        assert missing_for(argv, settings(tmp_path, without)) == [name]


def test_the_daemon_needs_the_secrets_of_its_jobs_only(tmp_path: Path) -> None:
    jobs_env = {k: v for k, v in ALL.items() if k != "MOCA_API_TOKEN"}
    assert missing_for(["run"], settings(tmp_path, jobs_env, JOBS)) == []
    no_moengage = {"MOCO_API_KEY": "k", "MOCA_API_TOKEN": "t"}
    assert missing_for(["run", "--once"], settings(tmp_path, no_moengage, JOBS)) == [
        "MOENGAGE_WORKSPACE_ID",
        "MOENGAGE_API_KEY",
    ]


def test_only_present_secrets_go_to_the_log_filter(tmp_path: Path) -> None:
    values = secret_values(settings(tmp_path, {"MOCO_API_KEY": "moco-key-1"}), {})
    assert values == ["moco-key-1"]
    assert sorted(secret_values(settings(tmp_path, ALL), {})) == sorted(ALL.values())
