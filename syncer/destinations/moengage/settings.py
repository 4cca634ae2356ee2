"""``[destinations.NAME]`` with ``type = "moengage"``: its keys and settings.

Keys (required unless a default is given)::

    type = "moengage"
    base_url = "https://api-01.moengage.com/v1"   # your data center's API host
    workspace_id_env = "MOENGAGE_WORKSPACE_ID"    # variable holding the workspace (APP) id
    api_key_env = "MOENGAGE_API_KEY"              # variable holding the data API key
    max_request_bytes = 100000                    # 1024..131072 (default 100000)
    rate_limit = { users = 1000, events = 10000, per_seconds = 60 }   # default as shown
    flatten = true                  # nested objects → dot keys (default true)
    timeout = "30s"                 # per request (default 30s)
    max_attempts = 6                # per batch, for 429/5xx/timeouts (default 6)
    on_lost_answer = "resend"       # or "hold" (see README, "Loading MoEngage")
    [destinations.NAME.users]       # optional SQL models; defaults ship with syncer
    sql = "select ... as customer_id, ... as attributes from moco.contacts"
    [destinations.NAME.devices]
    sql = "select ... as customer_id, ... as device_id, ... as attributes from ..."
    [destinations.NAME.events]
    sql = "select ... as event_key, ... as customer_id, ... as action, ..."
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


MODEL_KEYS = (Key("sql", string(), example='sql = "select ... from moco.contacts"'),)

RATE_LIMIT_KEYS = (
    Key("users", integer(1), default=1000),
    Key("events", integer(1), default=10000),
    Key("per_seconds", number(above=0), default=60.0),
)

KEYS = (
    Key("base_url", http_url, example='base_url = "https://api-01.moengage.com/v1"'),
    Key(
        "workspace_id_env",
        env_secret("MoEngage workspace id (APP ID)"),
        attr="workspace_id",
        secret_hint=("MOENGAGE_WORKSPACE_ID", "workspace id"),
        example='workspace_id_env = "MOENGAGE_WORKSPACE_ID"',
    ),
    Key(
        "api_key_env",
        env_secret("MoEngage data API key"),
        attr="api_key",
        secret_hint=("MOENGAGE_API_KEY", "key"),
        example='api_key_env = "MOENGAGE_API_KEY"',
    ),
    Key("max_request_bytes", integer(1024, 131_072), default=100_000),
    Key(
        "rate_limit",
        nested(RATE_LIMIT_KEYS, MoengageRateLimit),
        default=MoengageRateLimit(),
    ),
    Key("flatten", boolean, default=True),
    *request_keys(max_attempts=6),
    Key("on_lost_answer", choice(("resend", "hold")), default="resend"),
    Key("users", nested(MODEL_KEYS, ModelSettings), default=None),
    Key("devices", nested(MODEL_KEYS, ModelSettings), default=None),
    Key("events", nested(MODEL_KEYS, ModelSettings), default=None),
)
