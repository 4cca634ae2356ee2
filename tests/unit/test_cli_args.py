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
