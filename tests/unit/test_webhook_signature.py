"""MOCO webhook deliveries without I/O: the signature, the routing, the parsing, the merge rule."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncer.configfile import load_settings
from syncer.errors import ConfigError
from syncer.sources.moco.catalog import CATALOG
from syncer.sources.moco.webhook_store import Change, RowState, merge
from syncer.sources.moco.webhooks import (
    Ignored,
    Malformed,
    WebhookCounts,
    event_time,
    parse_change,
    sign,
    signature_matches,
    streams_for,
    target_label,
    webhook_config,
)
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS

# The documented test vector (docs/vendors/moco.md).
KEY = "1d608b9d72219b90ff2393a1d3ee0ac0"
PAYLOAD = b'{"id":111,"description":"a description"}'
DIGEST = "bf027a86207ef1ca1cb76f5a536b41a14287ab1a0fd5b33bfe86924bc2f48fd1"

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- the signature -----------------------------------------------------------------------------


def test_the_documented_test_vector_signs_and_verifies() -> None:
    assert sign(KEY, PAYLOAD) == DIGEST
    assert signature_matches(KEY, PAYLOAD, DIGEST)


def test_a_one_byte_change_to_the_body_fails() -> None:
    for i in range(len(PAYLOAD)):
        changed = bytearray(PAYLOAD)
        changed[i] ^= 0x01
        assert not signature_matches(KEY, bytes(changed), DIGEST), i


def test_a_one_character_change_to_the_signature_or_the_key_fails() -> None:
    flipped = DIGEST[:10] + ("0" if DIGEST[10] != "0" else "1") + DIGEST[11:]
    assert not signature_matches(KEY, PAYLOAD, flipped)
    assert not signature_matches(KEY[:-1] + "1", PAYLOAD, DIGEST)
    # The key is the ASCII string itself, not its hex-decoded bytes.
    assert sign(bytes.fromhex(KEY).decode("latin-1"), PAYLOAD) != DIGEST


@pytest.mark.parametrize("header", [None, "", "   ", "sha256=" + DIGEST, DIGEST[:-2], "ä" * 64])
def test_a_missing_or_malformed_signature_header_fails_without_raising(header: str | None) -> None:
    assert not signature_matches(KEY, PAYLOAD, header)


def test_hex_case_and_surrounding_space_do_not_matter() -> None:
    assert signature_matches(KEY, PAYLOAD, f" {DIGEST.upper()} ")


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "stream"),
    [
        ("Activity", "activities"),
        ("Project", "projects"),
        ("Company", "companies"),
        ("Customer", "companies"),
        ("Contact", "contacts"),
        ("User", "users"),
        ("Invoice", "invoices"),
        ("Offer", "offers"),
        ("Deal", "deals"),
    ],
)
def test_each_synced_target_maps_to_its_stream(target: str, stream: str) -> None:
    for event in ("create", "update", "delete"):
        assert streams_for(target, event, MOCO_STREAMS) == (stream,)


@pytest.mark.parametrize(
    ("target", "event", "reason"),
    [
        ("InvoiceDraft", "create", "target 'InvoiceDraft' is not synced"),
        ("activity", "create", "target 'activity' is not synced"),
        ("Deal", "update", "stream 'deals' (target 'Deal') is not configured"),
        ("Project", "archive", "event 'archive' is not one of create, update, delete"),
        ("Project", None, "event None"),
        (None, "create", "no X-Moco-Target header"),
    ],
)
def test_other_targets_unconfigured_streams_and_other_events_are_ignored_with_the_reason(
    target: str | None, event: str | None, reason: str
) -> None:
    with pytest.raises(Ignored) as info:
        streams_for(target, event, tuple(s for s in MOCO_STREAMS if s != "deals"))
    assert reason in str(info.value)


def test_a_target_of_several_streams_changes_each_configured_one() -> None:
    every = CATALOG.names
    assert streams_for("Expense", "update", every) == ("expenses", "project_expenses")
    assert streams_for("Expense", "delete", ("project_expenses",)) == ("project_expenses",)
    assert streams_for("Comment", "create", every) == ("comments",)


def test_count_labels_are_moco_targets_or_other() -> None:
    assert target_label("Company") == "Company"
    assert target_label("Invoice::Payment") == "Invoice::Payment"
    assert target_label("'; drop table x") == "other"
    assert target_label(None) == "other"


def test_counts_add_up_per_target_and_outcome() -> None:
    counts = WebhookCounts()
    for outcome in ("received", "applied", "received", "ignored"):
        counts.add("Project", outcome)
    counts.add("other", "received")
    counts.add("other", "rejected")
    assert counts.total("received") == 3
    assert counts.by_target["Project"]["applied"] == 1
    assert counts.summary().startswith("webhooks: 3 received, 1 applied, 1 ignored, 1 rejected")
    assert "Project: 2 received, 1 applied, 1 ignored" in counts.summary()


# --- parsing -----------------------------------------------------------------------------------


def test_the_timestamp_is_epoch_milliseconds() -> None:
    assert event_time("1527170410463") == datetime(2018, 5, 24, 14, 0, 10, 463000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "fact"),
    [
        (None, "header is missing"),
        ("", "header is missing"),
        ("2018-05-24T14:00:10Z", "epoch milliseconds"),
        ("-5", "epoch milliseconds"),
        ("9" * 30, "out of range"),
    ],
)
def test_a_bad_timestamp_is_malformed(header: str | None, fact: str) -> None:
    with pytest.raises(Malformed) as info:
        event_time(header)
    assert fact in str(info.value)


@pytest.mark.parametrize(
    ("body", "fact"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'"x"', "not a JSON object but str"),
        (b'{"name": "no id"}', "no integer 'id'"),
        (b'{"id": "12"}', "no integer 'id' (got \"12\")"),
        (b'{"id": true}', "no integer 'id' (got true)"),
        (b'{"id": 1.5}', "no integer 'id' (got 1.5)"),
        (b'{"id": 9223372036854775808}', "does not fit"),
    ],
)
def test_a_body_that_is_not_a_record_is_malformed(body: bytes, fact: str) -> None:
    with pytest.raises(Malformed) as info:
        parse_change(body, "update", T0)
    assert fact in str(info.value)


def test_a_record_is_versioned_by_its_updated_at_else_by_the_event_time() -> None:
    stamped = parse_change(b'{"id": 7, "updated_at": "2026-01-02T03:04:05.678Z"}', "update", T0)
    assert stamped.id == 7
    assert stamped.updated_at == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert not stamped.deleted
    assert parse_change(b'{"id": 7}', "create", T0).updated_at == T0
    gone = parse_change(b'{"id": 7}', "delete", T0)
    assert gone.deleted
    assert gone.updated_at is None
    assert gone.deleted_at == T0


# --- the merge rule ----------------------------------------------------------------------------

State = tuple[datetime | None, str, datetime | None] | None  # updated_at, data, deleted_at


def apply(state: State, change: Change) -> State:
    """What the store does with a change, without the store."""
    merged = merge(None if state is None else RowState(state[0], state[2]), change)
    data = change.data if merged.take_data or state is None else state[1]
    return (merged.updated_at, data, merged.deleted_at)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def update(minutes: int) -> Change:
    return Change(1, False, at(minutes), at(minutes), f"v{minutes}")


def delete(minutes: int, version: int | None) -> Change:
    """A delete at ``minutes`` whose body is version ``version`` (None: a body without one)."""
    stamp = at(version) if version is not None else None
    return Change(1, True, stamp, at(minutes), f"v{version}")


def replay(changes: list[Change]) -> State:
    state: State = None
    for change in changes:
        state = apply(state, change)
    return state


def test_an_older_update_never_overwrites_a_newer_one() -> None:
    assert replay([update(5), update(3)]) == (at(5), "v5", None)


def test_a_delete_marks_the_row_and_an_older_update_does_not_resurrect_it() -> None:
    assert replay([update(1), delete(4, 1), update(2)]) == (at(2), "v2", at(4))


def test_an_update_newer_than_the_delete_restores_the_row() -> None:
    assert replay([update(1), delete(4, 1), update(6)]) == (at(6), "v6", None)


def test_a_delete_before_the_rows_last_update_is_not_applied() -> None:
    assert replay([update(6), delete(4, 1)]) == (at(6), "v6", None)


def test_a_delete_of_an_unknown_id_inserts_it_deleted_and_a_late_create_stays_deleted() -> None:
    assert replay([delete(4, 3)]) == (at(3), "v3", at(4))
    assert replay([delete(4, 3), update(1)]) == (at(3), "v3", at(4))
    assert replay([delete(4, None), update(1)]) == (at(1), "v1", at(4))


def test_a_delete_is_never_earlier_than_its_bodys_own_update() -> None:
    # The body's updated_at a moment after the event time (two clocks): still a deletion.
    assert replay([delete(4, 5)]) == (at(5), "v5", at(5))
    assert replay([update(2), delete(4, 5)]) == (at(5), "v5", at(5))


@pytest.mark.parametrize("seed", range(150))
def test_any_order_with_duplicates_converges_to_the_same_row(seed: int) -> None:
    rng = random.Random(seed)
    versions = sorted(rng.sample(range(1, 60), rng.randint(1, 3)))
    changes = [update(v) for v in versions]
    for _ in range(rng.randint(0, 2)):
        body = rng.choice([*versions, None])
        changes.append(delete(rng.randint(body or 0, 70), body))
    newest = max(versions)
    deletions = [c.deleted_at for c in changes if c.deleted]
    deleted_at = max(deletions) if deletions and max(deletions) >= at(newest) else None
    versioned = [c for c in changes if c.updated_at is not None]
    top = max(versioned, key=lambda c: c.updated_at or T0)
    expected = (top.updated_at, top.data, deleted_at)
    for order in itertools.permutations(changes):
        assert replay(list(order)) == expected, order
        doubled = [*order, order[rng.randrange(len(order))]]
        rng.shuffle(doubled)
        assert replay(doubled) == expected, doubled


ACCOUNTS = """
[sources.acme]
type = "moco"
base_url = "https://acme.mocoapp.com/api/v1"
api_key_env = "ACME_KEY"
webhook_secret_env = "ACME_HOOKS"

