"""`python -m bench.store compact results/<grid>`: merge a folder's fragments into results.parquet.

Safe while runners are still appending (only merged fragments are deleted). Exits 2 with one
line when the folder cannot be read or written.
"""
from __future__ import annotations

import argparse
import sys

from bench.store.compact import compact
from bench.store.layout import StoreError, remove_stale_temps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    compact_cmd = commands.add_parser("compact", help="merge rows/*.parquet into results.parquet")
    compact_cmd.add_argument("results_dir", help="a results folder, e.g. results/smoke")
    args = parser.parse_args(argv)
    from pathlib import Path

    folder = Path(args.results_dir)
    if not folder.is_dir():
        print(f"error: {folder} is not a results folder", file=sys.stderr)
        return 2
    try:
        remove_stale_temps(folder)
        done = compact(folder)
    except (StoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{done.path}: merged {done.merged_fragments} fragments, {done.rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
