# The two commands: `make demo` (the main job, offline) and `make test` (the whole suite);
# `make test-fast` skips the tests marked slow.
# All of them build the virtualenv from the hashed lock file first, on a fresh machine too.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint setup setup-gpu lock resolve-platforms clean

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

# NVIDIA GPUs on Linux: TensorFlow with NVIDIA's CUDA libraries (pyproject's `gpu` extra) on top
# of the lock. tensorflow-cpu and tensorflow are both the package `tensorflow`: the CUDA build's
# files are put back last so that they win. Not hashed: these wheels are outside the lock.
setup-gpu: setup
	$(PY) -m pip install --quiet --no-build-isolation -e '.[gpu]'
	$(PY) -m pip install --quiet --force-reinstall --no-deps 'tensorflow==2.21.*'
	$(PY) -c "import tensorflow as tf; print('GPUs:', tf.config.list_physical_devices('GPU'))"

# Ask pip to resolve pyproject's requirements for Linux x86_64/aarch64, macOS arm64/x86_64 and
# Windows x86_64 (Python 3.11, wheels only), installing nothing (bench/RESULTS.md, "Platforms").
resolve-platforms: setup
	$(PY) bench/resolve_platforms.py
	$(PY) bench/resolve_platforms.py --extra gpu --only linux-x86_64 linux-aarch64

# Re-pin the dependencies (needs pip-tools); the lock names no index and no machine path.
lock:
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links \
		--strip-extras --allow-unsafe --extra test -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
