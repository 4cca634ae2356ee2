"""``[sources.NAME]`` with ``type = "moco"``: its keys and settings.

Its keys are :data:`KEYS`, each with its default and its meaning; ``docs/configuration.md``
lists them (written by ``tools/config_docs.py``). The settings' field defaults repeat the keys'
for code that builds settings directly (tests, ``syncer demo``);
``tests/unit/test_config_docs.py`` checks that the two agree.
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
    Key(
        "base_url",
        http_url,
        example='base_url = "https://acme.mocoapp.com/api/v1"',
        help="the account's API: `https://YOURDOMAIN.mocoapp.com/api/v1` (a trailing slash is "
        "dropped)",
    ),
    Key(
        "api_key_env",
        env_secret("{NAME} API key"),
        attr="api_key",
        secret_hint=("{NAME}_API_KEY", "key"),
        example='api_key_env = "{NAME}_API_KEY"',
        help="the environment variable holding the API key (an account key, read-only is "
        "enough; a user's key sees only what that user may see)",
    ),
    Key(
        "streams",
        streams(MOCO_STREAMS),
        default=DEFAULT_STREAMS,
        default_text="every record list of the catalog (on in docs/streams.md)",
        help="the streams to sync, by name (`syncer streams moco` lists them)",
    ),
    Key(
        "enable_streams",
        stream_names(MOCO_STREAMS),
        default=(),
        help="opt-in streams (reports, per-record details) added to `streams`",
    ),
    Key(
        "disable_streams",
        stream_names(MOCO_STREAMS),
        default=(),
        help="streams taken out of `streams`; a stream may not be in both lists",
    ),
    Key(
        "rate_limit",
        nested(RATE_LIMIT_KEYS, RateLimit),
        default=RateLimit(120, 120.0),
        help="the credential's limit, shared by every stream and process using it; MOCO "
        'documents 120 per 2 minutes, 1,200 on the "unlimited" plan, 15 per 15 s before 2024',
    ),
    Key(
        "overlap",
        duration(positive=False),
        default=300.0,
        attr="overlap_s",
        help="re-read window behind the watermark, for changes committed with a slightly "
        "older timestamp (>= 0)",
    ),
    Key(
        "per_page",
        integer(1, 1000),
        default=100,
        help="page size asked for where a list documents `per_page`, 1 to 1000, within the "
        "list's documented maximum (100 for every list of the shipped catalog)",
    ),
    *request_keys(),
    concurrency_key(),
    Key(
        "page_concurrency",
        integer(1, 32),
        default=8,
        help="pages of one query requested at once when the rate limit leaves room (a sprint), "
        "1 to 32; 1: one page at a time",
    ),
    Key(
        "deletion_guard",
        share,
        default=0.2,
        help="a sweep or full listing that finds more than this share of a stream's live rows "
        "missing marks none of them deleted (0 < x <= 1)",
    ),
    Key(
        "report_months",
        integer(1, 240),
        default=24,
        help="reports cover the last this many months, this one included, 1 to 240",
    ),
    Key(
        "report_open_months",
        integer(1, 24),
        default=2,
        help="a report's periods ending within the last this many months are still open and "
        "pulled again every run; closed ones are pulled once, 1 to 24",
    ),
    Key(
        "details_budget",
        integer(1, 100_000),
        default=100,
        help="detail reads (one request per record) per detail stream and run, 1 to 100000",
    ),
    Key(
        "details_max_age",
        duration(positive=True),
        default=86400.0,
        attr="details_max_age_s",
        help="a detail read longer ago than this is due again, after the changed records' details",
    ),
    Key(
        "webhook_secret_env",
        env_name,
        default=None,
        secret_hint=("{NAME}_WEBHOOK_SECRET", "webhook signature key"),
        help="the environment variable holding MOCO's webhook signature key; read only by "
        "`syncer webhooks serve`",
    ),
    STALE_AFTER_KEY,
    SCHEMA_KEY,
)
