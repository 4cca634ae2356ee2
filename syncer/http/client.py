"""One credential's view of an API: auth, pacing, retries, and HTTP statuses mapped to errors.

Every request waits for the credential's :class:`SlidingWindowLimiter`. Transient failures
(429, 5xx, timeouts, resets) are retried: a 429 holds every stream of the credential back for a
full window, other failures back off exponentially up to one window. Everything else becomes a
:class:`FatalError` whose message names the cause and the fix, and never the secret.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from syncer.errors import (
    AuthError,
    FatalError,
    MalformedResponseError,
    RequestRejectedError,
    RetriableError,
    SyncerError,
    UnreachableError,
)
from syncer.pacing import Limiter, Slot


@dataclass(frozen=True)
class Credential:
    """Who we are to an API: the vendor's name for messages, and the auth headers.

    ``fatal`` maps statuses that end every request of the credential (bad credentials, the
    wrong account or endpoint) to the vendor's own error, made from the answer's body; it
    takes the place of the generic message of :func:`classify_status` for those statuses."""

    vendor: str  # "MOCO"
    key_env: str  # the environment variable that holds the key, for messages
    headers: Mapping[str, str] = field(repr=False)
    fatal: Mapping[int, Callable[[bytes], FatalError]] = field(default_factory=dict, repr=False)


# Statuses after which no request of the credential can succeed (besides ``Credential.fatal``).
FATAL_STATUSES = frozenset({401, 403, 404})


@dataclass(frozen=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str

    def json(self) -> Any:
        """The body parsed as JSON; :class:`MalformedResponseError` if it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"{self.url} answered {self.status} with a body that is not valid JSON "
                f"({exc}); the API or a proxy in between is misbehaving, try again later"
            ) from None


class _Unsettled:
    """The stand-in for a reserved slot within :meth:`ApiClient.get`: its owner settles it."""

    async def settle(self) -> None:
        return None


@dataclass
class RequestStats:
    """What one client did, for the run's results."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0


def _error_text(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("message", "error", "errors"):
            if key in parsed:
                return str(parsed[key])[:300]
    text = body.decode("utf-8", "replace").strip()
    return text[:300] or "no message"


def classify_status(
    credential: Credential, status: int, body: bytes, url: str
) -> SyncerError | None:
    """Map an HTTP status to the error the caller should act on; ``None`` for success."""
    vendor, env = credential.vendor, credential.key_env
    if 200 <= status < 300:
        return None
    if status in credential.fatal:
        return credential.fatal[status](body)
    if status == 401:
        return AuthError(
            f"{vendor} rejected the credentials (HTTP 401: {_error_text(body)}); "
            f"check that {env} holds a valid {vendor} key"
        )
    if status == 403:
        return AuthError(
            f"{vendor} refused access (HTTP 403: {_error_text(body)}); check that {env} holds "
            f"a valid {vendor} key with read access to all records"
        )
    if status == 404:
        return RequestRejectedError(
            f"{vendor} has no {url} (HTTP 404); check base_url in the configuration"
        )
    if status == 422:
        return RequestRejectedError(
            f"{vendor} rejected the request {url} (HTTP 422): {_error_text(body)}"
        )
    if status == 408:
        return RetriableError(f"{vendor} timed out the request (HTTP 408)")
    if status == 429:
        return RetriableError(f"{vendor} rate limit reached (HTTP 429)", rate_limited=True)
    if status >= 500:
        return RetriableError(f"{vendor} server error (HTTP {status}) at {url}")
    return RequestRejectedError(
        f"{vendor} rejected the request {url} (HTTP {status}): {_error_text(body)}"
    )


def fatal_status(credential: Credential, status: int, body: bytes, url: str) -> FatalError | None:
    """The error of a status after which no request of ``credential`` can succeed (its
    credentials, account or endpoint are wrong), as :func:`classify_status` maps it; ``None``
    for a status that concerns the one request."""
    if status not in FATAL_STATUSES and status not in credential.fatal:
        return None
    error = classify_status(credential, status, body, url)
    assert isinstance(error, FatalError)
    return error


class ApiClient:
    """Requests with one credential, paced by its limiter and retried when transient."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credential: Credential,
        limiter: Limiter,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 8,
        backoff_base_s: float = 1.0,
        connect_attempts: int = 3,
    ) -> None:
        self._session = session
        self.credential = credential
        self.limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_attempts = max_attempts
        self._connect_attempts = min(connect_attempts, max_attempts)
        self._backoff_base_s = backoff_base_s
        self.stats = RequestStats()

    async def reserve(self, n: int) -> Slot:
        """One slot for ``n`` requests sent at once (``get(..., reserved=slot)``), taken in one
        step of the limiter; settle it once all of them are answered."""
        return await self.limiter.acquire(n)

    def _backoff_s(self, attempt: int) -> float:
        ceiling = min(self._backoff_base_s * 2.0 ** (attempt - 1), self.limiter.window_s)
        return ceiling * (0.5 + random.random() / 2)

    async def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        stats: RequestStats | None = None,
        missing_ok: bool = False,
        reserved: Slot | None = None,
    ) -> Response:
        """GET ``url``; the successful response, or the error that ended the attempts.

        Requests are counted in ``self.stats`` and, if given, in the caller's ``stats`` too.
        With ``missing_ok``, a 404 is returned rather than raised (a record that is gone).
        With ``reserved``, the first attempt goes out in a slot taken for several requests at
        once (see :meth:`reserve`); its owner settles it. Retries take slots of their own.
        """
        counters = [self.stats] if stats is None else [self.stats, stats]
        last: SyncerError | None = None
        connect_failures = 0
        for attempt in range(1, self._max_attempts + 1):
            started = time.monotonic()
            own = reserved is None or attempt > 1
            slot = await self.limiter.acquire() if own else _Unsettled()
            waited = time.monotonic() - started
            for counter in counters:
                counter.retries += attempt > 1
                counter.waited_s += waited
                counter.requests += 1
            try:
                try:
                    async with self._session.get(
                        url,
                        params=params,
                        headers=self.credential.headers,
                        timeout=self._timeout,
                        allow_redirects=False,
                    ) as resp:
                        await slot.settle()  # the server has counted it by now
                        body = await resp.read()
                        response = Response(resp.status, resp.headers, body, str(resp.url))
                finally:
                    await slot.settle()  # idempotent; frees the slot a window from now
            except aiohttp.ClientConnectorError as exc:
                connect_failures += 1
                last = UnreachableError(
                    f"cannot connect to {self.credential.vendor} at {url} ({exc.os_error}); "
                    f"check base_url and the network"
                )
                if connect_failures >= self._connect_attempts:
                    raise last from None
                await asyncio.sleep(self._backoff_s(attempt))
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                last = RetriableError(f"{self.credential.vendor} request {url} failed ({kind})")
                await asyncio.sleep(self._backoff_s(attempt))
                continue
            if missing_ok and response.status == 404:
                return response
            error = classify_status(self.credential, response.status, body, response.url)
            if error is None:
                return response
            if not isinstance(error, RetriableError):
                raise error
            last = error
            if error.rate_limited:
                for counter in counters:
                    counter.rate_limited += 1
                await self.limiter.hold_off()
            else:
                await asyncio.sleep(self._backoff_s(attempt))
        assert last is not None
        raise FatalError(
            f"gave up after {self._max_attempts} attempts: {last.message}; "
            f"the API may be down, try again later"
        )
