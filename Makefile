PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install check test bench clean

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The main job: the conformance check of the built-in backends.
check: $(STAMP)
	$(VENV)/bin/bptt-suite check --profile ci

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n auto

# Benchmarks (airspeed velocity, see docs/benchmarks.md): a quick run of the whole
# suite in .venv at the working tree (under a minute); BENCH=regex selects benchmarks,
# BPTT_BENCH_MATRIX=full runs all four sizes.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(VENV)/bin/asv machine --yes > /dev/null
	$(VENV)/bin/asv run --python=same --quick --show-stderr $(if $(BENCH),--bench '$(BENCH)')

clean:
	rm -rf $(VENV) build *.egg-info .hypothesis
