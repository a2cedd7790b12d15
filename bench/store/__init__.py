"""The result store: the row schema (one definition) and the parquet files rows land in.

    row.py        ResultRow and its Arrow schema, STATUSES (the one definition of the results columns)
    layout.py     the folder's files, atomic writes, up-front checks, stale-temp clean-up
    fragments.py  append: one fragment per cell attempt, safe for any number of writers
    read.py       read_history (every attempt) and read_results (latest per cell)
    compact.py    merge fragments into results.parquet while writers keep appending
    curves.py     CurveRow and the training curves' files (one row per cell x epoch)
    identity.py   CellIdentity: the columns that say which cell a row belongs to
    records.py    from_columns (rows from columns, unknown ones refused) and the Arrow schema of a row type
"""
