"""Attribute names and values as MoEngage types and limits them (docs/vendors/moengage.md),
and `Invalid`.

Nested objects become dot keys, datetimes ISO 8601 UTC strings, ``Decimal`` a number, UUIDs
strings. What MoEngage truncates is truncated here the same way and sent: values (and array
items) over 512 characters, names over 200; each cut is noted in the caller's ``cuts`` list.
What it rejects or drops raises :class:`Invalid` with the field and the rule: reserved names,
the system prefix, URLs over 512 characters, two names that become one when cut, arrays over
50 items, and anything JSON cannot carry. `moengage_elements` builds whole elements from rows
with these. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

SYSTEM_PREFIX = "moe_"
# The documented standard moe_* keys (docs/vendors/moengage.md): the only moe_ names
# that are not a blacklisting risk.
STANDARD_MOE_KEYS = frozenset(
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

# MoEngage's Data Tracking Policies (help.moengage.com/hc/en-us/articles/360037314991): longer
# names and values are truncated, longer URL values rejected; an array holds at most 50 items.
MAX_NAME_CHARS = 200
MAX_VALUE_CHARS = 512
MAX_ARRAY_ITEMS = 50

# Top-level attribute keys whose value is an object by MoEngage's definition: flattening them
# would turn an operation or a location into unrelated attributes.
_OBJECT_KEYS = frozenset({"addValueToArrayField", "removeValueFromArrayField", "moe_geo_location"})

_INT64 = (-(2**63), 2**63 - 1)
_SHOWN_CHARS = 60  # of a value quoted in a reason


class Invalid(Exception):
    """A row MoEngage would drop, reject or alter; ``reason`` says which field and which rule.

    ``rule`` is a short stable slug (``forbidden_customer_id``, ``reserved_attribute``...) for
    grouping dead letters.
    """

    def __init__(self, reason: str, *, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


# --- attributes ----------------------------------------------------------------------------


def json_object(value: Any, field: str) -> Mapping[str, Any]:
    """A model's ``attributes`` column as a mapping; NULL is an empty object.

    jsonb arrives as text unless the driver has a codec for it, so text is parsed.
    """
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        value = parse_json(value, field)
    if not isinstance(value, Mapping):
        raise Invalid(f"{field} {show(value)} is not a JSON object", rule="invalid_attributes")
    return value


def parse_json(text: str | bytes, field: str) -> Any:
    """The JSON value of ``text``; :class:`Invalid` naming ``field`` if it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Invalid(f"{field} {show(text)} is not valid JSON", rule="invalid_json") from None


def normalise_attributes(
    source: Mapping[str, Any],
    *,
    flatten: bool,
    where: str,
    reserved: frozenset[str],
    max_count: int | None,
    cuts: list[str] | None = None,
) -> dict[str, Any]:
    """``source`` as MoEngage attributes: flattened to dot keys if asked, names and values
    checked and normalised; :class:`Invalid` for the first rule broken.

    ``where`` names the attributes in reasons ("event attribute"); ``reserved`` are the names
    blocked for this element type; ``max_count`` caps how many there may be (None: no cap).
    Names and values cut to MoEngage's limits are noted in ``cuts``: the attribute's name for a
    value, the name followed by " (name)" for a name.
    """
    flat: dict[str, Any] = {}
    _collect(source, "", flat, flatten, where)
    if max_count is not None and len(flat) > max_count:
        raise Invalid(
            f"{len(flat)} {where}s in one row; MoEngage keeps at most {max_count}",
            rule="too_many_attributes",
        )
    attributes: dict[str, Any] = {}
    for name, value in flat.items():
        _check_name(name, where, reserved)
        if flatten and _holds_objects(value):
            # Lists stay lists, and a list of objects needs the Object Data Type feature, like
            # any object: without it MoEngage drops the attribute.
            raise Invalid(
                f'{where} "{clip(name)}" is a list of objects, which MoEngage stores only with '
                "the Object Data Type feature (then turn flattening off)",
                rule="object_value",
            )
        kept = name
        if len(name) > MAX_NAME_CHARS:
            kept = name[:MAX_NAME_CHARS]
            if kept in flat or kept in attributes:
                raise Invalid(
                    f'{where} name "{clip(name)}" is {len(name)} characters; cut to MoEngage\'s '
                    f"{MAX_NAME_CHARS} it would be the same as another attribute's name",
                    rule="name_collision",
                )
            _note(cuts, f"{clip(kept)} (name)")
        attributes[kept] = normalise_value(value, f"{where} {clip(name)}", cuts, clip(kept))
    return attributes


def _note(cuts: list[str] | None, label: str) -> None:
    if cuts is not None:
        cuts.append(label)


def _holds_objects(value: Any) -> bool:
    return isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value)


def _collect(
    source: Mapping[Any, Any], prefix: str, out: dict[str, Any], flatten: bool, where: str
) -> None:
    for key, value in source.items():
        if not isinstance(key, str):
            raise Invalid(f"{where} name {show(key)} is not a string", rule="invalid_attribute")
        name = prefix + key
        nested = isinstance(value, Mapping) and not (prefix == "" and key in _OBJECT_KEYS)
        if flatten and nested:
            # An empty nested object flattens to nothing: MoEngage has no empty-object value.
            _collect(value, name + ".", out, flatten, where)
            continue
        if name in out:
            raise Invalid(
                f'{where} "{clip(name)}" is given twice (once as a nested key)',
                rule="duplicate_attribute",
            )
        out[name] = value


