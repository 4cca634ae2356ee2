"""The pure part of the MOCO deletion sweep: chunks, the query, the guard, the decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer import commands
from syncer.configfile import load_settings
from syncer.deletions import guard_warning
from syncer.errors import ConfigError
from syncer.runners.sweep import decide, ids_params
from syncer.sources.moco.api import MocoLister
from syncer.sources.moco.catalog import CATALOG as STREAMS

MOCO = """
[sources.moco]
type = "moco"
base_url = "https://acme.mocoapp.com/api/v1"
api_key_env = "MOCO_API_KEY"
"""
MOCA = """
[sources.moca]
type = "moca"
base_url = "https://api.mocaplatform.com/v2"
token_env = "MOCA_API_TOKEN"
"""
ENV = {"MOCO_API_KEY": "k", "MOCA_API_TOKEN": "t"}


def test_the_ids_query_carries_the_parameters_the_sync_sends() -> None:
    params = ids_params(MocoLister(""), STREAMS["invoices"], [4_294_000_001, 4_294_000_999])
    assert params == {
        "include_disregarded": "true",
        "ids": "4294000001,4294000999",
        "page": "1",
        "per_page": "2",
    }
    assert ids_params(MocoLister(""), STREAMS["projects"], [1])["include_archived"] == "true"


@pytest.mark.parametrize(
    ("missing", "live", "guard", "withheld"),
    [
        (0, 0, 0.2, False),
        (0, 100, 0.2, False),
        (20, 100, 0.2, False),  # exactly the guard's share still passes
        (21, 100, 0.2, True),
        (1, 1, 1.0, False),
        (1, 4, 0.2, True),  # a small stream is guarded too
    ],
)
def test_the_guard_withholds_only_more_than_its_share(
    missing: int, live: int, guard: float, withheld: bool
) -> None:
    warning = guard_warning(
        "offers", missing, live, guard, missing_from="the source", advice="Raise it."
    )
    assert (warning is not None) == withheld
    if warning:
        assert warning.startswith(f"{missing} of {live} offers (")
        assert f"deletion_guard = {guard:g}" in warning
        assert warning.endswith("none were marked deleted. Raise it.")


def test_a_decision_marks_the_missing_live_rows_and_restores_the_deleted_ones_seen() -> None:
    decision = decide(
        "deals",
        live={1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
        deleted={20, 21},
        present={1, 2, 3, 4, 5, 6, 7, 8, 21},
        guard=0.2,
    )
    assert (decision.gone, decision.back, decision.missing) == ([9, 10], [21], 2)
    assert decision.warning is None


def test_a_decision_over_the_guard_marks_nothing_but_still_restores() -> None:
    decision = decide("deals", live={1, 2, 3, 4}, deleted={9}, present={1, 9}, guard=0.2)
    assert decision.gone == []
    assert decision.back == [9]
    assert decision.missing == 3
    assert decision.warning is not None
    assert "3 of 4 deals (75%)" in decision.warning


def test_deletion_guard_is_a_moco_key_with_the_moca_default(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(MOCO)
    assert load_settings(path, ENV).source("moco").deletion_guard == 0.2
    path.write_text(MOCO + "deletion_guard = 0.05\n")
    assert load_settings(path, ENV).source("moco").deletion_guard == 0.05
    path.write_text(MOCO + "deletion_guard = 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, ENV)
    assert info.value.problems[0].startswith("sources.moco.deletion_guard:")


def test_only_moco_sources_and_their_own_streams_are_swept(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(MOCO + 'streams = ["activities"]\n' + MOCA)
    settings = load_settings(path, ENV)
    with pytest.raises(ConfigError, match="'moca' is a moca source"):
        commands.check(settings, commands.Sweep("moca"))
    with pytest.raises(ConfigError, match="--stream deals: not a stream of source 'moco'"):
        commands.check(settings, commands.Sweep("moco", ("deals",)))
    commands.check(settings, commands.Sweep("moco", ("activities",)))
