"""The result store: the row schema (one definition) and the parquet files rows land in."""
