"""MOCO's streams: the catalog generated from MOCO's OpenAPI description (``catalog.json``).

``tools/moco_catalog.py`` writes ``catalog.json`` from ``tools/moco-openapi.json``, MOCO's own
description of API v1 (https://docs.mocoapp.com/api/docs/v1); this module only loads it.

``SYNCER_MOCO_CATALOG`` names another catalog file to use instead: one regenerated from a newer
description of MOCO's API (a list MOCO added after this release), or with an entry added by
hand. Every part of syncer reads its streams from here (tables, views, sync, sweep, verify,
webhooks, ``syncer streams``), so a catalog entry is all a new stream needs.
"""

from __future__ import annotations

import os
from pathlib import Path

from syncer.catalog import Catalog
from syncer.errors import ConfigError

__all__ = ["CATALOG", "ENV", "PATH", "load"]

PATH = Path(__file__).with_name("catalog.json")
ENV = "SYNCER_MOCO_CATALOG"


def load(environ: os._Environ[str] | dict[str, str] = os.environ) -> Catalog:
    """The catalog the environment names (``SYNCER_MOCO_CATALOG``), or the one shipped."""
    named = environ.get(ENV)
    if not named:
        return Catalog.load(PATH)
    try:
        return Catalog.load(Path(named))
    except FileNotFoundError:
        raise ConfigError(f"{ENV} names {named}, which does not exist; fix or unset it") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{ENV} names {named}, which is not a syncer catalog ({type(exc).__name__}: {exc}); "
            "write it with python -m tools.moco_catalog, or unset it"
        ) from None


CATALOG = load()
