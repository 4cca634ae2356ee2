"""What MoEngage's Data API accepts: the 400s a body earns, and what it drops without a word.

Pure functions over parsed JSON (no I/O, no state); `moengage.py` applies them to the simulated
workspace. The rules are MoEngage's, as docs/vendors/moengage.md cites them. Messages are the
documented ones, including the stray leading `'` MoEngage puts in its /transition messages;
where no text is documented the wording is ours and says so in a comment.

One concept: MoEngage's validation rules, one function per documented rule, read in one
place against the vendor's pages; splitting them would hide which rule wins when several apply.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ELEMENT_TYPES = ("customer", "device", "event")

# The data overview: "any string of more than one character" except these; compared lowercased
# and trimmed, since case sensitivity is not documented.
FORBIDDEN_CUSTOMER_IDS = frozenset(
    {
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
    }
)
# The Data API overview: "id", "_id" and "" are blocked in user and device attribute names;
# events add "userId" (and the same list applies to event names).
RESERVED_USER_ATTRIBUTES = frozenset({"id", "_id", ""})
RESERVED_EVENT_ATTRIBUTES = frozenset({"id", "_id", "userId", ""})
# The documented standard keys that carry the system `moe_` prefix. Any other
# `moe_` name (user attribute, device attribute, event or event attribute) is dropped.
STANDARD_MOE_ATTRIBUTES = frozenset(
    {
        "moe_unsubscribe",
        "moe_mobile",
        "moe_wa_subscription",
        "moe_em_unsub_categories",
        "moe_sub_w",
        "moe_spam",
        "moe_hard_bounce",
        "moe_sms_subscription",
        "moe_email_optin_status",
        "moe_gaid",
        "moe_geo_location",
        "moe_push_opted",
        "moe_os_type",
    }
)
# Set when the user is created, never updated afterwards.
CREATE_ONLY_USER_ATTRIBUTES = frozenset(
    {"publisher_name", "campaign_name", "u_l_a", "cr_t", "moe_gaid", "advertising_identifier"}
)
# Object-valued keys MoEngage itself defines, allowed without the Object Data Type feature.
_STANDARD_OBJECT_ATTRIBUTES = frozenset({"platforms", "moe_geo_location"})
DEVICE_PLATFORMS = frozenset({"ANDROID", "iOS", "web", "TV"})
USER_PLATFORMS = frozenset({"ANDROID", "iOS", "web"})
MAX_TIMEZONE_OFFSET_S = 54_000
MAX_NAME_CHARS = 200  # data tracking policies: longer names truncated
MAX_VALUE_CHARS = 512  # same: longer values truncated, URLs rejected
_MILLISECONDS_ABOVE = 1e11  # epoch values above this are milliseconds
_EPOCH = re.compile(r"-?\d+(\.\d+)?")

MALFORMED_JSON = (
    "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8."
)


@dataclass(frozen=True)
class Problem:
    """A documented 400: the `error` object MoEngage answers with, less its request_id."""

    message: str
    type: str
    attribute: str | None = None


class BadRequest(Exception):
    """The body earns a 400; `problem` is what goes into the error envelope."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class AttributeIssue:
    """One attribute MoEngage would not store as sent: dropped, or kept truncated."""

    name: str
    reason: str
    outcome: Literal["dropped", "truncated"]
    value: Any


def decode_body(body: bytes, *, bulk: bool) -> dict[str, Any]:
    """The JSON object in `body`; raises BadRequest with the documented empty/malformed 400s."""
    if not body.strip():
        raise BadRequest(Problem("A valid JSON document is required.", "Empty request body"))
    try:
        parsed = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(malformed_json(bulk=bulk)) from None
    if not isinstance(parsed, dict):
        raise BadRequest(Problem("A valid JSON document is required.", "Body type is not JSON"))
    return parsed


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension, not JSON.
    raise ValueError(f"{name} is not JSON")


def malformed_json(*, bulk: bool) -> Problem:
    """The 400 for undecodable JSON, also used for wrongly typed element parts."""
    return Problem(_quoted(MALFORMED_JSON, bulk), "Malformed JSON")


