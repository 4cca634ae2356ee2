"""MOCA's streams described as a catalog (``syncer.catalog``), for ``syncer streams``.

MOCA's streams are declared in ``api.py`` (their paths, id fields and extracted columns) and
read by the MOCA scan (``scan.py``): each list in full, every run or between full scans by
``updatedSince`` where the server honours it, deletions confirmed record by record. This module
only says so in the catalog's terms; paths are written as MOCA's API does
(``/apps/{app_id}/segments``).
"""

from __future__ import annotations

from syncer.catalog import Catalog, Parent, Period, Stream
from syncer.sources.moca.api import ANALYTICS_PATH, STREAMS

__all__ = ["CATALOG"]

_ID = {"apps": "app_id", "campaigns": "campaign_id"}


def _path(path: str, parent: str | None) -> str:
    return path.replace("{parent}", "{" + _ID[parent] + "}") if parent else path


def _catalog() -> Catalog:
    streams = [
        Stream(
            name=spec.name,
            path=_path(spec.path, spec.parent),
            title=f"List {spec.name}",
            strategy="listing",
            key_type="text",
            replication_key="updatedAt",
            query=frozenset({"offset", "limit", "updatedSince"}),
            deletions="sync",
            parent=Parent(spec.parent, _ID[spec.parent], _ID[spec.parent]) if spec.parent else None,
        )
        for spec in STREAMS.values()
    ]
    streams.append(
        Stream(
            name="analytics",
            path=_path(ANALYTICS_PATH, "apps"),
            title="App analytics per metric, in buckets or over a range",
            strategy="report",
            key_type="text",
            replication_key=None,
            query=frozenset({"from", "to", "interval"}),
            deletions="none",
            parent=Parent("apps", "app_id", "app_id"),
            period=Period("window", ("from", "to")),
            # The key of moca.analytics (moca.analytics_ranges: range_start, range_end, place).
            natural_key=("app_id", "metric", "interval", "bucket_start", "geohash"),
        )
    )
    return Catalog("MOCA", tuple(streams), {"documentation": "https://www.mocaplatform.com"})


CATALOG = _catalog()
