# Two commands: `make book` builds the site, `make test` runs every test.
# Both create .venv and install requirements.txt (at the versions of requirements.lock) + the utils package on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A stand-in for a fresh Colab runtime (only Colab's preinstalled packages + the test runner): nbval runs there.
COLAB_VENV := .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_STAMP := $(COLAB_VENV)/.installed
# nbval workers: each notebook stays on one kernel (--dist loadscope)
NBVAL_WORKERS ?= 2

# Installing: uv installs everything (seconds, where pip takes minutes), at the versions of requirements.lock,
# into both environments from one cache. torch alone is fetched by pip (pip download, into $(TORCH_DIR)),
# because pip finds the CPU build this machine keeps on disk (pip.conf's find-links), where uv would
# resolve torch on PyPI and download a CUDA build of several GB; uv then installs that wheel file.
LOCK := requirements.lock
UV := $(VENV)/bin/uv
UV_INSTALL := $(UV) pip install -q
TORCH_DIR := $(VENV)/torch-wheel
# Nothing is byte-compiled ahead (uv's default): Python compiles what it imports, once, and caches it ...
# so let it cache, or every test process and kernel would compile torch anew.
unexport PYTHONDONTWRITEBYTECODE

# Notebook outputs: nbstripout strips every output except in cells with keep_output: true (the checked
# cells, tagged nbval-check-output), keeping their execution counts (nbval compares only counted cells) and
# every cell id; .ci/notebook_outputs.py sets and checks the rules nbstripout cannot know.
NOTEBOOKS = $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/_build/*' | sort)
NBSTRIPOUT := $(VENV)/bin/nbstripout --keep-count --keep-id --extra-keys "metadata.toc metadata.varInspector"

# The site, executed and built by Jupyter Book with warnings as errors.
define build_site
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
endef

.PHONY: help install book student grade test test-student test-student-lane test-book-lane student-site check-student test-lint test-utils test-hygiene test-notebooks test-book test-site test-browser test-gpu strip outputs lock clean

help:
	@echo "make install create .venv (requirements.txt at the versions of requirements.lock, utils editable)"
	@echo "make book    build the static site into _build/html (sets everything up first)"
	@echo "make student the student edition: notebooks without solutions in _build/student, its site in _build/student-html"
	@echo "make grade CHAPTER=02_receptive_fields SUBMISSIONS=folder   grade a folder of submitted notebooks (grades.csv)"
	@echo "make test    run every test: notebook hygiene, lint, utils unit tests and exercise rules, every chapter in a Colab-like environment (nbval), site build and site check, student edition"
	@echo "make strip   strip notebook outputs (checked cells keep theirs)"
	@echo "make outputs NB=path.ipynb   re-execute a notebook and store its checked outputs"
	@echo "make lock    re-pin requirements.lock to the newest releases requirements.txt allows"

# .venv: pip installs uv and fetches the torch wheel, then uv installs that wheel, everything else, the package.
$(VENV)/.bootstrap: $(LOCK) requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --no-compile uv -c requirements.txt -c $(LOCK)
	rm -rf $(TORCH_DIR)
	$(PY) -m pip download --disable-pip-version-check -q --no-deps -d $(TORCH_DIR) torch -c requirements.txt -c $(LOCK)
	@touch $@

$(STAMP): $(VENV)/.bootstrap requirements.txt pyproject.toml
	$(UV_INSTALL) --python $(PY) $(TORCH_DIR)/torch-*.whl -r requirements.txt -c $(LOCK)
	$(UV_INSTALL) --python $(PY) --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP)

# .venv-colab: created while .venv bootstraps, then filled by .venv's uv (the same torch wheel, from uv's cache).
# The course package is installed later, from a clean copy, by .ci/colab_run.py.
$(COLAB_VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(COLAB_VENV)

$(COLAB_STAMP): $(COLAB_VENV)/pyvenv.cfg $(VENV)/.bootstrap .ci/colab-requirements.txt
	$(UV_INSTALL) --python $(COLAB_PY) $(TORCH_DIR)/torch-*.whl -r .ci/colab-requirements.txt -c $(LOCK)
	@touch $@

# requirements.lock from a fresh environment built from requirements.txt (and the Colab pins) alone.
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && set -x && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --disable-pip-version-check -q --no-compile uv -c requirements.txt && \
	"$$tmp/venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps -d "$$tmp/wheel" torch \
	  -c requirements.txt -c .ci/colab-requirements.txt && \
	"$$tmp/venv/bin/uv" pip install -q --python "$$tmp/venv/bin/python" "$$tmp"/wheel/torch-*.whl \
	  -r requirements.txt -c .ci/colab-requirements.txt && \
	$(PYTHON) .ci/lock.py write "$$tmp/venv/bin/python"

# The student edition (CONTRIBUTING.md): otter assign writes each chapter without its solutions, with a check
# cell per question, and its autograder (_build/student); the student site is the book with those notebooks,
# showing the outputs of the instructor build's executed chapters (built first when missing).
student: install
	@test -d _build/jupyter_execute || $(MAKE) --no-print-directory book
	$(PY) .ci/exercises.py student
	@$(MAKE) --no-print-directory student-site
	@echo ""
	@echo "The student edition: notebooks in $(CURDIR)/_build/student, site in $(CURDIR)/_build/student-html/index.html"

# The student site alone, from the notebooks in _build/student and the executed chapters of the site build.
STUDENT_SITE_WAIT ?= 0
STUDENT_SITE_EXECUTED ?=
student-site: install
	$(PY) .ci/exercises.py site --wait $(STUDENT_SITE_WAIT) $(if $(STUDENT_SITE_EXECUTED),--executed $(STUDENT_SITE_EXECUTED))
	rm -rf _build/student-site
	$(VENV)/bin/jupyter-book build _build/student-src -W -n --keep-going --path-output _build/student-site
	rm -rf _build/student-html && mv _build/student-site/_build/html _build/student-html && rm -rf _build/student-site

# Grade a folder of submissions of one chapter with otter (no Docker): one row per submission in grades.csv.
grade: install
	@test -n "$(CHAPTER)" -a -n "$(SUBMISSIONS)" || { echo "usage: make grade CHAPTER=02_receptive_fields SUBMISSIONS=folder" >&2; exit 2; }
	@test -f _build/student/autograder/$(CHAPTER).zip || $(PY) .ci/exercises.py student
	$(PY) .ci/exercises.py grade $(CHAPTER) $(SUBMISSIONS)

book: install
	@$(PY) .ci/set_repository.py --check
	$(build_site)
	@echo ""
	@echo "The book is built: open $(CURDIR)/_build/html/index.html in a browser."

# Both environments are installed side by side; then the quick checks; then every chapter runs once, under
# nbval in the Colab-like environment, on both cores (one torch thread per kernel), and what nbval ran is
# kept (_build/executed); then, side by side, the instructor site and the student edition are built from
# those executed chapters (no second execution) and checked.
EXECUTED := _build/executed
test:
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(STAMP) $(COLAB_STAMP)
	@$(MAKE) --no-print-directory test-hygiene test-lint test-utils
	rm -rf _build
	@$(MAKE) --no-print-directory test-notebooks NBVAL_WORKERS=2 NBVAL_EXECUTED=$(EXECUTED)
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target test-book-lane test-student-lane
	@echo "All tests passed."

# The two lanes after nbval, one core each. One: the instructor site, built from the executed chapters and
# checked. Two: the student notebooks (otter assign, each stub run against its public tests), the student
# site from them with the executed chapters' outputs, and its checks (no leak, the site rules).
test-book-lane:
	@$(MAKE) --no-print-directory test-book
	@$(MAKE) --no-print-directory test-site

test-student-lane:
	$(PY) .ci/exercises.py student
	@$(MAKE) --no-print-directory student-site STUDENT_SITE_EXECUTED=$(EXECUTED)
	@$(MAKE) --no-print-directory check-student

# ruff on the package, the tests and the CI scripts; pyflakes (F) on the notebooks' code cells. F821 is off there:
# two chapters free memory with `del` after a closure that used the names, which pyflakes misreads.
test-lint: install
	$(PY) -m ruff check utils tests .ci
	$(PY) -m ruff check book --select F,E9 --ignore F821

test-hygiene: install
	$(PY) .ci/lock.py check
	@echo "nbstripout --verify, notebook_outputs.py check: $(words $(NOTEBOOKS)) notebooks under book/"
	@$(NBSTRIPOUT) --verify $(NOTEBOOKS) || { echo "Notebooks with outputs or metadata to strip: run make strip" >&2; exit 1; }
	@$(PY) .ci/notebook_outputs.py check $(NOTEBOOKS)

# One torch thread per xdist worker: two workers of two threads each on two cores run a third slower.
test-utils: install
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -n $(NBVAL_WORKERS) --cov=utils --cov-report=term:skip-covered --cov-fail-under=90

# Every notebook of _toc.yml, each alone in an empty folder, in the Colab-like environment with the course
# package installed non-editable from a clean copy; nbval checks the stored micro-trace outputs. With
# NBVAL_EXECUTED=dir it also keeps every chapter as it ran, outputs and glued numbers included, in dir.
NBVAL_EXECUTED ?=
test-notebooks: install $(COLAB_STAMP)
	$(PY) .ci/colab_run.py $(COLAB_VENV)/bin/python --workers $(NBVAL_WORKERS) $(if $(NBVAL_EXECUTED),--executed $(NBVAL_EXECUTED))

# The site make test checks: built from the chapters nbval executed (.ci/site_source.py; run first when
# missing), with the configuration of make book but no execution, into _build/html.
test-book: install
	@test -d $(EXECUTED) || $(MAKE) --no-print-directory test-notebooks NBVAL_EXECUTED=$(EXECUTED)
	rm -rf _build/html _build/site-src _build/site-build
	$(PY) .ci/site_source.py $(EXECUTED) _build/site-src
	$(VENV)/bin/jupyter-book build _build/site-src -W -n --keep-going --path-output _build/site-build
	mv _build/site-build/_build/html _build/html && rm -rf _build/site-build

# The built site as a reader gets it, parsed without a browser (after test-book or make book): no remote
# loads, no unrendered MyST, no error in an output, alt text on every image, figures legible at the column
# width and linked to their full-size file, no bookkeeping in visible code, no maintainer text, a static
# figure before every widget. `make test-site SITE_RULES="image-alt figure-legibility"` runs some rules only.
SITE_RULES ?=
# The student edition, built from the site test-book built: no solution, hidden test or model answer may
# appear in its notebooks or its site; the site rules hold there too.
test-student: install
	@$(MAKE) --no-print-directory student
	@$(MAKE) --no-print-directory check-student

check-student: install
	$(PY) .ci/exercises.py leaks _build/student _build/student-html
	$(PY) .ci/check_site.py _build/student-html $(foreach r,$(SITE_RULES),--rule $(r))

test-site: install
	$(PY) .ci/check_site.py _build/html $(foreach r,$(SITE_RULES),--rule $(r))

# Optional, not part of make test: every page in headless Chromium (Debian: apt-get install chromium), console
# errors, 404s and remote requests fail; phone and desktop screenshots go to _build/screenshots/.
test-browser: install
	@test -x /usr/bin/chromium || { echo "make test-browser: needs /usr/bin/chromium (apt-get install chromium)" >&2; exit 1; }
	@$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check -q playwright
	$(PY) .ci/browser_check.py _build/html

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
