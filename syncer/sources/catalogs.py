"""What a source type with a stream catalog derives from it: its tables and typed views.

A catalog-driven source type (MOCO; a plugin's) passes these as its ``SourceType.tables`` and
``SourceType.views``; ``syncer.warehouse`` provisions them in each source's schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import MetaData, Table

from syncer.catalog import Catalog
from syncer.sources.views import stream_view_sql
from syncer.store.tables import stream_table

__all__ = ["catalog_tables", "catalog_views"]


def catalog_tables(catalog: Catalog) -> Callable[[str, MetaData], Sequence[Table]]:
    """``tables(schema, metadata)``: one table per stream of ``catalog``."""

    def tables(schema: str, on: MetaData) -> list[Table]:
        return [stream_table(stream, schema, on) for stream in catalog]

    return tables


def catalog_views(catalog: Catalog) -> Callable[[str, str], Sequence[str]]:
    """``views(schema, view_schema)``: one typed view per stream of ``catalog``."""

    def views(raw_schema: str, view_schema: str) -> list[str]:
        return [stream_view_sql(view_schema, raw_schema, stream) for stream in catalog]

    return views