def _check_name(name: str, where: str, reserved: frozenset[str]) -> None:
    probe = name.lower()
    if probe in reserved:
        blocked = ", ".join(f'"{r}"' for r in sorted(reserved))
        raise Invalid(
            f'{where} name "{name}" is reserved by MoEngage (blocked names: {blocked})',
            rule="reserved_attribute",
        )
    if probe.startswith(SYSTEM_PREFIX) and name not in STANDARD_MOE_KEYS:
        raise Invalid(
            f'{where} "{clip(name)}" starts with the system prefix "moe_", which risks '
            "blacklisting it (only MoEngage's standard moe_ attributes may use it)",
            rule="system_prefix",
        )


def check_array_operations(attributes: Mapping[str, Any]) -> None:
    """Raises :class:`Invalid` unless the array operations are objects that do not both add
    to and remove from one attribute."""
    added = attributes.get("addValueToArrayField")
    removed = attributes.get("removeValueFromArrayField")
    for operation in (added, removed):
        if operation is not None and not isinstance(operation, Mapping):
            raise Invalid(
                f"array operation {show(operation)} is not an object of attribute -> values",
                rule="invalid_array_operation",
            )
    if isinstance(added, Mapping) and isinstance(removed, Mapping):
        both = sorted(set(added) & set(removed))
        if both:
            # MoEngage answers 400 ArrayFieldError, which would fail the whole bulk request.
            raise Invalid(
                f'attribute "{both[0]}" is both added to and removed from in one update',
                rule="invalid_array_operation",
            )


def is_url(value: str) -> bool:
    """Whether MoEngage takes the text for a URL (and rejects it when too long)."""
    return value.lstrip().lower().startswith(("http://", "https://"))


def normalise_value(
    value: Any, field: str, cuts: list[str] | None = None, label: str | None = None
) -> Any:
    """``value`` as MoEngage types and keeps it, or :class:`Invalid`.

    Text over :data:`MAX_VALUE_CHARS` characters is cut to that many (whole characters, so the
    UTF-8 stays valid) and ``label`` (default: ``field``) is noted in ``cuts``; a URL that long
    is rejected by MoEngage, so it raises."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            if is_url(value):
                raise Invalid(
                    f"{field} is a URL of {len(value)} characters; MoEngage rejects URLs over "
                    f"{MAX_VALUE_CHARS}",
                    rule="url_too_long",
                )
            _note(cuts, label or field)
            return value[:MAX_VALUE_CHARS]
        return value
    if isinstance(value, int):
        return _int64(value, field)
    if isinstance(value, float | Decimal):
        return _number(value, field)
    if isinstance(value, datetime):
        return iso_utc(as_utc(value))
    if isinstance(value, date):
        # A date is a datetime attribute at midnight UTC; a bare "2026-01-31" would be a string.
        return iso_utc(datetime.combine(value, time(), UTC))
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return _array(value, field, cuts, label or field)
    if isinstance(value, Mapping):
        return {
            key if isinstance(key, str) else _bad_key(key, field): normalise_value(
                item, f"{field}.{key}", cuts, f"{label or field}.{key}"
            )
            for key, item in value.items()
        }
    raise Invalid(
        f"{field} has a value of type {type(value).__name__}, which JSON cannot carry",
        rule="invalid_value",
    )


def _array(
    values: list[Any] | tuple[Any, ...], field: str, cuts: list[str] | None, label: str
) -> list[Any]:
    if len(values) > MAX_ARRAY_ITEMS:
        raise Invalid(
            f"{field} has {len(values)} elements; MoEngage allows at most {MAX_ARRAY_ITEMS}",
            rule="array_too_long",
        )
    items = [normalise_value(item, f"{field}[]", cuts, label) for item in values]
    kinds = {_kind(item) for item in items if item is not None}
    if len(kinds) > 1:
        raise Invalid(
            f"{field} mixes element types ({', '.join(sorted(kinds))}); MoEngage needs one type "
            "per array",
            rule="mixed_array",
        )
    return items


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def is_finite(value: int | float | Decimal) -> bool:
    """Whether ``value`` is neither infinite nor NaN."""
    # Decimal has its own test: float(Decimal("sNaN")) raises.
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def _number(value: float | Decimal, field: str) -> int | float:
    if not is_finite(value):
        raise Invalid(f"{field} is {value}, which JSON cannot carry", rule="invalid_value")
    if isinstance(value, Decimal) and value == value.to_integral_value():
        integral = int(value)
        if _INT64[0] <= integral <= _INT64[1]:
            return integral
    return float(value)


def _int64(value: int, field: str) -> int:
    if not _INT64[0] <= value <= _INT64[1]:
        raise Invalid(f"{field} {value} does not fit in 64 bits", rule="invalid_value")
    return value


def _bad_key(key: Any, field: str) -> str:
    raise Invalid(f"{field} has a key {show(key)} that is not a string", rule="invalid_attribute")


# --- formatting ----------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC."""
    # A timestamp without a zone (Postgres "timestamp") is taken as UTC, the warehouse's habit.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """``2026-11-23T10:00:00Z``: the documented form; fractions of a second are dropped."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z"
    )


def clip(text: str) -> str:
    """``text`` cut to a length fit for a reason, with "…" if anything was cut."""
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def show(value: Any) -> str:
    """``value`` quoted (strings) or repr'd, clipped, for a reason."""
    if isinstance(value, str):
        return f'"{clip(value)}"'
    if isinstance(value, bytes):
        return show(value.decode("utf-8", "replace"))
    return clip(repr(value))
