# Two commands for a fresh machine (each installs what it needs into .venv first):
#   make book   build and execute the book into _build/html
#   make test   lint and run the whole test suite (unit, property and chapter execution)
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
# One torch (OpenMP) thread per process for the chapters' kernels and the tests, unless set:
# small MinAtar updates do not gain from a second thread (book/data/bench/cpu-minatar.json:
# the single loop ran 422 env steps/s with one thread, 309 with two), and beside another busy
# process two threads spin-wait: the phenomenon chapter took 119 s with one thread next to a
# running campaign, and had not finished after 30 minutes with torch's default of two.
OMP_NUM_THREADS ?= 1
export OMP_NUM_THREADS
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
