"""``[sources.NAME]`` with ``type = "moca"``: its keys and settings.

Its keys are :data:`KEYS`, each with its default and its meaning; ``docs/configuration.md``
lists them (written by ``tools/config_docs.py``), and ``docs/vendors/moca.md`` says which of
them configure what is inferred about MOCA's API. The settings' field defaults repeat the keys'
for code that builds settings directly; ``tests/unit/test_config_docs.py`` checks that the two
agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from syncer.config import (
    DEFAULT_STALE_AFTER_S,
    RATE_LIMIT_KEYS,
    SCHEMA_KEY,
    STALE_AFTER_KEY,
    RateLimit,
    SchemaByName,
    Secret,
    concurrency_key,
    env_secret,
    request_keys,
)
from syncer.tomlspec import (
    Ctx,
    Invalid,
    Key,
    choice,
    comma_list,
    describe,
    duration,
    http_url,
    integer,
    names,
    nested,
    share,
    streams,
)

__all__ = ["KEYS", "MOCA_METRICS", "MOCA_STREAMS", "SCHEMA", "MocaSourceSettings"]

MOCA_STREAMS: tuple[str, ...] = (
    "apps",
    "beacons",
    "places",
    "zones",
    "geofences",
    "segments",
    "campaigns",
    "experiences",
    "notifications",
    "analytics",
)
MOCA_METRICS: tuple[str, ...] = (
    "new_users",
    "returning_users",
    "active_users",
    "sessions",
    "visitors",
    "geolocations",
)


@dataclass(frozen=True)
class MocaSourceSettings(SchemaByName):
    name: str
    base_url: str  # https, or http on loopback (the sandbox)
    token: Secret
    streams: tuple[str, ...] = MOCA_STREAMS
    rate_limit: RateLimit = RateLimit(10, 1.0)  # MOCA documents none: polite by default
    page_size: int = 100  # `limit` asked for; the server may cap it
    timeout_s: float = 30.0
    max_attempts: int = 8
    concurrency: int = 4
    deletion_guard: float = 0.2  # a scan missing more than this share of a stream deletes nothing
    full_scan_every_s: float = 3600.0  # when the server honours updatedSince
    overlap_s: float = 300.0  # re-read window behind the updatedSince watermark
    analytics_metrics: tuple[str, ...] = MOCA_METRICS
    analytics_interval: str = "day"
    analytics_since_s: float = 30 * 86400.0  # how far back the first analytics pull goes
    analytics_restated_s: float = 2 * 86400.0  # trailing window re-pulled every run
    paths: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    stale_after_s: float = DEFAULT_STALE_AFTER_S  # `syncer status`: STALE beyond this
    schema_name: str | None = None  # key `schema`; None: the source's name
    type: Literal["moca"] = "moca"

    @property
    def secret(self) -> Secret:
        """The credential: what the rate ledger is shared by."""
        return self.token


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _ssl_url(value: object, ctx: Ctx) -> str:
    """MOCA's API is SSL only: https, except plain http to this machine (the sandbox)."""
    url = http_url(value, ctx)
    host = re.sub(r"(?i)^https?://", "", url).split("/", 1)[0].rsplit(":", 1)[0]
    if url.lower().startswith("http://") and host not in _LOOPBACK:
        raise Invalid(
            f'"{url}" is plain http; MOCA\'s API is SSL only: use https:// '
            "(plain http is accepted only for a sandbox on this machine)"
        )
    return url


def _paths(value: object, ctx: Ctx) -> Mapping[str, str]:
    """Overrides of the inferred MOCA paths, e.g. { beacons = "/fleet/beacons" }."""
    if not isinstance(value, dict):
        raise Invalid(f"expected a table of stream = path, got {describe(value)}")
    bad = [k for k, v in value.items() if k not in MOCA_STREAMS or not isinstance(v, str)]
    if bad:
        raise Invalid(
            f"unknown streams or non-string paths: {bad}; streams: {comma_list(MOCA_STREAMS)}"
        )
    return MappingProxyType(dict(value))


SCHEMA = "moca"  # the built-in source's schema, created by the migrations

KEYS = (
    Key(
        "base_url",
        _ssl_url,
        example='base_url = "https://api.mocaplatform.com/v2"',
        help="the API, `https://api.mocaplatform.com/v2` (inferred); https only, plain http "
        "only to this machine (a sandbox)",
    ),
    Key(
        "token_env",
        env_secret("MOCA API token"),
        attr="token",
        secret_hint=("{NAME}_API_TOKEN", "token"),
        example='token_env = "MOCA_API_TOKEN"',
        help="the environment variable holding the API token (sent as `Bearer`)",
    ),
    Key(
        "streams",
        streams(MOCA_STREAMS),
        default=MOCA_STREAMS,
        default_text="all",
        help="the streams to sync: " + ", ".join(f"`{s}`" for s in MOCA_STREAMS),
    ),
    Key(
        "rate_limit",
        nested(RATE_LIMIT_KEYS, RateLimit),
        default=RateLimit(10, 1.0),
        help="MOCA documents none: polite by default",
    ),
    Key(
        "page_size",
        integer(1, 1000),
        default=100,
        help="`limit` asked for, 1 to 1000; the server may cap it",
    ),
    *request_keys(),
    concurrency_key(),
    Key(
        "deletion_guard",
        share,
        default=0.2,
        help="a scan that finds more than this share of a stream missing marks none deleted "
        "(0 < x <= 1)",
    ),
    Key(
        "full_scan_every",
        duration(positive=False),
        default=3600.0,
        attr="full_scan_every_s",
        help="when the server honours `updatedSince`: how often a run scans every list in full "
        "(runs between read only what changed)",
    ),
    Key(
        "overlap",
        duration(positive=False),
        default=300.0,
        attr="overlap_s",
        help="re-read window behind the `updatedSince` watermark",
    ),
    Key(
        "analytics_metrics",
        names(MOCA_METRICS, "metrics"),
        default=MOCA_METRICS,
        default_text="all",
        help="the metrics pulled: " + ", ".join(f"`{m}`" for m in MOCA_METRICS),
    ),
    Key(
        "analytics_interval",
        choice(("hour", "day", "month")),
        default="day",
        help="the buckets asked for: `hour`, `day` or `month`",
    ),
    Key(
        "analytics_since",
        duration(positive=True),
        default=30 * 86400.0,
        attr="analytics_since_s",
        help="how far back the first analytics pull goes",
    ),
    Key(
        "analytics_restated",
        duration(positive=False),
        default=2 * 86400.0,
        attr="analytics_restated_s",
        help="trailing window of analytics pulled again every run (recent buckets are restated)",
    ),
    Key(
        "paths",
        _paths,
        default=MappingProxyType({}),
        help='overrides of the inferred paths, per stream (`{ beacons = "/fleet/beacons" }`)',
    ),
    STALE_AFTER_KEY,
    SCHEMA_KEY,
)
