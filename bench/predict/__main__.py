"""`python -m bench.predict` (see bench/predict/cli.py)."""
import sys

from bench.predict.cli import main

sys.exit(main())
