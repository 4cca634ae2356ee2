"""How one page of an API becomes rows to store, or rejected records with the reason why."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import orjson

# A NUL character, escaped in JSON text: Postgres ``jsonb`` and ``text`` cannot hold one.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
NUL_REASON = "holds a NUL character (\\u0000), which Postgres cannot store"


def has_nul(text: str) -> bool:
    """Whether JSON text holds an escaped NUL character (not an escaped backslash before u0000)."""
    return "u0000" in text and _NUL.search(text) is not None


@dataclass(frozen=True)
class Row:
    id: int | str  # bigint ids (MOCO) or text ids (MOCA, a report row's key)
    updated_at: datetime | None
    data: str  # the record as JSON text


@dataclass(frozen=True)
class Rejected:
    reason: str
    record: str  # the record as JSON text, for inspection


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (UTC if no zone is given); None if invalid."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Keyed(Protocol):
    """What :func:`split_records` needs to know of a stream (a catalog ``Stream``): its
    records' update time field, and optionally the key field and type."""

    @property
    def replication_key(self) -> str | None: ...


def split_records(items: list[Any], spec: Keyed) -> tuple[list[Row], list[Rejected]]:
    """Rows for the records that can be stored, and the others with the reason why not."""
    field_name: str = getattr(spec, "primary_key", "id")
    text_keys = getattr(spec, "key_type", "bigint") == "text"
    stamp = spec.replication_key
    rows: list[Row] = []
    rejected: list[Rejected] = []
    for item in items:
        text = orjson.dumps(item).decode()
        if not isinstance(item, dict):
            rejected.append(Rejected(f"not a JSON object but {type(item).__name__}", text))
            continue
        key = item.get(field_name)
        if text_keys:
            if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
                rejected.append(Rejected(f"no {field_name!r}", text))
                continue
            key = str(key)
        else:
            if isinstance(key, bool) or not isinstance(key, int):
                reason = f"no integer {field_name!r}" + (
                    "" if key is None else f" (got {orjson.dumps(key).decode()[:40]})"
                )
                rejected.append(Rejected(reason, text))
                continue
            if not -(2**63) <= key < 2**63:
                rejected.append(Rejected(f"{field_name!r} {key} does not fit a bigint", text))
                continue
        if has_nul(text):
            rejected.append(Rejected(f"the record {NUL_REASON}", text))
            continue
        rows.append(Row(key, parse_timestamp(item.get(stamp)) if stamp else None, text))
    return rows, rejected
