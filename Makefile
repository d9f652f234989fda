# irstd_ros developer entry points. Everything runs in the project's venv (.venv), which
# `make setup` creates and keeps up to date (a no-op, well under a second, when current).
#
#   make setup      venv + pinned requirements + ROS 2 (PyPI wheels) + built interfaces
#   make demo       the demo (python -m irstd_ros.tools.demo)
#   make test       ruff + import contract + mypy + pytest, CPU-only, without slow tests
#   make test-all   the same, slow tests included (still CPU-only)
#   make test-gpu   pytest of the gpu/tensorrt tests (on a machine with a GPU)
#   make test-install  colcon build of the full package into a temporary install space,
#                   and its installed irstd_node run (about a minute; CI runs it)
#   make bench      irstd bench
#   make lint       ruff check + import contract + mypy
#   make freeze     re-pin requirements/constraints.txt from the venv
#   make clean      build outputs and caches (keeps .venv); `make distclean` also .venv
#
# Variables: ARGS (extra arguments for demo/bench), PYTEST_ARGS (extra pytest arguments),
#            IRSTD_VENV (venv path, default .venv).

SHELL := /bin/bash
.DEFAULT_GOAL := help

IRSTD_VENV ?= .venv
export IRSTD_VENV
PY := $(IRSTD_VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
# Set by a Python process of some venv for its children: it would stop this venv's
# bootstrap (LD_LIBRARY_PATH for the ROS libraries) in the commands below.
unexport _ROS_WHEELS_BOOTSTRAP_COMPLETE

IMPORTS_LOG := $(IRSTD_VENV)/.lint-imports.log
MARK_DEFAULT := not gpu and not tensorrt and not slow
MARK_ALL := not gpu and not tensorrt

.PHONY: help setup demo test test-all test-gpu test-install bench lint freeze clean distclean

help:
	@sed -n '/^#/!q; s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(PY) -m irstd_ros.tools.demo $(ARGS)

# ruff, the import contract (lint-imports: the layers in pyproject.toml), mypy (strict on
# core, models and inference; config in pyproject.toml) and pytest all run; the target
# fails if any failed. pytest's exit code 5 ("no tests collected") is not
# a failure.
define run_tests
	@lint=0; $(IRSTD_VENV)/bin/ruff check . || lint=$$?; \
	layers=0; $(IRSTD_VENV)/bin/lint-imports --no-cache > $(IMPORTS_LOG) 2>&1 || { layers=$$?; cat $(IMPORTS_LOG); }; \
	types=0; $(IRSTD_VENV)/bin/mypy || types=$$?; \
	rc=0; $(PY) -m pytest -m "$(1)" $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; \
	if [ $$lint -ne 0 ]; then echo "ruff check failed"; fi; \
	if [ $$layers -ne 0 ]; then echo "import contract (lint-imports) broken"; fi; \
	if [ $$types -ne 0 ]; then echo "mypy failed"; fi; \
	[ $$lint -eq 0 ] && [ $$layers -eq 0 ] && [ $$types -eq 0 ] && [ $$rc -eq 0 ]
endef

test: setup
	$(call run_tests,$(MARK_DEFAULT))

test-all: setup
	$(call run_tests,$(MARK_ALL))

test-gpu: setup
	$(PY) -m pytest -m "gpu or tensorrt" $(PYTEST_ARGS)

test-install: setup
	$(PY) -m pytest test/test_install_space.py $(PYTEST_ARGS)

bench: setup
	$(IRSTD_VENV)/bin/irstd bench $(ARGS)

lint: setup
	$(IRSTD_VENV)/bin/ruff check .
	$(IRSTD_VENV)/bin/lint-imports --no-cache
	$(IRSTD_VENV)/bin/mypy

freeze:
	$(PY) scripts/freeze_constraints.py > requirements/constraints.txt

clean:
	rm -rf .underlay build install log .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(IRSTD_VENV)
