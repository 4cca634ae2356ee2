"""What a destination implements, and what it is given: the contract of the generic load run.

``syncer/sources/base.py`` is its counterpart on the source side. A destination type is a
:class:`Destination`, built from its settings by the ``destination`` of its
:class:`DestinationType` (its ``plugin`` module's ``TYPE``, registered by
``syncer.registry``). It says only what is its own:

- its :class:`Model` list: name, SQL, the SQL expression of a row's key, the expression rows
  are merged by, the columns the SQL must return, and whether sending a row twice is harmless;
- :meth:`Destination.item`: one row as an item to send (or :class:`Invalid`: a dead letter
  with a rule and a reason), and :meth:`Destination.payload`: what the item sends, as JSON;
- :meth:`Destination.pack`: the first body of some items, within per-unit caps (or
  :class:`TooLarge` when an item cannot fit a body alone), and its rate-limit units
  (``limits``: amount per window of each unit, shared by every process using one ``scope``);
- :meth:`Destination.deliver`: one body sent once, its answer as a :class:`Delivery`:
  :class:`Acked`, :class:`Rejected` (all or some keys, with a rule and reason), :class:`Split`,
  :class:`Throttled`, :class:`Retry` or :class:`NoAnswer`; a :class:`FatalError` ends the run.
  :func:`post` reads the answer of a bulk HTTP API the way they all give it.

The generic load run (``syncer.runners``) does the rest: the run's frame, the model checks,
the pending rows, one send per key and run, dead letters, pacing, the in-flight journal and its
recovery after a crash, acknowledgements, unanswered sends, retries, splits, lowered limits
after throttling, and the dry run's folder. Nothing here imports the run: a destination package
depends on this module, never on the run, which depends on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import aiohttp

from syncer.errors import UnreachableError
from syncer.http.client import Credential, fatal_status
from syncer.tomlspec import Key

if TYPE_CHECKING:
    from syncer.config import DestinationSettings
    from syncer.results import LoadOutcome
    from syncer.store.rate import Limit
    from syncer.store.status import ModelStatus
    from syncer.store.types import Connection

__all__ = [
    "INTEGER",
    "JSON",
    "TEXT",
    "TIMESTAMP",
    "Acked",
    "Body",
    "Column",
    "Delivery",
    "Destination",
    "Invalid",
    "Model",
    "NoAnswer",
    "Rejected",
    "Retry",
    "Split",
    "Throttled",
    "TooLarge",
    "post",
]

I = TypeVar("I")  # noqa: E741  (a destination's item)

# Column types a model's SQL may return (``Column.types``).
TEXT = ("text", "varchar", "bpchar", "int2", "int4", "int8", "numeric", "uuid")
JSON = ("jsonb", "json")
TIMESTAMP = ("timestamptz", "timestamp", "date")
INTEGER = ("int2", "int4", "int8", "numeric")


# --- what a destination declares ---------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    types: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Model:
    """One SQL model of a destination: what it sends of the warehouse.

    ``key`` is an SQL expression over the model's row (``model.<column>``) naming what the
    destination identifies it by; ``order`` the expression rows of all models are merged by
    (byte order, nulls last; ties go to the model listed first). A model that is not
    ``idempotent`` is sent until acknowledged and never after, and a send of it without an
    answer is noted per key (it may have arrived: another send may duplicate it).
    """

    name: str
    sql: str
    key: str
    columns: tuple[Column, ...]
    order: str | None = None  # None: the key
    idempotent: bool = True
    key_label: str = "key"  # what the key is, for messages ("customer_id")

    @property
    def json_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if set(c.types) <= set(JSON))


class Invalid(Exception):
    """A row the destination cannot take (or would silently drop): dead-lettered."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class Body(Generic[I]):
    """One request's body: the bytes, the items it carries and its rate-limit units."""

    data: bytes
    items: tuple[I, ...]
    units: Mapping[str, int]
    wire: Any = None  # the destination's own view of it


@dataclass(frozen=True)
class TooLarge:
    """An item that does not fit any body alone: dead-lettered ``too_large``."""

    reason: str


# --- what a delivery answers -------------------------------------------------------------------


@dataclass(frozen=True)
class Acked:
    """The destination took the whole body."""


@dataclass(frozen=True)
class Rejected:
    """The destination refused the body (``keys`` None) or some of its items' keys: those are
    dead-lettered with ``rule`` and ``reason``; the rest of the body is acknowledged."""

    rule: str
    reason: str
    keys: frozenset[str] | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Split:
    """The body is too large for the destination: sent again in halves. (A body of one item
    cannot be split: answer :class:`Rejected` for it; a split of one item is retried.)"""

    detail: str


@dataclass(frozen=True)
class Throttled:
    """Rate limited: nothing was applied; every user of the limits waits a window."""

    detail: str


