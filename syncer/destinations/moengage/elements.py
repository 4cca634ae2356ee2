"""MoEngage bulk-import elements from model rows: validated, normalised, ready to pack.

Bulk import answers 200 even for elements MoEngage then drops, truncates or rewrites
(docs/vendors/moengage.md), so every rule it applies is applied here, before anything is sent.
What it truncates is truncated the same way and noted in the caller's ``cuts``; a row it would drop
raises :class:`Invalid`, whose ``reason`` names the field and the rule; the caller keeps the row
as a dead letter. This module holds the row shapes and the per-element rules
(customer ids, event names and times, platforms, flags); attribute names and values are checked
and normalised by `moengage_values`, which also defines `Invalid`.

Pure: no I/O, and the only clock is the ``now`` argument of :func:`event_action`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from syncer.destinations.moengage.values import (
    MAX_NAME_CHARS,
    SYSTEM_PREFIX,
    as_utc,
    check_array_operations,
    clip,
    is_finite,
    iso_utc,
    json_object,
    normalise_attributes,
    normalise_value,
    parse_json,
    show,
)

# Rows that break a rule raise Invalid; it is part of this module's API, so it is re-exported.
from syncer.destinations.moengage.values import Invalid as Invalid

# The full list from MoEngage's SDK docs (docs/vendors/moengage.md). Case rules are undocumented:
# compared lowercased and trimmed.
FORBIDDEN_CUSTOMER_IDS: tuple[str, ...] = (
    "unknown",
    "guest",
    "null",
    "0",
    "1",
    "true",
    "false",
    "user_attribute_unique_id",
    "(empty)",
    "na",
    "n/a",
    "",
    "dummy_seller_code",
    "user_id",
    "id",
    "customer_id",
    "uid",
    "userid",
    "none",
    "-2",
    "-1",
    "2",
)
_FORBIDDEN_IDS = frozenset(FORBIDDEN_CUSTOMER_IDS)
MIN_CUSTOMER_ID_CHARS = 2  # "any string of more than one characters is allowed" (Data API overview)

# Reserved names, compared lowercased: the docs do not say whether "ID" is blocked like "id".
RESERVED_USER_ATTRIBUTES = frozenset({"id", "_id", ""})
RESERVED_DEVICE_ATTRIBUTES = frozenset({"id", "_id", ""})
RESERVED_EVENT_NAMES = frozenset({"id", "_id", "userid", ""})  # events and event attributes

MAX_USER_ATTRIBUTES = 256  # unique user attributes per workspace: one row cannot exceed it
MAX_EVENT_ATTRIBUTES = 100  # per event; MoEngage keeps only the first 100
MAX_TIMEZONE_OFFSET_S = 54_000
# Future-dated events are dropped ("not accepted", docs/vendors/moengage.md). The warehouse's clock
# and ours may disagree a little; within this tolerance the event is sent with current_time clamped
# to now.
FUTURE_TOLERANCE = timedelta(minutes=5)

DEVICE_PLATFORMS = ("ANDROID", "iOS", "web", "TV")
USER_PLATFORMS = ("ANDROID", "iOS", "web")
EVENT_PLATFORMS = ("ANDROID", "iOS", "web", "TV", "unknown")
# RudderStack's normalisation (docs/vendors/moengage.md).
_APPLE_PLATFORMS = frozenset({"ipados", "tvos", "watchos"})

# The key under which an action carries its device_id until it is lifted to the event element.
ACTION_DEVICE_KEY = "device_id"


@dataclass(frozen=True)
class UserRow:
    """One row of the users model."""

    customer_id: str | None
    attributes: Any
    platforms: Any = None


@dataclass(frozen=True)
class DeviceRow:
    """One row of the devices model."""

    customer_id: str | None
    device_id: str | None
    attributes: Any


@dataclass(frozen=True)
class EventRow:
    """One row of the events model."""

    event_key: str | None
    customer_id: str | None
    action: str | None
    occurred_at: datetime | None
    attributes: Any
    platform: str | None = None
    app_version: str | None = None
    user_timezone_offset: int | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class Options:
    """How rows become elements."""

    flatten: bool = True  # nested objects -> dot keys ("address.city"); lists stay lists


def user_element(row: UserRow, options: Options, cuts: list[str] | None = None) -> dict[str, Any]:
    """The ``customer`` element for ``row``; raises :class:`Invalid`.

    ``platforms`` (from the row or from its attributes) goes inside ``attributes``, where every
    MoEngage example puts it, with ``active`` as the string ``"true"``/``"false"``.
    """
    customer_id = _customer_id(row.customer_id)
    source = dict(json_object(row.attributes, "attributes"))
    if row.platforms is not None:
        if "platforms" in source:
            raise Invalid(
                "platforms is given both as a column and inside attributes; keep one",
                rule="duplicate_attribute",
            )
        source["platforms"] = row.platforms
    platforms = source.pop("platforms", None)
    attributes = normalise_attributes(
        source,
        flatten=options.flatten,
        where="attribute",
        reserved=RESERVED_USER_ATTRIBUTES,
        max_count=MAX_USER_ATTRIBUTES,
        cuts=cuts,
    )
    check_array_operations(attributes)
    if platforms is not None:
        attributes["platforms"] = _user_platforms(platforms)
    return _encodable({"type": "customer", "customer_id": customer_id, "attributes": attributes})


def device_element(
    row: DeviceRow, options: Options, cuts: list[str] | None = None
) -> dict[str, Any]:
    """The ``device`` element for ``row``, ``platform`` spelled canonically; raises ``Invalid``."""
    customer_id = _customer_id(row.customer_id)
    device_id = _identifier(row.device_id, "device_id")
    attributes = normalise_attributes(
        json_object(row.attributes, "device attributes"),
        flatten=options.flatten,
        where="device attribute",
        reserved=RESERVED_DEVICE_ATTRIBUTES,
        max_count=None,
        cuts=cuts,
    )
    if attributes.get("platform") is None:
        raise Invalid(
            f"device attributes have no platform (one of {', '.join(DEVICE_PLATFORMS)}); "
            "MoEngage rejects the device",
            rule="missing_platform",
        )
    attributes["platform"] = _platform(
        attributes["platform"], DEVICE_PLATFORMS, "device attribute platform"
    )
    push_id = attributes.get("push_id")
    if not isinstance(push_id, str) or not push_id.strip():
        raise Invalid(
            "device attributes have no push_id (a non-empty string); MoEngage rejects the device",
            rule="missing_push_id",
        )
    # Documented as strings: 'True'/'False' for moe_push_opted, "true"/"false" for active.
    if "moe_push_opted" in attributes:
        opted = _flag(attributes["moe_push_opted"], "device attribute moe_push_opted")
        attributes["moe_push_opted"] = "True" if opted else "False"
    if "active" in attributes:
        active = _flag(attributes["active"], "device attribute active")
        attributes["active"] = "true" if active else "false"
    return _encodable(
        {
            "type": "device",
            "customer_id": customer_id,
            "device_id": device_id,
            "attributes": attributes,
        }
    )


def event_action(
    row: EventRow, options: Options, *, now: datetime, cuts: list[str] | None = None
) -> dict[str, Any]:
    """One entry of an event element's ``actions`` list for ``row``; raises :class:`Invalid`.

    ``current_time`` is ``occurred_at`` as ISO 8601 UTC to the second (clamped to ``now`` when
    it is ahead by less than :data:`FUTURE_TOLERANCE`). ``user_time`` is left to MoEngage, which
    derives it from ``current_time`` and ``user_timezone_offset``. A
    ``device_id`` is carried in the action; :func:`event_element` and the packer lift it to the
    element, where MoEngage reads it.
    """
    _identifier(row.event_key, "event_key")
    _customer_id(row.customer_id)
    name = _action_name(row.action, cuts)
    current_time = _current_time(row.occurred_at, now)
    attributes = normalise_attributes(
        json_object(row.attributes, "event attributes"),
        flatten=options.flatten,
        where="event attribute",
        reserved=RESERVED_EVENT_NAMES,
        max_count=MAX_EVENT_ATTRIBUTES,
        cuts=cuts,
    )
    action: dict[str, Any] = {"action": name, "attributes": attributes}
    if row.platform is not None and row.platform != "":
        action["platform"] = _platform(row.platform, EVENT_PLATFORMS, "event platform")
    if row.app_version is not None:
        if not isinstance(row.app_version, str):
            raise Invalid(
                f"app_version {show(row.app_version)} is not a string", rule="invalid_app_version"
            )
        action["app_version"] = normalise_value(row.app_version, "app_version", cuts)
    action["current_time"] = current_time
    if row.user_timezone_offset is not None:
        action["user_timezone_offset"] = _timezone_offset(row.user_timezone_offset)
    if row.device_id is not None:
        action[ACTION_DEVICE_KEY] = _identifier(row.device_id, "device_id")
    return _encodable(action)


def split_device(action: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The action's device_id (``None``: MoEngage defaults it to the customer_id) and the
    action as it goes into ``actions``."""
    if ACTION_DEVICE_KEY not in action:
        return None, action
    rest = {k: v for k, v in action.items() if k != ACTION_DEVICE_KEY}
    return action[ACTION_DEVICE_KEY], rest


