"""The warehouse's schemas as a whole: Alembic's target metadata.

The bookkeeping tables (schema ``syncer``) are declared in ``syncer.store.tables``; each source
type declares its own tables (``SourceType.tables``). The built-in types' tables live in the
schema named after the type (``moco``, ``moca``) and are created by the migrations, so they
are part of the metadata Alembic compares the database with.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from syncer import registry
from syncer.store import tables

__all__ = ["target_metadata"]


def target_metadata() -> MetaData:
    """The bookkeeping tables and the migrated schemas of every registered source type."""
    for kind in registry.source_types().values():
        if kind.migrated_schema is not None:
            declared = f"{kind.migrated_schema}."
            if not any(key.startswith(declared) for key in tables.metadata.tables):
                kind.tables(kind.migrated_schema, tables.metadata)
    return tables.metadata
