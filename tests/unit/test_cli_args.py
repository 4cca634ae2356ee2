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


def test_a_load_summary_speaks_of_the_destinations_vendor_and_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from syncer.results import LoadResult
    from syncer.show.load import print_load_result

    result = LoadResult(
        "sink",
        dry_run=False,
        models=("gadgets", "widgets"),
        vendor="Toy sink",
        once=("widgets",),
        possibly_duplicated=2,
        held=3,
        lowered_limits={"widgets": 5},
    )
    print_load_result(result, None)
    out = capsys.readouterr().out
    assert "possible duplicates: 2 widgets sent again" in out
    assert "(Toy sink does not deduplicate widgets)" in out
    assert "3 widgets held" in out
    assert "Toy sink throttled bodies within rate_limit: sent at most widgets 5 per window" in out
    assert "MoEngage" not in out
    assert "events" not in out
