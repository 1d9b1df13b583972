# Two commands: `make demo` and `make test`. Both create .venv if missing and install only when
# pyproject.toml changed (a stamp named after its hash), so a second call does not reinstall.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
RUN_STAMP := $(VENV)/.install-stamp-run-$(HASH)
TEST_STAMP := $(VENV)/.install-stamp-test-$(HASH)
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# quiet, deterministic Ray output; never attach to a stale local cluster
export RAY_AIR_NEW_OUTPUT ?= 0

.PHONY: demo test test-fast test-torch-min lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(PY)
	$(PIP) -e .
	rm -f $(VENV)/.install-stamp-run-*
	touch $@

# torchattacks is the independent reference for the attack tests; --no-deps because its declared
# dependencies would fight the torch pin (scipy, which it needs, comes with the test extra).
$(TEST_STAMP): $(RUN_STAMP)
	$(PIP) -e '.[test,eval]'
	$(PIP) --no-deps torchattacks==3.5.1
	rm -f $(VENV)/.install-stamp-test-*
	touch $@

install: $(RUN_STAMP)

demo: $(RUN_STAMP)
	$(VENV)/bin/dnr-sweep run search_spaces/digits_quick.yaml --storage runs

test: $(TEST_STAMP)
	$(PY) -m pytest -q
	bash tests/torch_min.sh

# the core's tests on the lower end of the supported torch range (torch 2.11, Python 3.12, no Ray): see the script
test-torch-min:
	bash tests/torch_min.sh

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .venv-torch-min runs .pytest_cache
