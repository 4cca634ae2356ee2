"""``[sources.NAME]`` with ``type = "moco"``: its keys and settings.

Keys (required unless a default is given)::

    type = "moco"
    base_url = "https://acme.mocoapp.com/api/v1"   # http(s), trailing slash dropped
    api_key_env = "MOCO_API_KEY"    # variable holding the API key
    streams = ["activities", ...]   # default: every record list of the catalog
                                    # (`syncer streams moco` lists them)
    enable_streams = ["report_utilization"]   # opt-in streams (reports, details) added to
                                    # `streams`; default none
    disable_streams = ["todos"]     # streams left out of `streams`; default none
    rate_limit = { requests = 120, per_seconds = 120 }   # default as shown; both required
    overlap = "5m"                  # re-read window behind the watermark, >= 0 (default 5m)
    per_page = 100                  # 1..1000 (default 100; MOCO documents at most 100)
    timeout = "30s"                 # per request, > 0 (default 30s)
    max_attempts = 8                # per request, >= 1 (default 8)
    concurrency = 4                 # streams in flight at once, 1..16 (default 4)
    page_concurrency = 8            # pages of one query at once when the rate limit leaves
                                    # room, 1..32; 1: one page at a time (default 8)
    deletion_guard = 0.2            # a sweep or listing finding more than this share of a
                                    # stream missing marks none deleted, 0 < x <= 1 (0.2)
    report_months = 24              # reports cover this many months back, 1..240 (24)
    report_open_months = 2          # the last months re-pulled every run, 1..24 (2)
    details_budget = 100            # detail reads per detail stream and run, 1..100000 (100)
    details_max_age = "1d"          # a detail read longer ago is read again (default 1d)
    webhook_secret_env = "MOCO_WEBHOOK_SECRET"   # optional: variable holding MOCO's webhook
                                    # signature key; read only by `syncer webhooks serve`
    stale_after = "24h"             # `syncer status`: STALE after this long without success
    schema = "NAME"                 # the Postgres schema of its tables (default: NAME)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

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
from syncer.errors import ConfigError
from syncer.sources.moco.catalog import CATALOG
from syncer.tomlspec import (
    Key,
    duration,
    env_name,
    http_url,
    integer,
    nested,
    share,
    stream_names,
    streams,
)

__all__ = ["DEFAULT_STREAMS", "KEYS", "MOCO_STREAMS", "SCHEMA", "MocoSourceSettings", "build"]

MOCO_STREAMS: tuple[str, ...] = CATALOG.names  # every stream a MOCO source can have
DEFAULT_STREAMS: tuple[str, ...] = CATALOG.defaults  # synced unless configured otherwise


@dataclass(frozen=True)
class MocoSourceSettings(SchemaByName):
    name: str
    base_url: str
    api_key: Secret
    streams: tuple[str, ...] = DEFAULT_STREAMS
    rate_limit: RateLimit = RateLimit(120, 120.0)
    overlap_s: float = 300.0
    per_page: int = 100
    timeout_s: float = 30.0
    max_attempts: int = 8
    concurrency: int = 4
    page_concurrency: int = 8  # pages of one query fetched at once when the limit allows it
    deletion_guard: float = 0.2  # a sweep missing more than this share of a stream deletes nothing
    report_months: int = 24
    report_open_months: int = 2
    details_budget: int = 100
    details_max_age_s: float = 86400.0
    webhook_secret_env: str | None = None  # resolved by `syncer webhooks serve` only
    stale_after_s: float = DEFAULT_STALE_AFTER_S  # `syncer status`: STALE beyond this
    schema_name: str | None = None  # key `schema`; None: the source's name
    type: Literal["moco"] = "moco"

    @property
    def secret(self) -> Secret:
        """The credential: what the rate ledger is shared by."""
        return self.api_key


SCHEMA = "moco"  # the built-in source's schema (made by the migrations of releases before 0.3)


def build(
    *,
    enable_streams: tuple[str, ...] = (),
    disable_streams: tuple[str, ...] = (),
    **keys: Any,
) -> MocoSourceSettings:
    """The settings of ``[sources.NAME]``: ``streams`` (the catalog's record lists unless
    given, in their order) with ``enable_streams`` added and ``disable_streams`` taken away."""
    both = sorted(set(enable_streams) & set(disable_streams))
    if both:
        raise ConfigError(
            f"sources.{keys['name']}: {', '.join(both)} is in both enable_streams and "
            "disable_streams; list each stream in one of them"
        )
    given: tuple[str, ...] = keys.pop("streams", DEFAULT_STREAMS)
    added = tuple(n for n in MOCO_STREAMS if n in enable_streams and n not in given)
    chosen = tuple(n for n in (*given, *added) if n not in disable_streams)
    if not chosen:
        raise ConfigError(
            f"sources.{keys['name']}.disable_streams: leaves no stream to sync; "
            "disable fewer streams"
        )
    return MocoSourceSettings(streams=chosen, **keys)


KEYS = (
    Key("base_url", http_url, example='base_url = "https://acme.mocoapp.com/api/v1"'),
    Key(
        "api_key_env",
        env_secret("{NAME} API key"),
        attr="api_key",
        secret_hint=("{NAME}_API_KEY", "key"),
        example='api_key_env = "{NAME}_API_KEY"',
    ),
    Key("streams", streams(MOCO_STREAMS), default=DEFAULT_STREAMS),
    Key("enable_streams", stream_names(MOCO_STREAMS), default=()),
    Key("disable_streams", stream_names(MOCO_STREAMS), default=()),
    Key("rate_limit", nested(RATE_LIMIT_KEYS, RateLimit), default=RateLimit(120, 120.0)),
    Key("overlap", duration(positive=False), default=300.0, attr="overlap_s"),
    Key("per_page", integer(1, 1000), default=100),
    *request_keys(),
    concurrency_key(),
    Key("page_concurrency", integer(1, 32), default=8),
    Key("deletion_guard", share, default=0.2),
    Key("report_months", integer(1, 240), default=24),
    Key("report_open_months", integer(1, 24), default=2),
    Key("details_budget", integer(1, 100_000), default=100),
    Key("details_max_age", duration(positive=True), default=86400.0, attr="details_max_age_s"),
    Key(
        "webhook_secret_env",
        env_name,
        default=None,
        secret_hint=("{NAME}_WEBHOOK_SECRET", "webhook signature key"),
    ),
    STALE_AFTER_KEY,
    SCHEMA_KEY,
)
