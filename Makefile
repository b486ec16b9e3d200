# The two commands: `make demo` (the main job, offline) and `make test` (the whole suite);
# `make test-fast` skips the tests marked slow.
# All of them build the virtualenv from the hashed lock file first, on a fresh machine too.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/deepcurator demo $(DEMO_ARGS)

# Lint and type errors fail the build: `make test` runs `make lint` first.
lint: setup
	$(VENV)/bin/ruff check deepcurator tests bench
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite without the tests marked slow (end-to-end runs, kills, the demo, training on audio):
# for the edit-test loop; `make test` runs everything.
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Re-pin the dependencies (needs pip-tools); the lock names no index and no machine path.
lock:
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links \
		--strip-extras --allow-unsafe --extra test -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
