"""The warehouse and the tool's bookkeeping in Postgres."""
