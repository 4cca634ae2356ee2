"""How a run frame's run ends as its streams did (the database side is in the integration tests)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from syncer.results import Outcome
from syncer.runframe import UNFINISHED, Frame
from syncer.store import leases


@dataclass
class Stream:
    stream: str
    outcome: str
    error: str | None = None


def frame() -> Frame:
    return Frame(1, leases.Fence({"sync:moco.activities": 1}, "moco.activities"))


def test_a_run_the_work_did_not_end_failed() -> None:
    f = frame()
    assert (f.outcome, f.error) == (Outcome.FAILED, UNFINISHED)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["succeeded", "succeeded"], Outcome.SUCCEEDED),
        (["succeeded", "interrupted", "failed"], Outcome.INTERRUPTED),
        (["succeeded", "failed"], Outcome.FAILED),
        ([], Outcome.SUCCEEDED),
    ],
)
def test_a_run_ends_as_its_streams_did(outcomes: list[str], expected: Outcome) -> None:
    f = frame()
    f.end_as([Stream(f"s{i}", outcome) for i, outcome in enumerate(outcomes)])
    assert f.outcome == expected


def test_the_error_names_each_failed_stream_and_is_none_without_one() -> None:
    f = frame()
    f.end_as([Stream("projects", "failed", "boom"), Stream("users", "succeeded")])
    assert f.error == "projects: boom"
    f.end_as([Stream("projects", "failed", "boom"), Stream("users", "interrupted", "stopped")])
    assert f.error == "projects: boom; users: stopped"
    f.end_as([Stream("users", "succeeded")])
    assert f.error is None
