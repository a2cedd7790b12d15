"""Run a benchmark grid and print the speedup table.

    python run_matrix.py --grid speedup.yaml [--data-root DIR] [--dry-run] [--only method=scpl ...]

Bad input (unknown grid, key, method, model, dataset, impossible device split,
a batch too small for a contrastive loss) exits with code 2 and one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    from bench.grid.cells import shipped_grids

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", required=True,
                        help=f"a shipped grid by name ({', '.join(shipped_grids())}) or a YAML path")
    parser.add_argument("--data-root", default=None, help="folder with real datasets (else $SCPLBENCH_DATA, ./datasets)")
    parser.add_argument("--results", default=None, help="results folder (default results/<grid>)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=VALUE|ID",
                        help="run only cells whose KEY equals VALUE (repeatable), or whose id starts with ID")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="override a grid value (repeatable), validated like the file: "
                             "--set settings.steps=2 --set axes.batch_size=[32]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from bench.run.cli import add_run_arguments

    add_run_arguments(parser)  # --retry, --launcher, --no-wait, --slurm-*
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from bench.grid import GridError, load_grid
    from bench.grid.data_files import check_data_files
    from bench.grid.filters import select_cells
    from bench.run.runner import run_grid

    try:
        grid = load_grid(args.grid, overrides=args.overrides)
        cells = select_cells(grid.cells, args.only)
    except GridError as exc:
        print("\n".join(f"error: {line}" for line in exc.problems), file=sys.stderr)
        return 2
    if not cells:
        print(f"error: --only {' '.join(args.only)} matches none of the {len(grid.cells)} cells of {grid.name}",
              file=sys.stderr)
        return 2
    from bench.execution.capacity import check_device_counts

    # on a GPU machine: refused before the first cell, not cell by cell; Slurm jobs run on other machines
    too_many = None if args.launcher == "slurm" else check_device_counts(cells)
    if too_many:
        print(f"error: {too_many}", file=sys.stderr)
        return 2
    results_dir = Path(args.results) if args.results else REPO_ROOT / "results" / grid.name
    from bench.store.layout import StoreError

    if args.dry_run:
        from bench.run.dry_run import dry_run_text

        try:
            print(dry_run_text(cells, results_dir, retry=args.retry))
        except StoreError as exc:  # e.g. a corrupt results file: named, with what to do
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        check_data_files(cells, args.data_root)
    except GridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bench.run.cli import check_cluster_shapes, launcher_from_args
    from bench.run.signals import Interrupted
    from bench.store.layout import check_results_dir

    try:
        launcher = launcher_from_args(args)
        check_cluster_shapes(cells, args)  # nodes x GPUs per node each cell's job would ask for
        check_results_dir(results_dir)  # a file or read-only path: refused before any cell runs
    except (ValueError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_grid(grid, results_dir, cells, args.data_root, progress=not args.no_progress,
                           retry=args.retry, launcher=launcher)
    except StoreError as exc:  # results written by someone else that cannot be read: nothing measured is lost
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"{grid.name}: {exc}; finished cells are stored, rerun the same command to continue", file=sys.stderr)
        return exc.exit_code
    print(f"{grid.name}: ran {summary.ran} cells, skipped {summary.skipped} already done; statuses {summary.statuses}")
    if summary.pending:
        print(f"{summary.pending} jobs still running: rerun the same command to wait for them and report")
    print(summary.report)
    if summary.failures:
        print(f"{len(summary.failures)} of {len(cells)} cells did not finish ok:\n{summary.failure_text()}")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
