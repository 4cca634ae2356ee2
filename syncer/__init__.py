"""syncer: incremental MOCO and MOCA extraction into Postgres, reverse ETL into MoEngage."""

__version__ = "0.2.0"
