# Two commands do everything on a fresh Debian 12 / Python 3.11 machine:
#   make test   set up (once) and run the whole test suite
#   make demo   set up (once) and run the default policy through the simulated ROS graph
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wp-setup-stamp
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: setup test test-fast demo clean-venv help

help:
	@sed -n 's/^#  *//p' Makefile | head -3

$(STAMP): scripts/setup.sh requirements/base.txt requirements/train.txt requirements/dev.txt requirements/libero.txt \
          requirements/libero-nodeps.txt requirements/lock.txt wp_policy/setup.py wp_training/pyproject.toml \
          wp_policy/wp_policy/sim/libero_install.py
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

DEMO_ARGS ?=
demo: $(STAMP)
	$(PY) -m wp_policy.demo $(DEMO_ARGS)

clean-venv:
	rm -rf $(VENV)
