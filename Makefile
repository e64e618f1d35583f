# Two commands: `make book` builds the site, `make test` runs every test.
# Both create .venv and install requirements.txt + the utils package on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# nbval workers: each notebook stays on one kernel (--dist loadscope)
NBVAL_WORKERS ?= 2

.PHONY: help install book test test-utils test-hygiene test-notebooks test-book strip outputs clean

help:
	@echo "make book    build the static site into _build/html (sets everything up first)"
	@echo "make test    run every test: utils unit tests, notebook hygiene, nbval over every chapter, site build"
	@echo "make strip   strip notebook outputs (checked cells keep theirs)"
	@echo "make outputs NB=path.ipynb   re-execute a notebook and store its checked outputs"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

book: install
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo ""
	@echo "The book is built: open $(CURDIR)/_build/html/index.html in a browser."

test: install test-hygiene test-utils test-notebooks test-book
	@echo "All tests passed."

test-hygiene: install
	$(PY) .ci/notebook_outputs.py verify

test-utils: install
	$(PY) -m pytest tests -q -n $(NBVAL_WORKERS)

test-notebooks: install
	@notebooks="$$($(PY) .ci/toc_notebooks.py)" || exit 1; \
	$(PY) -m pytest --nbval-lax -p no:cacheprovider -n $(NBVAL_WORKERS) --dist loadscope -q $$notebooks

test-book: install
	rm -rf _build
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

strip: install
	$(PY) .ci/notebook_outputs.py strip

outputs: install
	$(PY) .ci/notebook_outputs.py store $(NB)

clean:
	rm -rf _build .pytest_cache .hypothesis
