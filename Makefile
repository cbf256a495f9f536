# cmrlib: `make test` (CI), `make reproduce` (every notebook, default profile), `make bench`, `make lab`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= default
# Real data (ACDC, UK-Biobank-style LAX, DICOM sample) beside the project, when present.
CMRLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export CMRLIB_DATA
PYTEST_ARGS ?=
NB_STRIP_KEYS := metadata.language_info

.PHONY: install test reproduce smoke bench lab clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	# notebooks are committed without outputs: a git filter strips them on `git add`, whatever was saved
	# (and the Python version JupyterLab writes into metadata.language_info, so opening a notebook changes nothing)
	if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/nbstripout --install --attributes .gitattributes && \
	  git config filter.nbstripout.extrakeys "$(NB_STRIP_KEYS)"; fi
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/cmrlib run --profile $(PROFILE) --figures figures
	# the README's results section is the default run's report (notebook 09), never typed by hand
	if [ "$(PROFILE)" = default ]; then $(BIN)/cmrlib report runs/default --readme README.md; fi

smoke: $(STAMP)
	$(BIN)/cmrlib run --profile smoke

bench: $(STAMP)
	$(BIN)/python bench/run.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-runs:
	rm -rf runs/
