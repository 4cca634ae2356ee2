"""MocoData without a server: determinism, record shapes, ids, timestamps and mutations."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from syncer.sandbox.moco_data import (
    DEFAULT_COUNTS,
    MOCO_STREAM_PATHS,
    MocoData,
    format_ts,
    parse_ts,
)

NOW_S = 1_750_000_000.0
NOW = datetime.fromtimestamp(NOW_S, UTC)
SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def small(**counts: int) -> MocoData:
    """A small data set at the fixed clock: 10 records per stream unless told otherwise."""
    return MocoData(counts={**dict.fromkeys(MOCO_STREAM_PATHS, 10), **counts}, now=lambda: NOW_S)


@pytest.fixture(scope="module")
def data() -> MocoData:
    return MocoData(seed=3, now=lambda: NOW_S)


def test_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    counts = {stream: 15 for stream in MOCO_STREAM_PATHS}
    first = MocoData(seed=5, counts=counts, now=lambda: NOW_S)
    again = MocoData(seed=5, counts=counts, now=lambda: NOW_S)
    other = MocoData(seed=6, counts=counts, now=lambda: NOW_S)
    for stream in MOCO_STREAM_PATHS:
        assert first.records(stream) == again.records(stream)
    assert first.records("projects") != other.records("projects")


def test_default_counts_give_about_five_thousand_records(data: MocoData) -> None:
    assert {s: len(data.records(s)) for s in MOCO_STREAM_PATHS} == DEFAULT_COUNTS
    assert 4_500 <= sum(DEFAULT_COUNTS.values()) <= 5_500


@pytest.mark.parametrize("stream", list(MOCO_STREAM_PATHS))
def test_ids_are_large_unique_increasing_and_not_sequential(data: MocoData, stream: str) -> None:
    ids = [r["id"] for r in data.records(stream)]
    assert all(isinstance(i, int) and i >= 100_000_000 for i in ids)
    assert ids == sorted(set(ids))
    assert any(b - a > 1 for a, b in itertools.pairwise(ids))


def test_some_ids_exceed_32_bits(data: MocoData) -> None:
    assert any(r["id"] > 2**31 for r in data.records("activities"))
    assert any(r["id"] < 2**31 for r in data.records("activities"))


@pytest.mark.parametrize("stream", list(MOCO_STREAM_PATHS))
def test_timestamps_are_in_the_past_two_years(data: MocoData, stream: str) -> None:
    pattern = MILLIS if stream == "offers" else SECONDS
    for record in data.records(stream):
        created, updated = record["created_at"], record["updated_at"]
        assert pattern.fullmatch(created)
        assert pattern.fullmatch(updated)
        assert NOW - timedelta(days=731) <= parse_ts(created) <= parse_ts(updated)
        assert parse_ts(updated) <= NOW - timedelta(hours=1)


def test_archived_and_disregarded_records_exist(data: MocoData) -> None:
    assert any(not p["active"] for p in data.records("projects"))
    assert any(not u["active"] for u in data.records("users"))
    archived = [c for c in data.records("companies") if not c["active"]]
    assert archived
    assert all(c["archived_on"] for c in archived)
    assert any(i["status"] == "disregarded" for i in data.records("invoices"))


def test_nested_summaries_point_at_existing_records(data: MocoData) -> None:
    project_ids = {p["id"] for p in data.records("projects")}
    company_ids = {c["id"] for c in data.records("companies")}
    user_ids = {u["id"] for u in data.records("users")}
    for activity in data.records("activities"):
        assert activity["project"]["id"] in project_ids
        assert activity["customer"]["id"] in company_ids
        assert activity["user"]["id"] in user_ids
    for invoice in data.records("invoices"):
        assert invoice["project_id"] in project_ids
    companies = {c["id"]: c for c in data.records("companies")}
    for project in data.records("projects"):
        listed = companies[project["customer"]["id"]]["projects"]
        assert project["id"] in {p["id"] for p in listed}


def test_values_look_like_real_moco_data(data: MocoData) -> None:
    everything = [r for s in MOCO_STREAM_PATHS for r in data.records(s)]
    text = repr(everything)
    assert all(ch in text for ch in "äöüß")
    assert any(ord(ch) > 0xFFFF for ch in text)  # emoji
    properties = [r["custom_properties"] for r in everything if "custom_properties" in r]
    assert {} in properties
    assert any(isinstance(v, list) for p in properties for v in p.values())
    money = [r["net_total"] for r in data.records("invoices")]
    assert any(isinstance(m, int) for m in money)
    assert any(isinstance(m, float) for m in money)
    deals = data.records("deals")
    assert any(d["closed_on"] == "" for d in deals)
    assert any(d["closed_on"] is None for d in deals)


def test_invoice_file_url_changes_on_every_read(data: MocoData) -> None:
    first, second = data.records("invoices")[0], data.records("invoices")[0]
    assert first["file_url"] != second["file_url"]
    assert {k: v for k, v in first.items() if k != "file_url"} == {
        k: v for k, v in second.items() if k != "file_url"
    }


def test_update_changes_a_field_and_stamps_now_with_milliseconds() -> None:
    clock = [NOW_S]
    data = MocoData(counts=dict.fromkeys(MOCO_STREAM_PATHS, 20), now=lambda: clock[0])
    before = {p["id"]: p for p in data.records("projects")}
    clock[0] = NOW_S + 0.25
    changed = data.update("projects", 3)
    after = {p["id"]: p for p in data.records("projects")}
    assert len(changed) == 3
    for rid in changed:
        assert after[rid]["info"] != before[rid]["info"]
        assert after[rid]["updated_at"] == format_ts(int((NOW_S + 0.25) * 1000), with_ms=True)
        assert after[rid]["created_at"] == before[rid]["created_at"]
    assert all(after[i] == before[i] for i in before if i not in changed)


def test_create_adds_active_records_with_larger_ids() -> None:
    data = small()
    old_max = max(c["id"] for c in data.records("companies"))
    created = data.create("companies", 4)
    records = {c["id"]: c for c in data.records("companies")}
    assert len(records) == 14
    assert min(created) > old_max
    for rid in created:
        assert records[rid]["active"] is True
        assert (
            records[rid]["created_at"]
            == records[rid]["updated_at"]
            == format_ts(int(NOW_S * 1000), with_ms=True)
        )


def test_delete_removes_records() -> None:
    data = small()
    gone = data.delete("deals", 3)
    assert len(gone) == 3
    assert not set(gone) & {d["id"] for d in data.records("deals")}
    assert len(data.records("deals")) == 7


def test_update_and_delete_can_be_told_which_records() -> None:
    data = small()
    first = [r["id"] for r in data.live("deals")[:3]]
    assert data.update("deals", 0, ids=first[:2]) == first[:2]
    assert data.delete("deals", 0, ids=[first[2], 1]) == [first[2]]
    others = [r["id"] for r in data.live("todos")[:2]]
    assert data.update("todos", 0, ids=others) == others
    assert data.delete("todos", 0, ids=others[:1]) == others[:1]
    assert others[0] not in {r["id"] for r in data.live("todos")}


def test_a_detail_read_changes_with_its_record_and_nothing_else() -> None:
    """As in MOCO: an invoice's detail (its items, its payments) is the invoice's own; records
    created or deleted elsewhere in the account leave it as it was."""
    data = small()
    invoice = data.live("invoices")[3]["id"]
    first = data.detail("invoice_details", invoice)
    for stream in ("offers", "projects", "companies", "users", "letter_papers"):
        data.delete(stream, 2)
        data.create(stream, 3)
    again = data.detail("invoice_details", invoice)
    assert first is not None
    assert again is not None
    assert {k: v for k, v in again.items() if k != "file_url"} == {
        k: v for k, v in first.items() if k != "file_url"
    }
    while invoice not in data.update("invoices", 1):
        pass
    changed = data.detail("invoice_details", invoice)
    assert changed is not None
    assert changed["updated_at"] != first["updated_at"]


def test_unknown_streams_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown MOCO streams"):
        MocoData(counts={"tasks": 3})
    with pytest.raises(KeyError):
        small().records("tasks")
