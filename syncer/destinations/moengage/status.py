"""``syncer status`` for a MoEngage destination: per model, what is pending, sent,
dead-lettered, unanswered or held, and what the last load truncated."""

from __future__ import annotations

from syncer.destinations.moengage.load import MoengageDestination
from syncer.destinations.moengage.settings import MoengageSettings
from syncer.loading import model_statuses
from syncer.store.status import ModelStatus
from syncer.store.types import Connection

__all__ = ["destination_status"]


async def destination_status(conn: Connection, settings: MoengageSettings) -> list[ModelStatus]:
    """Per model of the destination: pending, sent and dead letters by reason."""
    return await model_statuses(conn, MoengageDestination(settings))
