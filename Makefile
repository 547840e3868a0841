# Two commands for a fresh machine (each installs what it needs into .venv first):
#   make book   build and execute the book into _build/html
#   make test   lint and run the whole test suite (unit, property and chapter execution)
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: book test lint notebooks clean

book: $(INSTALLED)
	$(BIN)/jupyter-book build --all --warningiserror --keep-going .
	@echo "The book is in _build/html/index.html"

test: lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The Colab copies of the chapters: book/notebooks/*.ipynb, generated from book/*.md.
notebooks: $(INSTALLED)
	$(BIN)/python scripts/notebooks.py sync

$(INSTALLED): pyproject.toml scripts/install-torch.sh
	$(PYTHON) -m venv $(VENV)
	sh scripts/install-torch.sh $(BIN)/python $(TORCH_VERSION)
	$(BIN)/python -m pip install -e ".[all]"
	touch $@

clean:
	rm -rf _build .pytest_cache .ruff_cache