def transition_elements(body: Mapping[str, Any]) -> list[Any]:
    """The `elements` of a /transition body; raises BadRequest when the envelope is wrong."""
    if "type" not in body:
        # Inferred wording: no 400 is documented for a missing or wrong top-level type.
        raise BadRequest(missing("type", bulk=True))
    if body["type"] != "transition":
        raise BadRequest(Problem("'type should be transition", "AttributeError", "type"))
    if "elements" not in body:
        raise BadRequest(missing("elements", bulk=True))
    elements = body["elements"]
    if not isinstance(elements, list):
        raise BadRequest(malformed_json(bulk=True))
    if not elements:
        raise BadRequest(
            Problem("'elements cannot be empty array", "MissingAttributeError", "elements")
        )
    return elements


def element_problem(element: Any, *, expected_type: str | None) -> Problem | None:
    """The 400 one element earns on its shape, or None. `expected_type` is None in bulk,
    where any of customer/device/event is allowed, else the single endpoint's type."""
    bulk = expected_type is None
    if not isinstance(element, dict):
        return malformed_json(bulk=bulk)
    kind = element.get("type")
    if bulk and kind not in ELEMENT_TYPES:
        return Problem(
            "'type in elements should be customer/event/device", "AttributeError", "type"
        )
    if not bulk and kind != expected_type:
        # Inferred wording: the single endpoints document no message for a wrong type.
        return Problem(f"type should be {expected_type}", "AttributeError", "type")
    if element.get("customer_id") is None:
        # Identity Resolution (customer_id replaced by identifiers) is not simulated.
        return missing("customer_id", bulk=bulk)
    if kind == "event":
        return _actions_problem(element, bulk=bulk)
    return None


def _actions_problem(element: Mapping[str, Any], *, bulk: bool) -> Problem | None:
    if "actions" not in element:
        return missing("actions", bulk=bulk)
    actions = element["actions"]
    if not isinstance(actions, list):
        return malformed_json(bulk=bulk)
    if not actions:
        return Problem(
            _quoted("actions can not be empty Array", bulk), "MissingAttributeError", "actions"
        )
    for action in actions:
        if not isinstance(action, dict):
            return malformed_json(bulk=bulk)
        if "action" not in action:
            return missing("action", bulk=bulk)
        name = action["action"]
        if not isinstance(name, str):  # reported as Malformed JSON
            return malformed_json(bulk=bulk)
        if not name.strip():
            return Problem(
                _quoted("action cannot be empty Unicode string", bulk),
                "MissingAttributeError",
                "action",
            )
    return None


def missing(name: str, *, bulk: bool) -> Problem:
    """The MissingAttributeError for an absent key, in the bulk or the single-endpoint wording."""
    text = f"'{name} not found in the payload" if bulk else f"{name} is not found in the payload"
    return Problem(text, "MissingAttributeError", name)


def _quoted(message: str, bulk: bool) -> str:
    return f"'{message}" if bulk else message


def units(elements: list[Any]) -> tuple[int, int]:
    """(users, events) a list of elements counts against the rate limit: customer and device
    elements are users (devices counted as users to be safe), each action is one event."""
    users = events = 0
    for element in elements:
        if not isinstance(element, dict):
            continue
        if element.get("type") in ("customer", "device"):
            users += 1
        elif element.get("type") == "event" and isinstance(element.get("actions"), list):
            events += len(element["actions"])
    return users, events


def customer_id_problem(customer_id: Any) -> str | None:
    """Why MoEngage would drop an element with this customer_id, or None."""
    if not isinstance(customer_id, str):
        return f"customer_id must be a string, got {type(customer_id).__name__}"
    normalised = customer_id.strip().lower()
    if normalised in FORBIDDEN_CUSTOMER_IDS:
        return f"customer_id {customer_id!r} is on MoEngage's forbidden list"
    if len(normalised) < 2:
        return f"customer_id {customer_id!r} is shorter than two characters"
    return None


def device_problem(element: Mapping[str, Any]) -> Problem | None:
    """The device API's documented 400s; the bulk API drops such elements instead."""
    device_id = element.get("device_id")
    if not isinstance(device_id, str) or not device_id.strip():
        # Inferred wording: [OAS] marks device_id required but documents no message for it.
        return Problem(
            "'device_id' is not found in the payload", "MissingAttributeError", "device_id"
        )
    attributes = element.get("attributes")
    if not isinstance(attributes, dict):
        return Problem(
            "'attributes' is not found in the payload", "MissingAttributeError", "attributes"
        )
    if "platform" not in attributes:
        return Problem("'platform' is not found in payload", "MissingAttributeError", "platform")
    if attributes["platform"] not in DEVICE_PLATFORMS:
        return Problem("'platform' is not a valid platform.", "ValueError", "platform")
    push_id = attributes.get("push_id")
    if not isinstance(push_id, str) or not push_id:
        return Problem("'push_id' is not found in payload", "MissingAttributeError", "push_id")
    return None


