"""The warehouse tables of a MOCO source: one per stream, each record as MOCO served it.

The built-in source ``moco`` has them in schema ``moco``, created by the migrations; another
MOCO source gets the same tables in a schema named after it when it is first used.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, MetaData, Table

from syncer.sources.moco.api import STREAMS
from syncer.sources.moco.settings import SCHEMA
from syncer.store.tables import record_table

__all__ = ["SCHEMA", "tables"]


def tables(schema: str, on: MetaData) -> list[Table]:
    """The tables of one MOCO schema, declared on ``on``."""
    return [record_table(name, schema, BigInteger, on) for name in STREAMS]
