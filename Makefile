# `make demo` and `make test` work on a fresh machine: they build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/keras-aerec demo

# Everything under TensorFlow, then the framework-sensitive tests under JAX and torch.
test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests
	KERAS_BACKEND=jax $(PY) -m pytest -q -m backend tests
	KERAS_BACKEND=torch $(PY) -m pytest -q -m backend tests

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_aerec tests benchmarks tuning

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