def clean_attributes(
    attributes: Mapping[str, Any], *, reserved: frozenset[str], allow_objects: bool
) -> tuple[dict[str, Any], list[AttributeIssue]]:
    """The attributes MoEngage would store, and one issue per attribute it would not store as
    sent: reserved or `moe_` names, objects without the Object Data Type feature, over-long
    URLs (dropped); over-long names and values (truncated)."""
    kept: dict[str, Any] = {}
    issues: list[AttributeIssue] = []

    def drop(name: str, value: Any, reason: str) -> None:
        issues.append(AttributeIssue(name, reason, "dropped", value))

    for name, value in attributes.items():
        if name in reserved:
            drop(name, value, f"attribute name {name!r} is reserved")
        elif name.lower().startswith("moe_") and name not in STANDARD_MOE_ATTRIBUTES:
            drop(name, value, "the moe_ prefix is reserved for MoEngage's own attributes")
        elif name == "platforms" and (reason := _platforms_problem(value)):
            drop(name, value, reason)
        elif name == "moe_push_opted" and value not in ("True", "False"):
            drop(name, value, "moe_push_opted must be the string 'True' or 'False'")
        elif not allow_objects and name not in _STANDARD_OBJECT_ATTRIBUTES and _is_object(value):
            drop(name, value, "object values need the workspace's Object Data Type feature")
        elif any(_long_url(item) for item in (value if isinstance(value, list) else [value])):
            drop(name, value, f"URL values longer than {MAX_VALUE_CHARS} characters are rejected")
        else:
            if isinstance(value, list) and any(
                isinstance(item, str) and len(item) > MAX_VALUE_CHARS for item in value
            ):
                # Data tracking policies: array items are values too, each at most 512 characters.
                issues.append(
                    AttributeIssue(
                        name,
                        f"array item longer than {MAX_VALUE_CHARS} characters",
                        "truncated",
                        value,
                    )
                )
                value = [
                    item[:MAX_VALUE_CHARS] if isinstance(item, str) else item for item in value
                ]
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                issues.append(
                    AttributeIssue(
                        name, f"value longer than {MAX_VALUE_CHARS} characters", "truncated", value
                    )
                )
                value = value[:MAX_VALUE_CHARS]
            if len(name) > MAX_NAME_CHARS:
                issues.append(
                    AttributeIssue(
                        name, f"name longer than {MAX_NAME_CHARS} characters", "truncated", value
                    )
                )
                name = name[:MAX_NAME_CHARS]
            kept[name] = value
    return kept, issues


def _platforms_problem(value: Any) -> str | None:
    # A list of {"platform": ANDROID|iOS|web, "active": "true"|"false"}, active a string.
    if not isinstance(value, list):
        return "platforms must be a list"
    for entry in value:
        if not isinstance(entry, dict) or entry.get("platform") not in USER_PLATFORMS:
            return "platforms[].platform must be one of ANDROID, iOS, web"
        if "active" in entry and entry["active"] not in ("true", "false"):
            return "platforms[].active must be the string 'true' or 'false'"
    return None


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(item, dict) for item in value)
    )


def _long_url(value: Any) -> bool:
    return isinstance(value, str) and len(value) > MAX_VALUE_CHARS and _is_url(value)


def _is_url(value: str) -> bool:
    return value.lstrip().lower().startswith(("http://", "https://"))


def event_name_problem(name: str) -> str | None:
    """Why MoEngage would drop an action with this event name, or None."""
    if name in RESERVED_EVENT_ATTRIBUTES:
        return f"event name {name!r} is reserved"
    if name.lower().startswith("moe_"):
        return "the moe_ prefix is reserved for MoEngage's own events"
    return None


