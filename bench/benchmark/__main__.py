"""`python -m bench.benchmark` (what `make bench` runs)."""
import sys

from bench.benchmark.ratios import main

sys.exit(main())
