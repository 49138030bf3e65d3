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
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -m backend tests
	KERAS_BACKEND=torch $(PY) -m pytest -q -m backend tests

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_aerec tests benchmarks tuning

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
