"""The MoEngage destination type, registered: ``type = "moengage"`` under
``[destinations.NAME]``.

MoEngage (https://developers.moengage.com/hc/en-us/articles/4413174113044-Bulk-Import-User-Data)
takes users, devices and events in bulk-import bodies of up to 128 KB. What syncer relies on is
described in ``docs/vendors/moengage.md``. The SQL models say what is sent (``models.py``);
rows become validated elements (``elements.py``, ``values.py``), packed into bodies
(``packing.py``) and sent within the workspace's rate limits (``load.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncer import registry
from syncer.destinations.moengage import settings
from syncer.destinations.moengage.settings import MoengageSettings

if TYPE_CHECKING:
    from syncer.loading import LoadResult
    from syncer.store.status import ModelStatus
    from syncer.store.types import Connection

__all__ = ["TYPE"]

# Every command loads the configuration, and with it this module: the load run (and the HTTP
# client, the database) is imported by the hooks that need it.


async def _load(*args: Any, **kwargs: Any) -> LoadResult:
    from syncer.destinations.moengage.load import load_destination

    return await load_destination(*args, **kwargs)


async def _status(conn: Connection, destination: MoengageSettings) -> list[ModelStatus]:
    from syncer.destinations.moengage.status import destination_status

    return await destination_status(conn, destination)


def _check_detail(destination: MoengageSettings) -> str:
    return (
        f"${destination.workspace_id.env} and ${destination.api_key.env} are set; MoEngage's "
        "Data API has no read call to try them on: the first `syncer load` (a small "
        "`--only users` run) shows whether they are accepted"
    )


TYPE = registry.register_destination(
    registry.DestinationType(
        name="moengage",
        vendor="MoEngage",
        keys=settings.KEYS,
        build=MoengageSettings,
        models=settings.MODELS,
        load=_load,
        status=_status,
        check_detail=_check_detail,
    )
)
