# Two entry points that do all set-up on a fresh machine:
#   make demo   create .venv, install gac-coding, run the main job on scikit-learn's bundled digits
#   make test   create .venv, install gac-coding with its test extras, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= demo_out

.PHONY: demo test packaging bench lint mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/gac-coding demo --out $(OUT)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest

# every documented install from the built wheel: bare and each extra alone, fresh venvs (tests/packaging)
packaging: $(VENV)/.test-installed
	$(BIN)/python tests/packaging/matrix.py

# the documentation site (mkdocs.yml, docs/): built with --strict into site/ (git-ignored)
$(VENV)/.docs-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

.PHONY: docs   # also the name of the docs/ folder
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/encoder_fast_path.py

# ruff's lint rules on the code, ruff's formatting and mypy's types on the library (src/)
lint: $(VENV)/.test-installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src
	$(BIN)/mypy src/gac_coding

# mutation testing of one area (tests/mutation/areas.py), e.g. make mutation AREA=energy; not in CI
AREA ?=
JOBS ?= 2
$(VENV)/.mutation-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,mutation]"
	touch $@ $(VENV)/.test-installed $(VENV)/.demo-installed

mutation: $(VENV)/.mutation-installed
	@test -n "$(AREA)" || { $(BIN)/python tests/mutation/run.py --list; echo "usage: make mutation AREA=<an area or a group above, or all>"; exit 2; }
	$(BIN)/python tests/mutation/run.py $(AREA) --jobs $(JOBS)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
