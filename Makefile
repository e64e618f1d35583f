# Two commands: `make book` builds the site, `make test` runs every test.
# Both create .venv and install requirements.txt + the utils package on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A stand-in for a fresh Colab runtime (only Colab's preinstalled packages + the test runner): nbval runs there.
COLAB_VENV := .venv-colab
COLAB_STAMP := $(COLAB_VENV)/.installed
# nbval workers: each notebook stays on one kernel (--dist loadscope)
NBVAL_WORKERS ?= 2

# Notebook outputs: nbstripout strips every output except in cells with keep_output: true (the checked
# cells, # NBVAL_CHECK_OUTPUT), keeping their execution counts (nbval compares only counted cells) and
# every cell id; .ci/notebook_outputs.py sets and checks the rules nbstripout cannot know.
NOTEBOOKS = $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/_build/*' | sort)
NBSTRIPOUT := $(VENV)/bin/nbstripout --keep-count --keep-id --extra-keys "metadata.toc metadata.varInspector"

# The site, executed and built by Jupyter Book with warnings as errors.
define build_site
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
endef

.PHONY: help install book test test-lint test-utils test-hygiene test-notebooks test-book test-gpu strip outputs clean

help:
	@echo "make book    build the static site into _build/html (sets everything up first)"
	@echo "make test    run every test: notebook hygiene, utils unit tests, every chapter in a Colab-like environment (nbval), site build"
	@echo "make strip   strip notebook outputs (checked cells keep theirs)"
	@echo "make outputs NB=path.ipynb   re-execute a notebook and store its checked outputs"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

$(COLAB_STAMP): .ci/colab-requirements.txt
	@test -x $(COLAB_VENV)/bin/python || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --disable-pip-version-check -q -r .ci/colab-requirements.txt
	@touch $(COLAB_STAMP)

book: install
	@$(PY) .ci/set_repository.py --check
	$(build_site)
	@echo ""
	@echo "The book is built: open $(CURDIR)/_build/html/index.html in a browser."

# The two notebook runs (nbval in the Colab-like environment, and the site build) each execute every notebook
# once, one kernel at a time; they run side by side, one core each, with one torch thread per kernel.
test: install test-hygiene test-lint test-utils
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target test-notebooks test-book NBVAL_WORKERS=1
	@echo "All tests passed."

test-lint: install
	$(PY) -m ruff check utils tests .ci

test-hygiene: install
	@echo "nbstripout --verify, notebook_outputs.py check: $(words $(NOTEBOOKS)) notebooks under book/"
	@$(NBSTRIPOUT) --verify $(NOTEBOOKS) || { echo "Notebooks with outputs or metadata to strip: run make strip" >&2; exit 1; }
	@$(PY) .ci/notebook_outputs.py check $(NOTEBOOKS)

test-utils: install
	$(PY) -m pytest tests -q -n $(NBVAL_WORKERS) --cov=utils --cov-report=term:skip-covered --cov-fail-under=90

# Every notebook of _toc.yml, each alone in an empty folder, in the Colab-like environment with the course
# package installed non-editable from a clean copy; nbval checks the stored micro-trace outputs.
test-notebooks: install $(COLAB_STAMP)
	$(PY) .ci/colab_run.py $(COLAB_VENV)/bin/python --workers $(NBVAL_WORKERS)

test-book: install
	rm -rf _build
	$(build_site)

# On a CUDA machine only (refuses elsewhere): the CUDA unit tests (every test with "cuda" in its name; they
# are skipped without a GPU), then every chapter of _toc.yml with its GPU sweeps, one at a time (one GPU, so
# no parallel kernels), each chapter writing its GPU reference utils/data/<chapter>_<gpu-slug>.json.
# Sized to finish within 9 minutes on an H100/H200; the slowest cells are listed at the end.
test-gpu: install
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || { \
	  echo "make test-gpu: no CUDA GPU here (torch $$($(PY) -c 'import torch; print(torch.__version__)'), torch.cuda.is_available() is False)." >&2; \
	  echo "Run it on a machine with an NVIDIA GPU and a CUDA build of torch; 'make test' covers the CPU." >&2; \
	  exit 1; }
	@$(PY) -c "from utils.env import describe_device as d; x = d('cuda'); print('test-gpu on', x.label, '· free', round(x.free_bytes / 2**30, 1), 'GiB · SDPA (fp16):', ', '.join(x.sdpa_backends))"
	$(PY) -m pytest tests -q -k cuda -p no:cacheprovider
	@notebooks="$$($(PY) .ci/toc_notebooks.py)" || exit 1; \
	COURSE_DEVICE=cuda COURSE_WRITE_REFERENCE=1 $(PY) -m pytest --nbval-lax -p no:cacheprovider -q \
	  --nbval-cell-timeout=300 --durations=15 $$notebooks
	@ls -1 utils/data/*.json

strip: install
	$(PY) .ci/notebook_outputs.py mark $(NOTEBOOKS)
	$(NBSTRIPOUT) $(NOTEBOOKS)

outputs: install
	@test -n "$(NB)" || { echo "usage: make outputs NB=book/.../chapter.ipynb" >&2; exit 2; }
	$(PY) .ci/notebook_outputs.py store $(NB)
	$(NBSTRIPOUT) $(NB)
	$(PY) .ci/notebook_outputs.py check $(NB)

clean:
	rm -rf _build .pytest_cache .hypothesis
