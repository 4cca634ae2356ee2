"""The MoEngage destination type, registered: ``type = "moengage"`` under
``[destinations.NAME]``.

MoEngage (https://developers.moengage.com/hc/en-us/articles/4413174113044-Bulk-Import-User-Data)
takes users, devices and events in bulk-import bodies of up to 128 KB. What syncer relies on is
described in ``docs/vendors/moengage.md``. The SQL models say what is sent (``models.py``);
rows become validated elements (``elements.py``, ``values.py``), packed into bodies
(``packing.py``) and sent within the workspace's rate limits (``load.py``, by the generic load
run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncer.destinations.base import DestinationType
from syncer.destinations.moengage import settings
from syncer.destinations.moengage.settings import MoengageSettings

if TYPE_CHECKING:
    from syncer.destinations.moengage.load import MoengageDestination

__all__ = ["TYPE"]

# Every command loads the configuration, and with it this module: the destination (and with
# it the HTTP client) is imported when a load or `syncer status` makes one.


def _destination(destination: MoengageSettings) -> MoengageDestination:
    from syncer.destinations.moengage.load import MoengageDestination

    return MoengageDestination(destination)


def _check_detail(destination: MoengageSettings) -> str:
    return (
        f"${destination.workspace_id.env} and ${destination.api_key.env} are set; MoEngage's "
        "Data API has no read call to try them on: the first `syncer load` (a small "
        "`--only users` run) shows whether they are accepted"
    )


TYPE = DestinationType(
    name="moengage",
    vendor="MoEngage",
    keys=settings.KEYS,
    build=MoengageSettings,
    models=settings.MODELS,
    check_detail=_check_detail,
    destination=_destination,
)
