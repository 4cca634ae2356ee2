"""MOCO's streams: the catalog generated from MOCO's OpenAPI description (``catalog.json``).

``tools/moco_catalog.py`` writes ``catalog.json`` from ``tools/moco-openapi.json``, MOCO's own
description of API v1 (https://docs.mocoapp.com/api/docs/v1); this module only loads it.
"""

from __future__ import annotations

from pathlib import Path

from syncer.catalog import Catalog

__all__ = ["CATALOG", "PATH"]

PATH = Path(__file__).with_name("catalog.json")
CATALOG = Catalog.load(PATH)
