# `make demo` and `make test` work on a fresh machine: they build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The demo needs one backend only: JAX is the smallest download and the fastest here, so a
# fresh machine shows results in about two minutes instead of installing all three first.
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all]"
	# tensorflow-serving-api (the warm-up records' protos) declares the full `tensorflow`,
	# which would replace tensorflow-cpu; its protos need only what tensorflow-cpu brings.
	$(PY) -m pip install --quiet --no-deps "tensorflow-serving-api==$$($(PY) -c 'import tensorflow as t; print(t.__version__.rsplit(".", 1)[0])').*"
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[demo]"
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	KERAS_BACKEND=jax $(VENV)/bin/keras-aerec demo

# Everything under TensorFlow, then the framework-sensitive tests under JAX and torch.
# Two pytest-xdist workers, a test file each at a time (a file's fixtures are built once):
# on the 2-core development VM the three suites took 304 + 312 s instead of 461 + 453 s
# (most tests are compile-bound and single-threaded). `make test PYTEST_WORKERS=0` runs
# them in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) tests
	KERAS_BACKEND=jax $(PYTEST) -m backend tests
	KERAS_BACKEND=torch $(PYTEST) -m backend tests

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_aerec tests benchmarks tuning

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
