"""`python -m bench.predict results/<grid> --devices 2 4 8 [--link NAME|FILE] [--balance all|auto|even|1,3] [--timelines]`
and `python -m bench.predict --probe [--out FILE]`.

Bad input (no results folder, no one-device cells, an unknown link, a bad
balance) exits with code 2 and one line, as run_matrix.py does.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from .links import DEFAULT_LINK, LinkError, load_link, shipped_links, write_link

__all__ = ["main"]


def _balance(text: str) -> object:
    if text in ("all", "auto", "even"):
        return text
    try:
        parts = [int(p) for p in text.replace("-", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"balance {text!r}: use all, auto, even or stages per device "
                                         "such as 1,3") from None
    if min(parts) < 1:
        raise argparse.ArgumentTypeError(f"balance {text!r}: every device needs at least one stage")
    return parts


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the project's rule for bad input), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"bench.predict: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m bench.predict", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", help="a results folder, results/<grid>")
    parser.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8], help="device counts to predict")
    parser.add_argument("--link", default=DEFAULT_LINK,
                        help=f"a shipped link ({', '.join(shipped_links())}) or a .yaml link file")
    parser.add_argument("--balance", type=_balance, default="all",
                        help="all (every contiguous split, the best marked), auto, even, or e.g. 1,3")
    parser.add_argument("--timelines", action="store_true",
                        help="also draw each method's predicted timeline per batch and device count (plots/<grid>/)")
    parser.add_argument("--probe", action="store_true", help="measure this machine's hand-over, write a link file")
    parser.add_argument("--out", help="--probe: the link file to write (default results/links/<name>.yaml)")
    return parser


def _probe(out: Optional[str]) -> int:
    from .probe import probe_link

    link = probe_link()
    path = write_link(link, Path(out) if out else Path("results") / "links" / f"{link.name}.yaml")
    print(f"{link.name}: latency {link.latency_s * 1e6:.1f} µs, {link.bandwidth_bytes_s / 1e9:.2f} GB/s"
          f"{link.all_reduce_note()} -> {path}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.probe:
        return _probe(args.out)
    if not args.results:
        print("bench.predict: give a results folder (results/<grid>) or --probe", file=sys.stderr)
        return 2
    if any(n < 1 for n in args.devices):
        print(f"bench.predict: --devices {args.devices}: every count must be >= 1", file=sys.stderr)
        return 2
    from .predictor import PredictError
    from .run import predict_folder

    try:
        link = load_link(args.link)
        start = time.perf_counter()
        paths = predict_folder(Path(args.results), args.devices, link, args.balance, args.timelines)
    except (LinkError, PredictError) as exc:
        print(f"bench.predict: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    print(f"predicted in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return 0
