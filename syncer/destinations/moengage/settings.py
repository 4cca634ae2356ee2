"""``[destinations.NAME]`` with ``type = "moengage"``: its keys and settings.

Its keys are :data:`KEYS` (the models' ``sql`` and the rate limit's keys nested in them), each
with its default and its meaning; ``docs/configuration.md`` lists them (written by
``tools/config_docs.py``). The settings' field defaults repeat the keys' for code that builds
settings directly; ``tests/unit/test_config_docs.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from syncer.config import Secret, env_secret, request_keys
from syncer.tomlspec import (
    Key,
    boolean,
    choice,
    http_url,
    integer,
    nested,
    number,
    string,
)

__all__ = ["KEYS", "MODELS", "ModelSettings", "MoengageRateLimit", "MoengageSettings"]


MODELS = ("users", "devices", "events")  # its SQL models, in the order a customer's rows go


@dataclass(frozen=True)
class MoengageRateLimit:
    users: int = 1000  # customer and device elements ...
    events: int = 10000  # ... and event actions ...
    per_seconds: float = 60.0  # ... per window, for the workspace


@dataclass(frozen=True)
class ModelSettings:
    sql: str


@dataclass(frozen=True)
class MoengageSettings:
    name: str
    base_url: str
    workspace_id: Secret
    api_key: Secret
    max_request_bytes: int = 100_000
    rate_limit: MoengageRateLimit = MoengageRateLimit()
    flatten: bool = True
    timeout_s: float = 30.0
    max_attempts: int = 6
    # A request left unanswered may have arrived: send its events again ("resend", at least
    # once) or hold them until `syncer load <name> --release-held` ("hold", at most once).
    on_lost_answer: Literal["resend", "hold"] = "resend"
    users: ModelSettings | None = None  # None: the model that ships with syncer
    devices: ModelSettings | None = None
    events: ModelSettings | None = None
    type: Literal["moengage"] = "moengage"

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.workspace_id, self.api_key)


MODEL_KEYS = (
    Key(
        "sql",
        string(),
        example='sql = "select ... from moco.contacts"',
        help="the model's query over the warehouse, returning the model's columns "
        "(docs/vendors/moengage.md)",
    ),
)

RATE_LIMIT_KEYS = (
    Key(
        "users",
        integer(1),
        default=1000,
        help="customer and device elements per window, for the workspace",
    ),
    Key("events", integer(1), default=10000, help="event actions per window"),
    Key("per_seconds", number(above=0), default=60.0, help="the window, in seconds"),
)


def _model(name: str) -> Key:
    return Key(
        name,
        nested(MODEL_KEYS, ModelSettings),
        default=None,
        default_text="the model that ships with syncer",
        help=f"the `{name}` model: a table with its `sql`",
    )


KEYS = (
    Key(
        "base_url",
        http_url,
        example='base_url = "https://api-01.moengage.com/v1"',
        help="your workspace's data center, `https://api-0N.moengage.com/v1` (the dashboard's "
        "host `dashboard-0N` tells N)",
    ),
    Key(
        "workspace_id_env",
        env_secret("MoEngage workspace id (APP ID)"),
        attr="workspace_id",
        secret_hint=("MOENGAGE_WORKSPACE_ID", "workspace id"),
        example='workspace_id_env = "MOENGAGE_WORKSPACE_ID"',
        help="the environment variable holding the workspace id (APP ID)",
    ),
    Key(
        "api_key_env",
        env_secret("MoEngage data API key"),
        attr="api_key",
        secret_hint=("MOENGAGE_API_KEY", "key"),
        example='api_key_env = "MOENGAGE_API_KEY"',
        help="the environment variable holding the Data API key",
    ),
    Key(
        "max_request_bytes",
        integer(1024, 131_072),
        default=100_000,
        help="the largest body sent, in bytes of the exact UTF-8 JSON, 1024 to 131072",
    ),
    Key(
        "rate_limit",
        nested(RATE_LIMIT_KEYS, MoengageRateLimit),
        default=MoengageRateLimit(),
        help="the workspace's limits, shared by every run and replica",
    ),
    Key(
        "flatten",
        boolean,
        default=True,
        help="nested attribute objects sent as dot keys (`address.city`)",
    ),
    *request_keys(
        max_attempts=6,
        attempts_help="attempts per body, for 5xx, timeouts and lost answers (429s are "
        "counted apart); at least 1",
    ),
    Key(
        "on_lost_answer",
        choice(("resend", "hold")),
        default="resend",
        help='a body left unanswered may have arrived: `"resend"` its events (at least once) '
        'or `"hold"` them until `syncer load NAME --release-held` (at most once)',
    ),
    _model("users"),
    _model("devices"),
    _model("events"),
)
