"""``syncer status`` for a destination: per model, what is pending, sent, dead-lettered,
unanswered or held, and what the last load truncated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer import registry
from syncer.destinations.base import Destination
from syncer.runners.load import destination_of
from syncer.runners.pending import pending_query
from syncer.store import loads
from syncer.store.status import ModelStatus
from syncer.store.types import Connection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from syncer.config import DestinationSettings

__all__ = ["destination_status", "model_statuses"]


async def destination_status(
    conn: Connection, settings: DestinationSettings
) -> Sequence[ModelStatus]:
    """Per model of the configured destination ``settings``: :func:`model_statuses` of what its
    type makes of them, or the type's own ``status``."""
    kind = registry.destination_type(settings.type)
    if kind.status is not None:
        return await kind.status(conn, settings)
    return await model_statuses(conn, destination_of(settings))


async def model_statuses(conn: Connection, destination: Destination[Any]) -> list[ModelStatus]:
    """Per model of the destination: pending, sent, dead letters by reason, unanswered or held
    rows, and what the last load truncated."""
    name, hold = destination.name, destination.hold_lost
    names = [m.name for m in destination.models]
    counts = await loads.model_counts(conn, name, names)
    truncated = (await loads.last_run_counts(conn, name)).get("truncated") or {}
    duplicated = await loads.possibly_duplicated(conn, name)
    out = []
    for model in destination.models:
        try:
            pending = await loads.count_pending(conn, name, pending_query(model, hold=hold))
        except Exception:  # a broken model is reported by `syncer load`, not here
            pending = -1
        examples = await loads.dead_letter_examples(conn, name, model.name)
        count = counts[model.name]
        out.append(
            ModelStatus(
                model.name,
                pending,
                count["sent"],
                count["dead_letters"],
                examples,
                unanswered=count["unanswered"],
                held=count["held"] if hold else 0,
                possibly_duplicated=duplicated if not model.idempotent else 0,
                truncated={
                    label.split(".", 1)[1]: int(n)
                    for label, n in truncated.items()
                    if label.startswith(f"{model.name}.")
                },
            )
        )
    return out
