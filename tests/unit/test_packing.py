"""Greedy packing into bulk bodies: exact bytes, unit limits, order, grouping, fill, speed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from syncer.destinations.moengage.elements import (
    DeviceRow,
    EventRow,
    Options,
    UserRow,
    device_element,
    event_action,
    event_element,
    user_element,
)
from syncer.destinations.moengage.packing import (
    EMPTY_BODY_BYTES,
    Batch,
    Item,
    Oversized,
    encode,
    pack,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
OPTIONS = Options()
UNLIMITED = 10**9


# --- building items ------------------------------------------------------------------------


def user_item(customer_id: str, **attributes: Any) -> Item:
    payload = user_element(UserRow(customer_id, attributes), OPTIONS)
    return Item("user", customer_id, customer_id, payload)


def device_item(customer_id: str, device_id: str, **attributes: Any) -> Item:
    row = DeviceRow(customer_id, device_id, {"platform": "ANDROID", "push_id": "tok", **attributes})
    payload = device_element(row, OPTIONS)
    return Item("device", f"{customer_id}\x1f{device_id}", customer_id, payload)


def event_item(
    customer_id: str, key: str, action: str = "Deal Won", device_id: str | None = None, **attrs: Any
) -> Item:
    row = EventRow(key, customer_id, action, NOW - timedelta(days=1), attrs, device_id=device_id)
    return Item("event", key, customer_id, event_action(row, OPTIONS, now=NOW))


def random_items(rng: random.Random, customers: int, text: int = 60) -> list[Item]:
    """Items grouped by customer, with ids and values that exercise JSON escaping and UTF-8."""
    alphabet = 'abcXYZ019 "\\/\n\té€😀'
    items: list[Item] = []

    def word(size: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, size)))

    for n in range(customers):
        customer_id = f"cust-{n}-{word(6)}"
        if rng.random() < 0.8:
            items.append(user_item(customer_id, name=word(text), score=rng.randint(-9, 10**6)))
        devices = [f"dev-{word(5)}-{i}" for i in range(rng.randint(0, 2))]
        for device_id in devices:
            items.append(device_item(customer_id, device_id, model=word(text)))
        for e in range(rng.choice([0, 0, 1, 2, 3, 8])):
            on = rng.choice([None, *devices])
            items.append(
                event_item(customer_id, f"{customer_id}:{e}", device_id=on, note=word(text))
            )
    return items


# --- a slow, obviously right reference -----------------------------------------------------


def elements_of(items: list[Item]) -> list[dict[str, Any]]:
    """The elements a body carrying ``items`` holds: actions grouped per customer and device."""
    elements: list[dict[str, Any]] = []
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    slots: dict[tuple[str, Any], int] = {}
    for item in items:
        if item.kind != "event":
            elements.append(item.payload)
            continue
        group = (item.customer_id, item.payload.get("device_id"))
        if group not in groups:
            groups[group] = []
            slots[group] = len(elements)
            elements.append({})
        groups[group].append(item.payload)
    for group, actions in groups.items():
        elements[slots[group]] = event_element(group[0], actions)
    return elements


def body_of(items: list[Item]) -> bytes:
    return encode({"type": "transition", "elements": elements_of(items)})


def reference_pack(
    items: list[Item], max_request_bytes: int, max_users: int, max_events: int
) -> Iterator[tuple[Any, ...]]:
    """Re-encodes the whole body for every item: quadratic, but plainly what the rules say."""
    current: list[Item] = []

    def users(chosen: list[Item]) -> int:
        return sum(item.kind != "event" for item in chosen)

    for item in items:
        alone = len(body_of([item]))
        if alone > max_request_bytes:
            yield ("oversized", item, alone)
            continue
        trial = [*current, item]
        if (
            len(body_of(trial)) <= max_request_bytes
            and users(trial) <= max_users
            and len(trial) - users(trial) <= max_events
        ):
            current = trial
        else:
            yield ("batch", body_of(current), tuple(current))
            current = [item]
    if current:
        yield ("batch", body_of(current), tuple(current))


def as_tuples(results: Iterator[Batch | Oversized]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for result in results:
        if isinstance(result, Oversized):
            out.append(("oversized", result.item, result.size))
        else:
            out.append(("batch", result.body, result.items))
    return out


# --- exact bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_packing_matches_the_reference_byte_for_byte(seed: int) -> None:
    rng = random.Random(seed)
    items = random_items(rng, customers=rng.randint(1, 40), text=rng.choice([10, 60, 300]))
    limits = {
        "max_request_bytes": rng.choice([EMPTY_BODY_BYTES + 1, 300, 700, 1500, 5000, 100_000]),
        "max_users": rng.choice([1, 2, 5, UNLIMITED]),
        "max_events": rng.choice([1, 3, 10, UNLIMITED]),
    }
    got = as_tuples(pack(items, **limits))
    assert got == list(reference_pack(items, **limits))


@pytest.mark.parametrize("seed", range(40))
def test_every_body_is_exactly_the_json_of_its_items(seed: int) -> None:
    rng = random.Random(1000 + seed)
    items = random_items(rng, customers=60)
    max_bytes = rng.randint(400, 20_000)
    sent: list[Item] = []
    for result in pack(items, max_request_bytes=max_bytes, max_users=50, max_events=70):
        if isinstance(result, Oversized):
            assert result.size == len(body_of([result.item])) > max_bytes
            continue
        assert len(result.body) <= max_bytes
        assert result.body == body_of(list(result.items))
        decoded = orjson.loads(result.body)
        assert decoded["type"] == "transition"
        kinds = [element["type"] for element in decoded["elements"]]
        assert result.users == sum(kind != "event" for kind in kinds) <= 50
        actions = sum(len(e["actions"]) for e in decoded["elements"] if e["type"] == "event")
        assert result.events == actions <= 70
        sent.extend(result.items)
    oversized = [
        r.item
        for r in pack(items, max_request_bytes=max_bytes, max_users=50, max_events=70)
        if isinstance(r, Oversized)
    ]
    assert sent == [item for item in items if item not in oversized]


def test_bodies_are_compact_utf8() -> None:
    (batch,) = pack(
        [user_item("ü-1", city="Köln")], max_request_bytes=1000, max_users=9, max_events=9
    )
    assert isinstance(batch, Batch)
    assert (
        batch.body
        == (
            '{"type":"transition","elements":[{"type":"customer","customer_id":"ü-1",'
            '"attributes":{"city":"Köln"}}]}'
        ).encode()
    )


# --- limits --------------------------------------------------------------------------------


def test_a_body_is_emitted_when_the_next_item_would_not_fit() -> None:
    items = [user_item(f"c-{n}", pad="x" * 50) for n in range(10)]
    one = len(body_of(items[:1]))
    three = len(body_of(items[:3]))
    batches = list(pack(items, max_request_bytes=three, max_users=99, max_events=99))
    assert [len(b.items) for b in batches if isinstance(b, Batch)] == [3, 3, 3, 1]
    assert one < three
    (single,) = pack(items[:1], max_request_bytes=one, max_users=99, max_events=99)
    assert isinstance(single, Batch)
    assert len(single.body) == one


def test_users_limit_counts_customer_and_device_elements() -> None:
    items = [
        user_item("c-1"),
        device_item("c-1", "d-1"),
        device_item("c-1", "d-2"),
        user_item("c-2"),
        event_item("c-2", "k-1"),
        user_item("c-3"),
    ]
    batches = [b for b in pack(items, max_request_bytes=UNLIMITED, max_users=2, max_events=99)]
    assert [(b.users, b.events) for b in batches if isinstance(b, Batch)] == [
        (2, 0),
        (2, 1),
        (1, 0),
    ]


def test_events_limit_counts_actions_and_continues_a_customer_in_the_next_body() -> None:
    items = [user_item("c-1"), *(event_item("c-1", f"k-{n}") for n in range(5))]
    batches = [b for b in pack(items, max_request_bytes=UNLIMITED, max_users=9, max_events=2)]
    assert [(b.users, b.events) for b in batches if isinstance(b, Batch)] == [
        (1, 2),
        (0, 2),
        (0, 1),
    ]
    for batch in batches:
        assert isinstance(batch, Batch)
        (event,) = [e for e in orjson.loads(batch.body)["elements"] if e["type"] == "event"]
        assert event["customer_id"] == "c-1"


def test_an_item_too_large_for_any_body_is_reported_and_skipped() -> None:
    small = user_item("c-1")
    big = user_item("c-2", **{f"a{n}": "x" * 500 for n in range(10)})
    later = event_item("c-3", "k-1")
    results = list(pack([small, big, later], max_request_bytes=1000, max_users=9, max_events=9))
    assert len(results) == 2
    oversized, batch = results
    assert isinstance(oversized, Oversized)
    assert oversized.item is big
    assert oversized.size == len(body_of([big])) > 1000
    assert isinstance(batch, Batch)
    assert batch.items == (small, later)


def test_an_oversized_action_counts_its_event_element() -> None:
    action = event_item("c-1", "k-1", pad="x" * 400)
    alone = len(body_of([action]))
    assert len(encode(action.payload)) + EMPTY_BODY_BYTES < alone
    (result,) = pack([action], max_request_bytes=alone - 1, max_users=9, max_events=9)
    assert isinstance(result, Oversized)
    assert result.size == alone
    (fits,) = pack([action], max_request_bytes=alone, max_users=9, max_events=9)
    assert isinstance(fits, Batch)


def test_limits_that_admit_nothing_are_refused() -> None:
    with pytest.raises(ValueError, match="empty body"):
        list(pack([], max_request_bytes=EMPTY_BODY_BYTES, max_users=1, max_events=1))
    with pytest.raises(ValueError, match="at least 1"):
        list(pack([], max_request_bytes=1000, max_users=0, max_events=1))


def test_no_items_make_no_bodies() -> None:
    assert list(pack([], max_request_bytes=1000, max_users=1, max_events=1)) == []


# --- order and grouping --------------------------------------------------------------------


def test_a_customers_elements_keep_their_order_and_actions_share_one_event_element() -> None:
    items = [
        user_item("c-1", name="A"),
        device_item("c-1", "d-1"),
        event_item("c-1", "k-1", "Deal Won"),
        event_item("c-1", "k-2", "Invoice Paid"),
        user_item("c-2", name="B"),
        event_item("c-2", "k-3"),
    ]
    (batch,) = pack(items, max_request_bytes=UNLIMITED, max_users=9, max_events=9)
    assert isinstance(batch, Batch)
    elements = orjson.loads(batch.body)["elements"]
    assert [(e["type"], e["customer_id"]) for e in elements] == [
        ("customer", "c-1"),
        ("device", "c-1"),
        ("event", "c-1"),
        ("customer", "c-2"),
        ("event", "c-2"),
    ]
    assert [a["action"] for a in elements[2]["actions"]] == ["Deal Won", "Invoice Paid"]
    assert batch.items == tuple(items)
    assert (batch.users, batch.events) == (3, 3)


def test_actions_for_different_devices_get_their_own_event_elements() -> None:
    items = [
        event_item("c-1", "k-1", device_id="d-1"),
        event_item("c-1", "k-2"),
        event_item("c-1", "k-3", device_id="d-1"),
    ]
    (batch,) = pack(items, max_request_bytes=UNLIMITED, max_users=9, max_events=9)
    assert isinstance(batch, Batch)
    elements = orjson.loads(batch.body)["elements"]
    assert [(e.get("device_id"), len(e["actions"])) for e in elements] == [("d-1", 2), (None, 1)]
    assert all("device_id" not in a for e in elements for a in e["actions"])


def test_a_split_customer_opens_a_new_event_element_in_the_next_body() -> None:
    items = [event_item("c-1", f"k-{n}", pad="x" * 100) for n in range(6)]
    three = len(body_of(items[:3]))
    batches = list(pack(items, max_request_bytes=three, max_users=9, max_events=99))
    assert len(batches) == 2
    for batch in batches:
        assert isinstance(batch, Batch)
        (element,) = orjson.loads(batch.body)["elements"]
        assert [a["attributes"]["pad"] for a in element["actions"]] == ["x" * 100] * 3


# --- fill and speed ------------------------------------------------------------------------


def realistic_items(total_bytes: int) -> list[Item]:
    """Customers with a profile, sometimes a device, and a handful of business events."""
    rng = random.Random(7)
    items: list[Item] = []
    size = 0
    n = 0
    while size < total_bytes:
        n += 1
        customer_id = f"contact-{n:07d}@example.com"
        group = [
            user_item(
                customer_id,
                first_name=rng.choice(["Anna", "Jürgen", "Zoë", "Li"]),
                company={"name": f"Company {rng.randint(1, 9999)}", "city": "Zürich"},
                tags=rng.sample(["vip", "b2b", "lead", "churn-risk", "newsletter"], 2),
                revenue=rng.randint(0, 10**6) / 100,
                bio="lorem ipsum " * rng.randint(0, 40),
            )
        ]
        if rng.random() < 0.3:
            group.append(device_item(customer_id, f"device-{n}", model="Pixel 9"))
        for e in range(rng.randint(0, 8)):
            group.append(
                event_item(
                    customer_id,
                    f"invoice-{n}-{e}",
                    rng.choice(["Invoice Paid", "Deal Won", "Offer Sent"]),
                    amount=rng.randint(100, 10**7) / 100,
                    currency="EUR",
                    title="Project work " * rng.randint(1, 10),
                )
            )
        items.extend(group)
        size += sum(len(encode(item.payload)) for item in group)
    return items


def test_bodies_are_nearly_full() -> None:
    items = realistic_items(5_000_000)
    results = list(pack(items, max_request_bytes=100_000, max_users=10_000, max_events=10_000))

    batches = [r for r in results if isinstance(r, Batch)]
    assert len(batches) == len(results)  # nothing oversized
    assert all(len(b.body) <= 100_000 for b in batches)
    full = [len(b.body) for b in batches[:-1]]
    assert sum(full) / len(full) >= 0.9 * 100_000
    assert sum(len(b.items) for b in batches) == len(items)
