"""Elements packed greedily into MoEngage bulk-import bodies, measured to the byte.

A body is ``{"type":"transition","elements":[...]}`` as compact UTF-8 JSON. Items are taken in
the caller's order and added to the current body while its exact encoded size stays within
``max_request_bytes`` and its users (customer and device elements) and events (actions) stay
within their limits; then the body is emitted and the next one begins. All of one customer's
actions in a body share one event element (one per device id, since MoEngage reads the device
at the element level), so an action either opens that element or grows it.

Each item is encoded once; a body's size is kept as a running sum of the pieces it will be
joined from, so packing is linear in the input and the size equals ``len(body)`` exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from syncer.destinations.moengage.elements import split_device

_OPEN = b'{"type":"transition","elements":['
_CLOSE = b"]}"
_ACTIONS_CLOSE = b"]}"  # closes an event element's "actions" list and the element
EMPTY_BODY_BYTES = len(_OPEN) + len(_CLOSE)

Kind = Literal["user", "device", "event"]


@dataclass(frozen=True)
class Item:
    """One thing to send, with its identity for acknowledgement."""

    kind: Kind
    key: str  # customer_id / f"{customer_id}\x1f{device_id}" / event_key
    customer_id: str
    payload: dict[str, Any]  # the element for user/device; the single action for event


@dataclass(frozen=True)
class Batch:
    """One request: the exact bytes to POST and what they carry."""

    body: bytes
    items: tuple[Item, ...]
    users: int  # customer + device elements in the body
    events: int  # actions in the body


@dataclass(frozen=True)
class Oversized:
    """An item too large for any body; it was skipped."""

    item: Item
    size: int  # bytes of the smallest body that could carry it alone


def encode(obj: Any) -> bytes:
    """``obj`` as compact UTF-8 JSON: the one encoder used for bodies."""
    return orjson.dumps(obj)


def pack(
    items: Iterable[Item], *, max_request_bytes: int, max_users: int, max_events: int
) -> Iterator[Batch | Oversized]:
    """Bodies of at most ``max_request_bytes``, ``max_users`` users and ``max_events`` actions,
    in item order, each as full as the next item allows.

    An item that does not fit even in an empty body is yielded as :class:`Oversized` when it
    is met (before the body holding the items ahead of it) and is not sent.
    """
    if max_request_bytes <= EMPTY_BODY_BYTES:
        raise ValueError(f"max_request_bytes must exceed {EMPTY_BODY_BYTES}, the empty body")
    if max_users < 1 or max_events < 1:
        raise ValueError("max_users and max_events must be at least 1")
    body = _Body()
    prefixes = _Prefixes()
    for item in items:
        piece = _piece(item, prefixes)
        alone = EMPTY_BODY_BYTES + piece.cost(None)
        if alone > max_request_bytes:
            yield Oversized(item, alone)
            continue
        group = body.groups.get(piece.group) if piece.group is not None else None
        fits = (
            body.size + body.added(piece, group) <= max_request_bytes
            and body.users + piece.users <= max_users
            and body.events + piece.events <= max_events
        )
        if not fits:
            yield body.batch()
            body, group = _Body(), None
        body.add(item, piece, group)
    if body.items:
        yield body.batch()


@dataclass(frozen=True)
class _Piece:
    """An item's encoded bytes and what adding it costs."""

    data: bytes  # the element, or the action as it goes into "actions"
    users: int
    events: int
    group: tuple[str, str | None] | None = None  # event: (customer_id, device_id)
    prefix: bytes = b""  # event: the element's bytes up to its first action

    def cost(self, group: _Group | None) -> int:
        """Bytes added to a body (before the separating comma) with ``group`` open or not."""
        if self.group is None:
            return len(self.data)
        if group is not None:
            return 1 + len(self.data)  # "," + action
        return len(self.prefix) + len(self.data) + len(_ACTIONS_CLOSE)


@dataclass
class _Group:
    """An event element being filled: one customer's (and device's) actions in this body."""

    prefix: bytes
    actions: list[bytes]

    def encoded(self) -> bytes:
        return self.prefix + b",".join(self.actions) + _ACTIONS_CLOSE


@dataclass
class _Body:
    parts: list[bytes | _Group] = field(default_factory=list)
    groups: dict[tuple[str, str | None], _Group] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    size: int = EMPTY_BODY_BYTES
    users: int = 0
    events: int = 0

    def added(self, piece: _Piece, group: _Group | None) -> int:
        """Bytes ``piece`` adds to this body, ``group`` being its open event element if any."""
        # A new element needs a comma unless it is the first.
        return piece.cost(group) + (1 if group is None and self.parts else 0)

    def add(self, item: Item, piece: _Piece, group: _Group | None) -> None:
        self.size += self.added(piece, group)
        if piece.group is None:
            self.parts.append(piece.data)
        elif group is not None:
            group.actions.append(piece.data)
        else:
            group = _Group(piece.prefix, [piece.data])
            self.groups[piece.group] = group
            self.parts.append(group)
        self.items.append(item)
        self.users += piece.users
        self.events += piece.events

    def batch(self) -> Batch:
        elements = [p if isinstance(p, bytes) else p.encoded() for p in self.parts]
        body = _OPEN + b",".join(elements) + _CLOSE
        if len(body) != self.size:  # a bug in the accounting, never the input's fault
            raise AssertionError(f"packed body is {len(body)} bytes, accounted {self.size}")
        return Batch(body, tuple(self.items), self.users, self.events)


class _Prefixes:
    """Event element prefixes, encoded once per run of actions of one customer and device."""

    def __init__(self) -> None:
        self._key: tuple[str, str | None] | None = None
        self._prefix = b""

    def get(self, customer_id: str, device_id: str | None) -> bytes:
        key = (customer_id, device_id)
        if key != self._key:
            head: dict[str, Any] = {"type": "event", "customer_id": customer_id}
            if device_id is not None:
                head["device_id"] = device_id
            # {"type":"event","customer_id":"c"} -> {"type":"event","customer_id":"c","actions":[
            self._key, self._prefix = key, encode(head)[:-1] + b',"actions":['
        return self._prefix


def _piece(item: Item, prefixes: _Prefixes) -> _Piece:
    if item.kind == "event":
        device_id, action = split_device(item.payload)
        return _Piece(
            data=encode(action),
            users=0,
            events=1,
            group=(item.customer_id, device_id),
            prefix=prefixes.get(item.customer_id, device_id),
        )
    if item.kind in ("user", "device"):
        return _Piece(data=encode(item.payload), users=1, events=0)
    raise ValueError(f"unknown item kind {item.kind!r}")
