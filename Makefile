# Developer and CI entry points. Only python3 (3.11-3.13) must be installed: every target that
# needs the package bootstraps .venv/ first. The test tiers (README.md, "Tests"):
#
#   make check   the quick loop: ruff, mypy, then pytest -m "not slow and not perf" -n auto --dist worksteal
#                (one pytest process per CPU, as make test; skips the image install replay, the benchmark
#                smoke run, source-faker, PyAirbyte, the soak, the measurements, the fault matrix, SIGTERM
#                after an answer and the other slow tests)
#   make test    ruff, mypy, then pytest -m "not soak and not perf and not tools" -n auto --dist worksteal:
#                every test but the soak, the measurements and the real Airbyte tools, on one pytest
#                process per CPU (pytest-xdist; PYTEST_WORKERS below); run it before you push (under 10 minutes)
#   make soak    the soak alone (marker soak, also marked slow; kept out of make test for its 10-minute
#                budget): the fault matrix's (test_fault_matrix.py), each fatal stop 50 times
#                (test_orderly_stop.py) and SIGTERM after an answer 30 times per command
#                (test_sigterm_after_answer.py), all in integration_tests/
#   make perf    the measurements alone (marker perf: memory on 100k-200k rows, time per row/lookup; machine-dependent)
#                and the benchmark driver's smoke run
#   make tools   the tests that build venvs and drive what is installed there (marker tools: the replay of
#                the Dockerfile's install, source-faker, PyAirbyte; the first run builds .venv-faker and
#                .venv-pyairbyte)
#   .ci/run      CI: make test, then make soak, then make perf, then make tools
#   make demo    end-to-end demo against the local CrowdTwist sandbox (scripts/demo.py)
#   make bench   benchmark driver; pass options with BENCH_ARGS="..."
#   make lint / make typecheck / make clean / make distclean

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Written after a successful install. The venv is re-installed when it is missing or when the
# packaging files are newer than this stamp (a new dependency, a new console script).
STAMP  := $(VENV)/.installed
# source-faker's and PyAirbyte's own venvs (they pin other airbyte-cdk versions), built and reused by
# integration_tests/tool_venv.py for test_source_faker.py and test_pyairbyte.py.
FAKER_VENV := .venv-faker
PYAIRBYTE_VENV := .venv-pyairbyte
BENCH_ARGS ?=
# make test's pytest processes (pytest-xdist's -n): auto is one per CPU. Most of the suite's time is
# connector processes starting (importing airbyte-cdk) and waits on the sandbox, so a second process
# roughly halves it on 2 cores. worksteal: a worker that runs out takes queued tests from the other, so
# the slow integration tests do not leave one worker running alone at the end. PYTEST_WORKERS=0 runs
# everything in one process, as before.
PYTEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help venv test check soak perf tools lint typecheck pytest pytest-quick demo bench clean distclean

help:
	@echo "make demo | make test | make check | make soak | make perf | make bench [BENCH_ARGS=...] | make lint | make typecheck | make clean | make distclean"

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml
	@# A venv copied or moved from elsewhere has a dead interpreter link: rebuild it from scratch.
	@if ! $(BIN)/python -c "" >/dev/null 2>&1; then \
		echo "creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv --clear $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -m "not soak and not perf and not tools" -n $(PYTEST_WORKERS) --dist worksteal

pytest-quick: $(STAMP)
	$(BIN)/pytest -m "not slow and not perf" -n $(PYTEST_WORKERS) --dist worksteal

soak: $(STAMP)
	$(BIN)/pytest -m soak

perf: $(STAMP)
	$(BIN)/pytest -m perf

tools: $(STAMP)
	$(BIN)/pytest -m tools

test: lint typecheck pytest

check: lint typecheck pytest-quick

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .bench *.egg-info
	find . -path ./$(VENV) -prune -o -path ./$(FAKER_VENV) -prune -o -path ./$(PYAIRBYTE_VENV) -prune \
		-o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(FAKER_VENV) $(FAKER_VENV).lock $(PYAIRBYTE_VENV) $(PYAIRBYTE_VENV).lock