def event_time(
    action: Mapping[str, Any], *, received_at: datetime, future_tolerance_s: float
) -> tuple[datetime | None, str | None]:
    """(when the event happened in UTC, None), or (None, why the action is dropped).

    Follows MoEngage's defaulting table: current_time wins; else user_time shifted by the
    offset; else the receive time. Future-dated events are dropped ("not accepted"; a silent
    drop is our assumption)."""
    offset = action.get("user_timezone_offset")
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            return None, "user_timezone_offset must be a number of seconds"
        if abs(offset) > MAX_TIMEZONE_OFFSET_S:
            return None, f"user_timezone_offset {offset} is outside ±{MAX_TIMEZONE_OFFSET_S}"
    at = received_at
    for field in ("current_time", "user_time"):
        if action.get(field) is None:
            continue
        parsed = parse_time(action[field])
        if parsed is None:
            return None, f"{field} {action[field]!r} is neither ISO 8601 nor epoch seconds"
        at = parsed
        if field == "user_time" and offset is not None:
            # user_time is local; with only user_time and no offset MoEngage applies the
            # profile's timezone, which the simulator takes as UTC.
            at = datetime.fromtimestamp(parsed.timestamp() - float(offset), UTC)
        break
    if at.timestamp() > received_at.timestamp() + future_tolerance_s:
        return None, f"event time {at.isoformat()} is in the future"
    return at, None