@dataclass(frozen=True)
class Retry:
    """Not applied, or not knowably (a server error): sent again after a backoff."""

    detail: str


@dataclass(frozen=True)
class NoAnswer:
    """The body left but no answer came: it may have been applied."""

    detail: str


Delivery = Acked | Rejected | Split | Throttled | Retry | NoAnswer


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Body[Any],
    credential: Credential,
    answered: Callable[[], Awaitable[None]],
    *,
    timeout_s: float,
    rejected: Callable[[int, bytes], Rejected],
    accepted: Callable[[int, bytes], bool] = lambda status, _raw: 200 <= status < 300,
    headers: Mapping[str, str] | None = None,
) -> Delivery:
    """POST one body and read the destination's answer the way every bulk API answers:
    ``accepted`` (default: any 2xx) is :class:`Acked`; 413 for a body of several items is
    :class:`Split`; 429 :class:`Throttled`; 5xx :class:`Retry`; no answer :class:`NoAnswer`;
    a status no request of ``credential`` can get past (401, 403, 404, its own ``fatal``) is
    raised as the HTTP layer maps it; any other status is the destination's ``rejected``."""
    try:
        async with session.post(
            url,
            data=body.data,
            headers={**credential.headers, **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            await answered()  # the destination has counted the body by now
            status, raw = response.status, await response.read()
    except aiohttp.ClientConnectorError as exc:
        raise UnreachableError(
            f"cannot connect to {credential.vendor} ({exc.os_error}); check base_url and the "
            "network"
        ) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        return NoAnswer(f"no answer ({type(exc).__name__})")
    if accepted(status, raw):
        return Acked()
    detail = f"HTTP {status}"
    if status == 413 and len(body.items) > 1:
        return Split(detail)
    if status == 429:
        return Throttled(detail)
    if status >= 500:
        return Retry(detail)
    fatal = fatal_status(credential, status, raw, url)
    if fatal is not None:
        raise fatal
    return rejected(status, raw)


# --- the destination ---------------------------------------------------------------------------


class Destination(Protocol[I]):
    """One configured destination, as the generic load run sees it (see the module's doc)."""

    @property
    def name(self) -> str: ...

    @property
    def vendor(self) -> str: ...  # for messages

    @property
    def models(self) -> Sequence[Model]: ...

    @property
    def scope(self) -> str: ...  # who shares the rate limits (never a secret)

    @property
    def limits(self) -> Mapping[str, Limit]: ...  # per unit

    @property
    def margin_s(self) -> float: ...  # pacing margin between a body's budget and its count

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def hold_lost(self) -> bool: ...  # hold non-idempotent rows after a send without answer

    def item(self, model: Model, row: Mapping[str, Any], now: datetime, cuts: list[str]) -> I:
        """The row as an item (``cuts``: labels of what was truncated); :class:`Invalid`."""
        ...

    def payload(self, item: I) -> Any:
        """What ``item`` sends, JSON-encodable (sizes, dead letters)."""
        ...

    def pack(self, items: Sequence[I], caps: Mapping[str, int]) -> Body[I] | TooLarge:
        """The first body of ``items`` (a prefix of them), at most ``caps`` of each unit."""
        ...

    async def deliver(
        self,
        session: aiohttp.ClientSession,
        body: Body[I],
        answered: Callable[[], Awaitable[None]],
    ) -> Delivery:
        """Send ``body`` once; call ``answered`` once the destination has answered."""
        ...


@dataclass(frozen=True)
class DestinationType:
    """What syncer needs to know of one kind of destination.

    ``destination(settings)`` makes the destination (a ``syncer.destinations.base.Destination``:
    its SQL models, rows as items, packed bodies, one delivery) that the generic load run
    (``syncer.runners.load``) loads into: the run does the frame, the pending rows,
    acknowledgements and dead letters, and ``syncer status`` counts per model what is pending,
    sent and dead-lettered (``syncer.runners.load_status``). A type whose loads are not that
    run gives ``load(pool, session, settings, **options)`` and ``status(conn, settings)`` of
    its own instead. ``models`` are the names of its SQL models.
    """

    name: str
    vendor: str
    keys: tuple[Key, ...]
    build: Callable[..., DestinationSettings]
    models: tuple[str, ...]  # the names of its SQL models (`syncer load --only`)
    check_detail: Callable[[Any], str]  # `syncer check`: what can be said without a request
    # settings -> its syncer.destinations.base.Destination (not named here: the destination
    # packages import this module, and the contract is theirs)
    destination: Callable[[Any], Any] | None = None
    load: Callable[..., Awaitable[LoadOutcome]] | None = None  # None: the generic run
    status: Callable[[Connection, Any], Awaitable[Sequence[ModelStatus]]] | None = None
