"""Reports: tables (markdown/CSV) and figures regenerated from a results folder's parquet.

    python -m bench.report results/<grid>
"""
