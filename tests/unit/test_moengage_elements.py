"""Model rows become MoEngage elements, or Invalid with a reason, per MoEngage's rules
(docs/vendors/moengage.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from syncer.destinations.moengage.elements import (
    FORBIDDEN_CUSTOMER_IDS,
    FUTURE_TOLERANCE,
    MAX_EVENT_ATTRIBUTES,
    MAX_USER_ATTRIBUTES,
    DeviceRow,
    EventRow,
    Invalid,
    Options,
    UserRow,
    device_element,
    event_action,
    event_element,
    payload_hash,
    user_element,
)
from syncer.destinations.moengage.values import MAX_ARRAY_ITEMS, MAX_NAME_CHARS, MAX_VALUE_CHARS

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
FLAT = Options()
NESTED = Options(flatten=False)


def user(attributes: Any = None, customer_id: Any = "c-1", platforms: Any = None) -> dict[str, Any]:
    return user_element(UserRow(customer_id, attributes, platforms), FLAT)


def user_attributes(attributes: Any, options: Options = FLAT) -> dict[str, Any]:
    attrs: dict[str, Any] = user_element(UserRow("c-1", attributes), options)["attributes"]
    return attrs


def device(attributes: Any, device_id: Any = "d-1") -> dict[str, Any]:
    return device_element(DeviceRow("c-1", device_id, attributes), FLAT)


def event(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_key": "k-1",
        "customer_id": "c-1",
        "action": "Invoice Paid",
        "occurred_at": NOW - timedelta(hours=1),
        "attributes": {},
    }
    fields.update(changes)
    return event_action(EventRow(**fields), FLAT, now=NOW)


def invalid(call: Any, *args: Any, **kwargs: Any) -> Invalid:
    with pytest.raises(Invalid) as caught:
        call(*args, **kwargs)
    return caught.value


# --- customer_id ---------------------------------------------------------------------------


def test_user_element_has_the_documented_shape() -> None:
    assert user({"name": "John", "points": 20}) == {
        "type": "customer",
        "customer_id": "c-1",
        "attributes": {"name": "John", "points": 20},
    }


@pytest.mark.parametrize("forbidden", FORBIDDEN_CUSTOMER_IDS)
def test_every_forbidden_customer_id_is_invalid(forbidden: str) -> None:
    error = invalid(user, {}, forbidden)
    assert error.rule in ("forbidden_customer_id", "missing_customer_id")
    assert "customer_id" in error.reason


@pytest.mark.parametrize("variant", ["NULL", " Guest ", "N/A", "Unknown", "TRUE", "\tnone\n"])
def test_forbidden_customer_ids_are_compared_without_case_and_spaces(variant: str) -> None:
    error = invalid(user, {}, variant)
    assert error.rule == "forbidden_customer_id"
    assert f'customer_id "{variant}" is one MoEngage silently drops' in error.reason
    assert '"user_attribute_unique_id"' in error.reason  # the reason lists the forbidden values


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_or_empty_customer_id_is_invalid(missing: Any) -> None:
    assert invalid(user, {}, missing).rule == "missing_customer_id"


def test_one_character_customer_id_is_invalid() -> None:
    assert "more than one character" in invalid(user, {}, "x").reason


@pytest.mark.parametrize("bad", [True, 1.5, {"id": 1}, ["a"], b"abc"])
def test_customer_id_that_is_not_a_string_or_whole_number_is_invalid(bad: Any) -> None:
    assert invalid(user, {}, bad).rule == "invalid_customer_id"


@pytest.mark.parametrize(
    ("number", "text"), [(1234, "1234"), (Decimal("1234"), "1234"), (42.0, "42")]
)
def test_numeric_customer_id_is_sent_as_a_string(number: Any, text: str) -> None:
    assert user({}, number)["customer_id"] == text


def test_customer_id_that_merely_contains_a_forbidden_word_is_valid() -> None:
    assert user({}, "guest-42")["customer_id"] == "guest-42"


# --- attributes ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[1, 2], 7, "not json", "[1, 2]", True])
def test_attributes_that_are_not_an_object_are_invalid(bad: Any) -> None:
    error = invalid(user, bad)
    assert error.rule in ("invalid_attributes", "invalid_json")
    assert "attributes" in error.reason


def test_attributes_as_json_text_are_parsed() -> None:
    assert user_attributes('{"plan": "pro"}') == {"plan": "pro"}
    assert user_attributes(b'{"plan": "pro"}') == {"plan": "pro"}


def test_null_attributes_are_an_empty_object() -> None:
    assert user_attributes(None) == {}


@pytest.mark.parametrize("name", ["id", "_id", "", "ID"])
def test_reserved_user_attribute_names_are_invalid(name: str) -> None:
    error = invalid(user, {name: 1})
    assert error.rule == "reserved_attribute"
    assert "reserved" in error.reason


@pytest.mark.parametrize("name", ["moe_score", "MOE_score"])
def test_moe_prefixed_attribute_is_invalid(name: str) -> None:
    error = invalid(user, {name: 1})
    assert error.rule == "system_prefix"
    assert '"moe_"' in error.reason


def test_moe_prefix_is_checked_after_flattening() -> None:
    # {"moe_x": {...}} flattens to "moe_x.y", still system-prefixed; "a.moe_x" is not.
    assert invalid(user, {"moe_x": {"y": 1}}).rule == "system_prefix"
    assert user_attributes({"a": {"moe_x": 1}}) == {"a.moe_x": 1}


def test_standard_moe_attributes_are_allowed() -> None:
    assert user_attributes({"moe_unsubscribe": True, "moe_mobile": "4917"}) == {
        "moe_unsubscribe": True,
        "moe_mobile": "4917",
    }


def test_nested_objects_flatten_to_dot_keys_and_lists_stay_lists() -> None:
    attributes = {"address": {"city": "Berlin", "geo": {"lat": 52.5}}, "tags": ["a", "b"]}
    assert user_attributes(attributes) == {
        "address.city": "Berlin",
        "address.geo.lat": 52.5,
        "tags": ["a", "b"],
    }


def test_without_flattening_nested_objects_are_kept() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert user_attributes({"address": {"city": "Berlin", "since": when}}, NESTED) == {
        "address": {"city": "Berlin", "since": "2026-01-02T03:04:05Z"}
    }


def test_lists_of_objects_need_flattening_off() -> None:
    products = [{"sku": "a", "at": date(2026, 1, 1)}]
    assert invalid(user, {"products": products}).rule == "object_value"
    assert user_attributes({"products": products}, NESTED) == {
        "products": [{"sku": "a", "at": "2026-01-01T00:00:00Z"}]
    }


def test_location_and_array_operations_are_not_flattened() -> None:
    attributes = {
        "moe_geo_location": {"lat": 12.11, "lon": 123.122},
        "addValueToArrayField": {"tags": ["x"]},
    }
    assert user_attributes(attributes) == attributes


def test_adding_and_removing_one_array_attribute_at_once_is_invalid() -> None:
    attributes = {
        "addValueToArrayField": {"tags": ["x"]},
        "removeValueFromArrayField": {"tags": []},
    }
    assert "both added to and removed from" in invalid(user, attributes).reason


def test_a_name_given_twice_after_flattening_is_invalid() -> None:
    assert invalid(user, {"a.b": 1, "a": {"b": 2}}).rule == "duplicate_attribute"


def test_datetimes_become_iso_utc_strings() -> None:
    berlin = timezone(timedelta(hours=1))
    attributes = {
        "aware": datetime(2026, 11, 23, 11, 0, 0, 123456, tzinfo=berlin),
        "naive": datetime(2026, 11, 23, 10, 0),
        "day": date(2026, 11, 23),
        "list": [datetime(2026, 1, 1, tzinfo=UTC)],
    }
    assert user_attributes(attributes) == {
        "aware": "2026-11-23T10:00:00Z",
        "naive": "2026-11-23T10:00:00Z",
        "day": "2026-11-23T00:00:00Z",
        "list": ["2026-01-01T00:00:00Z"],
    }


def test_decimals_become_numbers() -> None:
    attributes = user_attributes({"revenue": Decimal("12.50"), "count": Decimal("3")})
    assert attributes == {"revenue": 12.5, "count": 3}
    assert orjson.dumps(attributes) == b'{"revenue":12.5,"count":3}'


def test_uuids_become_strings() -> None:
    value = uuid.UUID(int=5)
    assert user_attributes({"ref": value}) == {"ref": str(value)}


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), Decimal("NaN"), Decimal("sNaN"), 2**64, object()]
)
def test_values_json_cannot_carry_are_invalid(bad: Any) -> None:
    assert invalid(user, {"x": bad}).rule == "invalid_value"


def test_text_that_is_not_valid_unicode_is_invalid() -> None:
    assert invalid(user, {"x": "\ud800"}).rule == "invalid_value"


def test_long_attribute_names_are_cut_to_200_characters_and_noted() -> None:
    assert user_attributes({"n" * MAX_NAME_CHARS: 1})
    cuts: list[str] = []
    element = user_element(UserRow("c-1", {"n" * (MAX_NAME_CHARS + 5): 1}), FLAT, cuts)
    assert element["attributes"] == {"n" * MAX_NAME_CHARS: 1}
    assert len(cuts) == 1
    assert cuts[0].endswith("(name)")


def test_names_that_become_one_when_cut_are_invalid() -> None:
    long = "n" * MAX_NAME_CHARS
    error = invalid(user, {long + "a": 1, long + "b": 2})
    assert error.rule == "name_collision"
    assert invalid(user, {long: 1, long + "b": 2}).rule == "name_collision"


def test_long_values_are_cut_to_512_characters_on_a_character_boundary() -> None:
    assert user_attributes({"bio": "é" * MAX_VALUE_CHARS}) == {"bio": "é" * MAX_VALUE_CHARS}
    cuts: list[str] = []
    text = "x" * 100 + "ü😀" * 1000  # multi-byte characters across the cut
    element = user_element(UserRow("c-1", {"bio": text, "ok": "short"}), FLAT, cuts)
    cut = element["attributes"]["bio"]
    assert cut == text[:MAX_VALUE_CHARS]
    assert len(cut) == MAX_VALUE_CHARS
    assert cut.encode("utf-8").decode("utf-8") == cut
    assert element["attributes"]["ok"] == "short"
    assert cuts == ["bio"]


def test_urls_over_512_characters_are_invalid_as_moengage_rejects_them() -> None:
    url = "https://example.com/" + "p" * MAX_VALUE_CHARS
    error = invalid(user, {"link": url})
    assert error.rule == "url_too_long"
    assert "link" in error.reason
    assert user_attributes({"link": url[:MAX_VALUE_CHARS]}) == {"link": url[:MAX_VALUE_CHARS]}


def test_arrays_over_the_limit_are_invalid_and_long_items_cut() -> None:
    assert user_attributes({"tags": ["t"] * MAX_ARRAY_ITEMS})
    assert invalid(user, {"tags": ["t"] * (MAX_ARRAY_ITEMS + 1)}).rule == "array_too_long"
    cuts: list[str] = []
    element = user_element(UserRow("c-1", {"tags": ["x" * 600, "y"]}), FLAT, cuts)
    assert element["attributes"]["tags"] == ["x" * MAX_VALUE_CHARS, "y"]
    assert cuts == ["tags"]


def test_event_names_and_attributes_are_cut_and_noted() -> None:
    cuts: list[str] = []
    fields: dict[str, Any] = {
        "event_key": "k-1",
        "customer_id": "c-1",
        "action": "a" * (MAX_NAME_CHARS + 1),
        "occurred_at": NOW - timedelta(hours=1),
        "attributes": {"description": "d" * 2000},
    }
    action = event_action(EventRow(**fields), FLAT, now=NOW, cuts=cuts)
    assert action["action"] == "a" * MAX_NAME_CHARS
    assert action["attributes"]["description"] == "d" * MAX_VALUE_CHARS
    assert sorted(cuts) == ["action (name)", "description"]


def test_arrays_mixing_element_types_are_invalid() -> None:
    assert user_attributes({"n": [1, 2.5, None]}) == {"n": [1, 2.5, None]}
    assert invalid(user, {"n": [1, "two"]}).rule == "mixed_array"
    assert invalid(user, {"n": [True, 1]}).rule == "mixed_array"


def test_too_many_user_attributes_are_invalid() -> None:
    many = {f"a{i}": i for i in range(MAX_USER_ATTRIBUTES + 1)}
    assert invalid(user, many).rule == "too_many_attributes"


# --- platforms -----------------------------------------------------------------------------


def test_platforms_column_goes_inside_attributes_with_string_flags() -> None:
    element = user({"name": "J"}, platforms=[{"platform": "android", "active": True}])
    assert element["attributes"] == {
        "name": "J",
        "platforms": [{"platform": "ANDROID", "active": "true"}],
    }


def test_platforms_inside_attributes_are_validated_too() -> None:
    attributes = user_attributes({"platforms": [{"platform": "IOS", "active": "false"}]})
    assert attributes == {"platforms": [{"platform": "iOS", "active": "false"}]}
    assert invalid(user, {"platforms": [{"platform": "TV"}]}).rule == "invalid_platform"


def test_platforms_given_twice_are_invalid() -> None:
    error = invalid(user, {"platforms": []}, "c-1", [{"platform": "web"}])
    assert error.rule == "duplicate_attribute"


@pytest.mark.parametrize(
    "bad", ["ANDROID", [{"active": "true"}], [{"platform": "web", "active": 2}]]
)
def test_malformed_platforms_are_invalid(bad: Any) -> None:
    invalid(user, {}, "c-1", bad)


# --- devices -------------------------------------------------------------------------------


def test_device_element_has_the_documented_shape() -> None:
    element = device({"platform": "iOS", "push_id": "tok", "model": "iPhone"})
    assert element == {
        "type": "device",
        "customer_id": "c-1",
        "device_id": "d-1",
        "attributes": {"platform": "iOS", "push_id": "tok", "model": "iPhone"},
    }


@pytest.mark.parametrize(
    ("given", "sent"),
    [("android", "ANDROID"), ("IOS", "iOS"), ("iPadOS", "iOS"), ("WEB", "web"), ("tv", "TV")],
)
def test_device_platform_is_spelled_canonically(given: str, sent: str) -> None:
    assert device({"platform": given, "push_id": "t"})["attributes"]["platform"] == sent


@pytest.mark.parametrize("bad", ["Windows", "unknown", "", 3])
def test_device_platform_outside_the_allowed_values_is_invalid(bad: Any) -> None:
    error = invalid(device, {"platform": bad, "push_id": "t"})
    assert error.rule == "invalid_platform"
    assert "ANDROID, iOS, web, TV" in error.reason


def test_device_without_platform_or_push_id_is_invalid() -> None:
    assert invalid(device, {"push_id": "t"}).rule == "missing_platform"
    assert invalid(device, None).rule == "missing_platform"
    assert invalid(device, {"platform": "web"}).rule == "missing_push_id"
    assert invalid(device, {"platform": "web", "push_id": " "}).rule == "missing_push_id"


def test_device_without_device_id_is_invalid() -> None:
    assert invalid(device, {"platform": "web", "push_id": "t"}, None).rule == "missing_device_id"


def test_device_flags_are_sent_as_documented_strings() -> None:
    attributes = device(
        {"platform": "web", "push_id": "t", "moe_push_opted": True, "active": False}
    )["attributes"]
    assert attributes["moe_push_opted"] == "True"
    assert attributes["active"] == "false"


def test_reserved_device_attribute_is_invalid() -> None:
    assert invalid(device, {"platform": "web", "push_id": "t", "_id": 1}).rule == (
        "reserved_attribute"
    )


# --- events --------------------------------------------------------------------------------


def test_event_action_has_the_documented_fields() -> None:
    action = event(
        attributes={"amount": Decimal("99.90"), "due": date(2026, 12, 1)},
        platform="ios",
        app_version="1.2.3",
        user_timezone_offset=19800,
        device_id="d-1",
    )
    assert action == {
        "action": "Invoice Paid",
        "attributes": {"amount": 99.9, "due": "2026-12-01T00:00:00Z"},
        "platform": "iOS",
        "app_version": "1.2.3",
        "current_time": "2026-11-23T09:00:00Z",
        "user_timezone_offset": 19800,
        "device_id": "d-1",
    }


def test_event_action_leaves_out_what_the_row_does_not_give() -> None:
    assert event() == {
        "action": "Invoice Paid",
        "attributes": {},
        "current_time": "2026-11-23T09:00:00Z",
    }


@pytest.mark.parametrize("missing", [None, ""])
def test_event_without_event_key_is_invalid(missing: Any) -> None:
    assert invalid(event, event_key=missing).rule == "missing_event_key"


@pytest.mark.parametrize("forbidden", ["null", "0"])
def test_event_for_a_forbidden_customer_id_is_invalid(forbidden: str) -> None:
    assert invalid(event, customer_id=forbidden).rule == "forbidden_customer_id"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        (None, "missing_action"),
        ("", "missing_action"),
        ("  ", "missing_action"),
        (5, "invalid_action"),
    ],
)
def test_event_without_a_proper_action_is_invalid(name: Any, rule: str) -> None:
    assert invalid(event, action=name).rule == rule


def test_event_names_moengage_would_block_or_rewrite_are_invalid() -> None:
    assert invalid(event, action="moe_opened").rule == "system_prefix"
    assert invalid(event, action="userId").rule == "reserved_event_name"
    assert invalid(event, action="invoice.paid").rule == "dot_in_event_name"


def test_event_without_occurred_at_is_invalid() -> None:
    assert invalid(event, occurred_at=None).rule == "missing_occurred_at"
    assert invalid(event, occurred_at="2026-01-01").rule == "invalid_occurred_at"


def test_future_event_beyond_the_tolerance_is_invalid() -> None:
    error = invalid(event, occurred_at=NOW + FUTURE_TOLERANCE + timedelta(seconds=1))
    assert error.rule == "future_event"
    assert "future" in error.reason


def test_future_event_within_the_tolerance_is_sent_at_now() -> None:
    assert event(occurred_at=NOW + FUTURE_TOLERANCE)["current_time"] == "2026-11-23T10:00:00Z"


def test_current_time_is_utc_to_the_second() -> None:
    tokyo = timezone(timedelta(hours=9))
    occurred = datetime(2026, 11, 23, 18, 30, 15, 999_999, tzinfo=tokyo)
    assert event(occurred_at=occurred)["current_time"] == "2026-11-23T09:30:15Z"


@pytest.mark.parametrize("bad", [54001, -54001, True, 1.5, "19800"])
def test_timezone_offset_outside_the_range_or_not_whole_seconds_is_invalid(bad: Any) -> None:
    assert invalid(event, user_timezone_offset=bad).rule == "invalid_user_timezone_offset"


@pytest.mark.parametrize("edge", [54000, -54000, 0])
def test_timezone_offset_at_the_edges_is_valid(edge: int) -> None:
    assert event(user_timezone_offset=edge)["user_timezone_offset"] == edge


def test_event_platform_outside_the_enum_is_invalid() -> None:
    assert event(platform="Unknown")["platform"] == "unknown"
    assert invalid(event, platform="Windows").rule == "invalid_platform"


def test_event_attributes_are_validated() -> None:
    assert invalid(event, attributes=[1]).rule == "invalid_attributes"
    assert invalid(event, attributes={"userId": 1}).rule == "reserved_attribute"
    assert invalid(event, attributes={"moe_x": 1}).rule == "system_prefix"
    too_many = {f"a{i}": i for i in range(MAX_EVENT_ATTRIBUTES + 1)}
    assert invalid(event, attributes=too_many).rule == "too_many_attributes"


def test_event_element_lifts_the_device_id_to_the_element() -> None:
    actions = [event(device_id="d-1"), event(action="Deal Won", device_id="d-1")]
    element = event_element("c-1", actions)
    assert list(element) == ["type", "customer_id", "device_id", "actions"]
    assert element["device_id"] == "d-1"
    assert [a["action"] for a in element["actions"]] == ["Invoice Paid", "Deal Won"]
    assert all("device_id" not in a for a in element["actions"])
    assert "device_id" in actions[0]  # the caller's actions are not changed


def test_event_element_without_device_ids_has_none() -> None:
    assert event_element("c-1", [event()]) == {
        "type": "event",
        "customer_id": "c-1",
        "actions": [event()],
    }


def test_event_element_refuses_no_actions_or_mixed_devices() -> None:
    with pytest.raises(ValueError, match="at least one"):
        event_element("c-1", [])
    with pytest.raises(ValueError, match="different device ids"):
        event_element("c-1", [event(device_id="a"), event(device_id="b")])


# --- payload_hash --------------------------------------------------------------------------


def test_payload_hash_ignores_key_order_and_sees_changes() -> None:
    first = user({"a": 1, "b": {"c": 2}})
    reordered = user({"b": {"c": 2}, "a": 1})
    assert list(first["attributes"]) != list(reordered["attributes"])
    assert payload_hash(first) == payload_hash(reordered)
    assert payload_hash(first) != payload_hash(user({"a": 1, "b": {"c": 3}}))
    assert len(payload_hash(first)) == 64
    assert payload_hash(first) == payload_hash(orjson.loads(orjson.dumps(first)))
