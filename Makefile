# Two entry points that do all set-up on a fresh machine:
#   make demo   create .venv, install gac-coding, run the main job on scikit-learn's bundled digits
#   make test   create .venv, install gac-coding with its test extras, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= demo_out
# e.g. DEMO_ARGS=--overwrite to replace the results of an earlier make demo (refused by default)
DEMO_ARGS ?=

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
	$(BIN)/gac-coding demo --out $(OUT) $(DEMO_ARGS)

# two pytest-xdist workers, one per core (tests/conftest.py gives each one torch thread); a test
# file runs whole on one worker (--dist loadfile), so its module fixtures are built once
TEST_WORKERS ?= 2
test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# every documented install from the built wheel: bare and each extra alone, fresh venvs (tests/packaging)
packaging: $(VENV)/.test-installed
	$(BIN)/python tests/packaging/matrix.py

# the documentation site (mkdocs.yml, docs/): built with --strict into site/ (git-ignored)
$(VENV)/.docs-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@

# then tests/docs_site_check.py reads the built pages: pictures, links, parameter defaults, headings
.PHONY: docs docs-serve docs-figures   # docs is also the name of the docs/ folder
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python tests/docs_site_check.py site

# the site at http://127.0.0.1:8000, rebuilt whenever a page or a docstring changes
docs-serve: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# the pictures in docs/images/ (trains msresnet_tiny, runs the demo: minutes on 2 cores)
docs-figures: $(VENV)/.demo-installed
	MPLBACKEND=Agg $(BIN)/python docs/_ext/figures.py

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/encoder_fast_path.py

# ruff's lint rules on the code, ruff's formatting and mypy's types on the library (src/), and the
# GitHub workflows against GitHub's workflow schema (check-jsonschema's vendored copy: no network)
lint: $(VENV)/.test-installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/ruff check src tests benchmarks docs tools
	$(BIN)/ruff format --check src
	$(BIN)/mypy src/gac_coding
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

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
