"""The result store: the row schema (one definition) and the parquet files rows land in.

    row.py        ResultRow and its Arrow schema, STATUSES
    layout.py     the folder's files, atomic writes, up-front checks, stale-temp clean-up
    fragments.py  append: one fragment per cell attempt, safe for any number of writers
    read.py       read_history (every attempt) and read_results (latest per cell)
    compact.py    merge fragments into results.parquet while writers keep appending
    parquet.py    the public names callers import
"""