def event_element(customer_id: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``event`` element carrying ``actions`` (from :func:`event_action`) for one customer.

    The actions must share one device_id (or have none); it becomes the element's
    ``device_id``. Raises ``ValueError`` for no actions or mixed device ids.
    """
    if not actions:
        raise ValueError("an event element needs at least one action")
    split = [split_device(action) for action in actions]
    device_ids = {device_id for device_id, _ in split}
    if len(device_ids) > 1:
        raise ValueError(f"actions of one event element have different device ids: {device_ids}")
    element: dict[str, Any] = {"type": "event", "customer_id": customer_id}
    device_id = split[0][0]
    if device_id is not None:
        element["device_id"] = device_id
    element["actions"] = [action for _, action in split]
    return element


def payload_hash(element: dict[str, Any]) -> str:
    """A stable fingerprint of ``element``: sha256 hex of its compact JSON with sorted keys.

    Equal for equal content whatever the key order, so "changed since the last acknowledged
    send" is a string comparison.
    """
    return hashlib.sha256(orjson.dumps(element, option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- identifiers ---------------------------------------------------------------------------


def _customer_id(value: Any) -> str:
    if value is None:
        raise Invalid(
            "customer_id is missing; MoEngage needs it to find or create the user",
            rule="missing_customer_id",
        )
    text = _id_text(value, "customer_id")
    probe = text.strip().lower()
    if probe == "":
        raise Invalid(
            "customer_id is empty; MoEngage needs it to find or create the user",
            rule="missing_customer_id",
        )
    if probe in _FORBIDDEN_IDS:
        forbidden = ", ".join(f'"{v}"' for v in FORBIDDEN_CUSTOMER_IDS)
        raise Invalid(
            f'customer_id "{text}" is one MoEngage silently drops (forbidden values, compared '
            f"without case and surrounding spaces: {forbidden})",
            rule="forbidden_customer_id",
        )
    if len(probe) < MIN_CUSTOMER_ID_CHARS:
        raise Invalid(
            f'customer_id "{text}" is too short: MoEngage accepts only ids of more than one '
            "character",
            rule="forbidden_customer_id",
        )
    return text


def _identifier(value: Any, field: str) -> str:
    if value is None:
        raise Invalid(f"{field} is missing", rule=f"missing_{field}")
    text = _id_text(value, field)
    if not text.strip():
        raise Invalid(f"{field} is empty", rule=f"missing_{field}")
    return text


def _id_text(value: Any, field: str) -> str:
    """An id as MoEngage takes it (a string); integral numbers are accepted and written out."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float | Decimal) and is_finite(value) and value == int(value):
        return str(int(value))
    raise Invalid(
        f"{field} {show(value)} is not a string or a whole number", rule=f"invalid_{field}"
    )


# --- events --------------------------------------------------------------------------------


def _action_name(value: Any, cuts: list[str] | None) -> str:
    if value is None:
        raise Invalid("action is missing; MoEngage rejects the event", rule="missing_action")
    if not isinstance(value, str):
        raise Invalid(
            f"action {show(value)} is not a string; MoEngage rejects the request as malformed",
            rule="invalid_action",
        )
    if not value.strip():
        raise Invalid("action is empty; MoEngage rejects the event", rule="missing_action")
    if value.lower() in RESERVED_EVENT_NAMES:
        raise Invalid(f'action "{value}" is a reserved event name', rule="reserved_event_name")
    if value.lower().startswith(SYSTEM_PREFIX):
        raise Invalid(
            f'action "{clip(value)}" starts with the system prefix "moe_", which risks '
            "blacklisting the event",
            rule="system_prefix",
        )
    if "." in value:
        raise Invalid(
            f'action "{clip(value)}" contains ".", which MoEngage rewrites (a space is '
            'inserted after it); use "_" instead',
            rule="dot_in_event_name",
        )
    if len(value) > MAX_NAME_CHARS:
        # MoEngage truncates longer event names: sent cut the same way.
        if cuts is not None:
            cuts.append("action (name)")
        return value[:MAX_NAME_CHARS]
    return value


def _current_time(occurred_at: Any, now: datetime) -> str:
    if occurred_at is None:
        raise Invalid(
            "occurred_at is missing; an event needs the time it happened",
            rule="missing_occurred_at",
        )
    if not isinstance(occurred_at, datetime):
        raise Invalid(
            f"occurred_at {show(occurred_at)} is not a timestamp", rule="invalid_occurred_at"
        )
    at, now = as_utc(occurred_at), as_utc(now)
    if at > now + FUTURE_TOLERANCE:
        raise Invalid(
            f"occurred_at {iso_utc(at)} is in the future (now is {iso_utc(now)}); MoEngage drops "
            "future-dated events",
            rule="future_event",
        )
    return iso_utc(min(at, now))


def _timezone_offset(value: Any) -> int:
    valid_type = isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    if not valid_type or not is_finite(value) or value != int(value):
        raise Invalid(
            f"user_timezone_offset {show(value)} is not a whole number of seconds",
            rule="invalid_user_timezone_offset",
        )
    offset = int(value)
    if not -MAX_TIMEZONE_OFFSET_S <= offset <= MAX_TIMEZONE_OFFSET_S:
        raise Invalid(
            f"user_timezone_offset {offset} is outside -{MAX_TIMEZONE_OFFSET_S}..."
            f"{MAX_TIMEZONE_OFFSET_S} seconds",
            rule="invalid_user_timezone_offset",
        )
    return offset


# --- platforms and flags -------------------------------------------------------------------


def _platform(value: Any, allowed: tuple[str, ...], field: str) -> str:
    """The canonical spelling of a platform given in any case (``ios`` -> ``iOS``)."""
    if isinstance(value, str):
        probe = value.strip().lower()
        if probe in _APPLE_PLATFORMS and "iOS" in allowed:
            return "iOS"
        for platform in allowed:
            if probe == platform.lower():
                return platform
    raise Invalid(
        f"{field} {show(value)} is not one of {', '.join(allowed)}", rule="invalid_platform"
    )


def _user_platforms(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str | bytes):
        value = parse_json(value, "platforms")
    if not isinstance(value, list | tuple):
        raise Invalid(f"platforms {show(value)} is not a list of objects", rule="invalid_platforms")
    platforms: list[dict[str, Any]] = []
    for entry in value:
        if not isinstance(entry, Mapping) or entry.get("platform") is None:
            raise Invalid(
                f"platforms entry {show(entry)} is not an object with a platform",
                rule="invalid_platforms",
            )
        platform: dict[str, Any] = {
            "platform": _platform(entry["platform"], USER_PLATFORMS, "platforms[].platform")
        }
        if entry.get("active") is not None:
            # MoEngage documents "active" as the string "true"/"false".
            platform["active"] = "true" if _flag(entry["active"], "platforms[].active") else "false"
        platforms.append(platform)
    return platforms


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid(f"{field} {show(value)} is not true or false", rule="invalid_flag")


def _encodable(element: dict[str, Any]) -> dict[str, Any]:
    # What passes here must also pass the packer's encoder; the one case the checks above do not
    # see is text that is not valid Unicode (a lone surrogate).
    try:
        orjson.dumps(element)
    except orjson.JSONEncodeError as error:
        raise Invalid(
            f"the row cannot be encoded as UTF-8 JSON: {error}", rule="invalid_value"
        ) from None
    return element