[sources.globex]
type = "moco"
base_url = "https://globex.mocoapp.com/api/v1"
api_key_env = "GLOBEX_KEY"
webhook_secret_env = "GLOBEX_HOOKS"

[sources.beacons]
type = "moca"
base_url = "https://api.mocaplatform.com/v2"
token_env = "MOCA_TOKEN"
"""
ACCOUNT_ENV = {
    "ACME_KEY": "a",
    "GLOBEX_KEY": "g",
    "MOCA_TOKEN": "m",
    "ACME_HOOKS": "a" * 32,
    "GLOBEX_HOOKS": "b" * 32,
}


def test_with_several_moco_accounts_the_server_serves_the_one_chosen(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(ACCOUNTS)
    settings = load_settings(path, ACCOUNT_ENV)
    with pytest.raises(ConfigError) as info:
        webhook_config(settings, ACCOUNT_ENV)
    assert "several MOCO sources are configured (acme, globex)" in info.value.message
    assert "--source acme" in info.value.message
    chosen = webhook_config(settings, ACCOUNT_ENV, source="globex")
    assert (chosen.source, chosen.schema, chosen.secret.value) == ("globex", "globex", "b" * 32)
    with pytest.raises(ConfigError) as info:
        webhook_config(settings, ACCOUNT_ENV, source="beacons")
    assert "a moca source; MOCO webhooks are for MOCO sources (acme, globex)" in info.value.message
