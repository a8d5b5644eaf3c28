# robeserve: every target works as the first command on a fresh machine (set-up is a dependency).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODELS ?= models
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup test lint kernels demo-models serve bench abuse results-dlrm results-noble clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

kernels: $(STAMP)
	$(PY) -m kernels.build

test: $(STAMP) kernels
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy training export service kernels loadtest

demo-models: $(STAMP) kernels
	$(PY) -m export.demo --repository $(MODELS)

# Demo models are built only when the repository is empty, then the service starts in the foreground.
serve: $(STAMP) kernels
	@if [ -z "$$(ls -A $(MODELS) 2>/dev/null)" ]; then $(MAKE) demo-models; fi
	$(PY) -m service --repository $(MODELS) --host $(HOST) --port $(PORT)

bench: $(STAMP) kernels
	$(PY) -m loadtest.ops
	$(PY) -m loadtest.engine --shape kaggle --provider cpu
	$(PY) -m loadtest.compare

# The abuse suite (issue 15): attacks and overloads against a real service; results in docs/benchmarks/.
abuse: $(STAMP)
	$(PY) -m loadtest.abuse --out docs/benchmarks/abuse

results-dlrm: $(STAMP)
	$(PY) -m training.dlrm.results

results-noble: $(STAMP)
	nice $(PY) -m training.noble.results

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
