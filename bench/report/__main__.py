"""`python -m bench.report results/<grid>`: tables and figures again from the parquet."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Write the tables (markdown, CSV), figures and report.html of a results folder "
                    "from its parquet, e.g. python -m bench.report results/speedup",
    )
    parser.add_argument("results", type=Path, help="a results folder written by run_matrix.py (results/<grid>)")
    args = parser.parse_args(argv)
    from bench.report.write import main as write_main

    return write_main(["bench.report", str(args.results)])


if __name__ == "__main__":
    sys.exit(main())
