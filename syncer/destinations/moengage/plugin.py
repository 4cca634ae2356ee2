"""The MoEngage destination type, registered: ``type = "moengage"`` under
``[destinations.NAME]``.

MoEngage (https://developers.moengage.com/hc/en-us/articles/4413174113044-Bulk-Import-User-Data)
takes users, devices and events in bulk-import bodies of up to 128 KB. What syncer relies on is
described in ``docs/vendors/moengage.md``. The SQL models say what is sent (``models.py``);
rows become validated elements (``elements.py``, ``values.py``), packed into bodies
(``packing.py``) and sent within the workspace's rate limits (``load.py``).
"""

from __future__ import annotations

from syncer import registry
from syncer.destinations.moengage import load, settings, status
from syncer.destinations.moengage.settings import MoengageSettings

__all__ = ["TYPE"]


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
        models=load.MODELS,
        load=load.load_destination,
        status=status.destination_status,
        check_detail=_check_detail,
    )
)