def parse_time(value: Any) -> datetime | None:
    """An event time as MoEngage reads it: ISO 8601, or epoch seconds as a number or a string
    (values above 1e11 taken as milliseconds, as MoEngage's own samples send); None if neither.
    A naive ISO time is taken as UTC."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _EPOCH.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > _MILLISECONDS_ABOVE else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class Event:
    """One accepted action. Duplicates are kept: MoEngage never deduplicates events."""

    request: int  # the number of the request that carried it
    customer_id: str
    device_id: str
    action: str
    attributes: dict[str, Any]
    at: str  # when it happened, ISO 8601 UTC, after MoEngage's defaulting rules
    platform: Any = None
    app_version: Any = None
    current_time: Any = None
    user_time: Any = None
    user_timezone_offset: Any = None


@dataclass(frozen=True)
class Drop:
    """Something answered with 200 but not stored as sent.

    `unit` is "customer", "device" or "event" (one action) when the whole thing was dropped;
    "user_attribute", "device_attribute" or "event_attribute" for one attribute; "element" for a
    structurally bad element under `structural_errors="drop_element"`. `name` is the attribute
    or event name, `value` what was sent.
    """

    request: int
    unit: str
    customer_id: Any
    reason: str
    outcome: Literal["dropped", "truncated"] = "dropped"
    name: str | None = None
    value: Any = None


class Workspace:
    """The data of one workspace, changed element by element as MoEngage would: users upserted
    by customer_id (attributes merged), devices upserted by (customer_id, device_id), events
    appended, and a Drop for everything accepted but not stored as sent."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}  # customer_id -> merged attributes
        self.devices: dict[tuple[str, str], dict[str, Any]] = {}  # -> merged attributes
        self.events: list[Event] = []
        self.drops: list[Drop] = []

    def clear(self) -> None:
        """Forgets every user, device, event and drop."""
        self.users.clear()
        self.devices.clear()
        self.events.clear()
        self.drops.clear()

    def apply(
        self,
        element: dict[str, Any],
        request: int,
        *,
        received_at: datetime,
        allow_objects: bool,
        future_tolerance_s: float,
    ) -> None:
        """Applies one element that passed `element_problem`, recording what MoEngage drops."""
        reason = customer_id_problem(element["customer_id"])
        if reason is not None:
            self.drop_element(element, request, reason)
        elif element["type"] == "customer":
            self._apply_customer(element, request, allow_objects)
        elif element["type"] == "device":
            self._apply_device(element, request, allow_objects)
        else:
            self._apply_event(element, request, received_at, allow_objects, future_tolerance_s)

    def drop_element(self, element: Any, request: int, reason: str) -> None:
        """Records a whole element as dropped; an event element counts one drop per action."""
        if not isinstance(element, dict):
            self.drops.append(Drop(request, "element", None, reason, value=element))
            return
        kind, customer_id = element.get("type"), element.get("customer_id")
        actions = element.get("actions")
        if kind == "event" and isinstance(actions, list) and actions:
            for action in actions:
                name = action.get("action") if isinstance(action, dict) else None
                self._drop(request, "event", customer_id, reason, name, action)
        else:
            unit = kind if kind in ("customer", "device") else "element"
            self._drop(request, str(unit), customer_id, reason, value=element)

    def _apply_customer(self, element: dict[str, Any], request: int, allow_objects: bool) -> None:
        customer_id: str = element["customer_id"]
        attributes = element.get("attributes", {})
        if not isinstance(attributes, dict):
            self.drop_element(element, request, "attributes is not an object")
            return
        if element.get("update_existing_only") is True and customer_id not in self.users:
            reason = "update_existing_only for an unknown user: not created"
            self.drop_element(element, request, reason)
            return
        if "platforms" in element and "platforms" not in attributes:
            # Documented both inside attributes and at the top level.
            attributes = {**attributes, "platforms": element["platforms"]}
        kept = self._clean(attributes, request, "user_attribute", customer_id, allow_objects)
        existing = self.users.get(customer_id)
        if existing is not None:
            for name in CREATE_ONLY_USER_ATTRIBUTES & kept.keys() & existing.keys():
                reason = "create-only attribute: not updated on an existing user"
                self._drop(request, "user_attribute", customer_id, reason, name, kept.pop(name))
        self.users.setdefault(customer_id, {}).update(kept)

    def _apply_device(self, element: dict[str, Any], request: int, allow_objects: bool) -> None:
        customer_id: str = element["customer_id"]
        problem = device_problem(element)
        if problem is not None:
            self.drop_element(element, request, problem.message)
            return
        if customer_id not in self.users:
            # Devices are created for existing users only; send the customer first.
            reason = "device for an unknown user (no customer element before it)"
            self.drop_element(element, request, reason)
            return
        attributes = element["attributes"]
        kept = self._clean(attributes, request, "device_attribute", customer_id, allow_objects)
        self.devices.setdefault((customer_id, element["device_id"]), {}).update(kept)

    def _apply_event(
        self,
        element: dict[str, Any],
        request: int,
        received_at: datetime,
        allow_objects: bool,
        future_tolerance_s: float,
    ) -> None:
        customer_id: str = element["customer_id"]
        device_id = element.get("device_id", customer_id)  # defaults to the customer_id
        if not isinstance(device_id, str):
            self.drop_element(element, request, "device_id is not a string")
            return
        for action in element["actions"]:
            name: str = action["action"]
            attributes = action.get("attributes", {})
            at, reason = event_time(
                action, received_at=received_at, future_tolerance_s=future_tolerance_s
            )
            if not isinstance(attributes, dict):
                reason = "attributes is not an object"
            reason = event_name_problem(name) or reason
            if reason is not None or at is None:
                self._drop(request, "event", customer_id, str(reason), name, action)
                continue
            if len(name) > MAX_NAME_CHARS:
                reason = f"event name longer than {MAX_NAME_CHARS} characters"
                self._drop(request, "event", customer_id, reason, name, action, "truncated")
                name = name[:MAX_NAME_CHARS]
            kept = self._clean(attributes, request, "event_attribute", customer_id, allow_objects)
            self.events.append(
                Event(
                    request=request,
                    customer_id=customer_id,
                    device_id=device_id,
                    action=name,
                    attributes=kept,
                    at=at.isoformat().replace("+00:00", "Z"),
                    platform=action.get("platform"),
                    app_version=action.get("app_version"),
                    current_time=action.get("current_time"),
                    user_time=action.get("user_time"),
                    user_timezone_offset=action.get("user_timezone_offset"),
                )
            )
            # Data API overview: an event for an unknown customer_id creates the user.
            self.users.setdefault(customer_id, {})

    def _clean(
        self,
        attributes: Mapping[str, Any],
        request: int,
        unit: str,
        customer_id: str,
        allow_objects: bool,
    ) -> dict[str, Any]:
        reserved = (
            RESERVED_EVENT_ATTRIBUTES if unit == "event_attribute" else RESERVED_USER_ATTRIBUTES
        )
        kept, issues = clean_attributes(attributes, reserved=reserved, allow_objects=allow_objects)
        for issue in issues:
            self._drop(
                request, unit, customer_id, issue.reason, issue.name, issue.value, issue.outcome
            )
        return kept

    def _drop(
        self,
        request: int,
        unit: str,
        customer_id: Any,
        reason: str,
        name: str | None = None,
        value: Any = None,
        outcome: Literal["dropped", "truncated"] = "dropped",
    ) -> None:
        self.drops.append(Drop(request, unit, customer_id, reason, outcome, name, value))
