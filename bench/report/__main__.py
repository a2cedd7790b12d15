"""`python -m bench.report results/<grid>`: tables and figures again from the parquet."""
import sys

from bench.report.write import main

sys.exit(main(sys.argv))
