# cmrlib: `make test` (CI), `make reproduce` (every notebook, default profile), `make bench`, `make lab`.
# Installs come from requirements.lock (every package at the version CI passed with); `make lock` regenerates it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
LATEST ?= .venv-latest
PROFILE ?= default
# Real data (ACDC, UK-Biobank-style LAX, DICOM sample) beside the project, when present.
CMRLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export CMRLIB_DATA
PYTEST_ARGS ?=
NB_STRIP_KEYS := metadata.language_info

.PHONY: install test test-latest lock reproduce release smoke bench peer paper-check lab clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the locked versions, then cmrlib itself on top of them (pip checks the two agree)
	$(BIN)/python -m pip install --quiet -r $(LOCK) -e ".[dev]"
	# notebooks are committed without outputs: a git filter strips them on `git add`, whatever was saved
	# (and the Python version JupyterLab writes into metadata.language_info, so opening a notebook changes nothing)
	if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/nbstripout --install --attributes .gitattributes && \
	  git config filter.nbstripout.extrakeys "$(NB_STRIP_KEYS)"; fi
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# the newest versions pyproject.toml allows, no lock, in a venv of their own: does an upgrade keep the tests green?
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet -e ".[dev]"
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# requirements.lock from pyproject.toml: the newest versions it allows, for every platform and Python >= 3.11
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --upgrade --quiet \
	  --custom-compile-command "make lock" -o $(LOCK)

reproduce: $(STAMP)
	$(BIN)/cmrlib run --profile $(PROFILE) --figures figures
	# docs/results.md is the default run's report (notebook 09), never typed by hand
	if [ "$(PROFILE)" = default ]; then $(BIN)/cmrlib report runs/default --readme docs/results.md; fi

# the release (docs/development.md): the default run, then the README's results table, docs/running.md's minutes and
# the pages' run-table blocks from it, the drift check of every generated block, and the numbers of the notebook
# pages' prose that the run's tables do not hold (to read)
TABLE_PAGES = $(shell grep -l '<!-- run-table' docs/notebooks/*.md)
release:
	$(MAKE) reproduce PROFILE=default
	$(BIN)/cmrlib report runs/default --readme README.md docs/running.md $(TABLE_PAGES)
	$(BIN)/cmrlib report runs/default --check README.md docs/results.md docs/running.md $(TABLE_PAGES)
	-$(BIN)/cmrlib report runs/default --trace docs/notebooks/0[0-8]_*.md

smoke: $(STAMP)
	$(BIN)/cmrlib run --profile smoke

bench: $(STAMP)
	$(BIN)/python bench/run.py

# the peer segmenter beside cmrlib's (bench/peer_segmentation.py): the `peer` extra, then myopari's wheel alone
peer: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps "myopari==0.1.6"
	$(BIN)/python -m pip install --quiet -e ".[peer]"

# the paper profile on this CPU before anyone rents a GPU (bench/paper_check.py: the papers' networks, sizes and
# batches, cohort and schedules cut): every notebook, every method's fit in one process and in two, and the cost
# of the full schedules projected to a GPU (bench/paper_cost.py)
paper-check: $(STAMP)
	$(BIN)/python bench/paper_check.py runs/paper-check
	$(BIN)/python bench/paper_check.py runs/paper-check --fits
	$(BIN)/python bench/paper_cost.py --json runs/paper-check/paper_cost.json

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-runs:
	rm -rf runs/
