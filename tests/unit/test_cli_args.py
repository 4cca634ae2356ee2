"""Options every command takes work before the command's name and after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.cli import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.toml", "-v", "--log-format", "json", "sync", "moco"],
        ["sync", "moco", "--config", "x.toml", "-v", "--log-format", "json"],
        ["--config", "x.toml", "sync", "-v", "moco", "--log-format", "json"],
    ],
)
def test_common_options_are_kept_wherever_they_are_given(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.config, args.verbose, args.log_format) == (Path("x.toml"), True, "json")
    assert (args.command, args.source) == ("sync", "moco")


def test_defaults_apply_when_they_are_not_given() -> None:
    args = build_parser().parse_args(["status"])
    assert (args.config, args.verbose, args.log_format) == (None, False, "text")


def test_the_moca_sandbox_shape_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SYNCER_SANDBOX_MOCA_GEOLOCATIONS", raising=False)
    assert build_parser().parse_args(["sandbox"]).moca_geolocations == "buckets"
    flag = ["sandbox", "--moca-geolocations", "aggregate"]
    assert build_parser().parse_args(flag).moca_geolocations == "aggregate"
    monkeypatch.setenv("SYNCER_SANDBOX_MOCA_GEOLOCATIONS", "aggregate")
    assert build_parser().parse_args(["sandbox"]).moca_geolocations == "aggregate"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sandbox", "--moca-geolocations", "hourly"])
