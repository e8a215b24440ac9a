# The targets here are the commands the README documents. Every target sets up what it needs,
# idempotently: Debian packages (as root), a virtual environment, an editable install that builds
# the Cython fastpath.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps

# Debian packages the tests need: tshark is the wire oracle; the rest build and run the package.
APT_PACKAGES := tshark python3-venv python3-dev gcc iproute2

.PHONY: all setup test test-fast bench lint demo clean

all: test

$(STAMPS):
	@mkdir -p $(STAMPS)

# apt: only when something is missing, and only as root (a non-root run prints what is missing;
# the tests that need it then say why they skip).
$(STAMPS)/apt: Makefile | $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "apt: all of $(APT_PACKAGES) present"; touch $@; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "apt: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -q && apt-get install -y -q --no-install-recommends $$missing && touch $@; \
	else echo "apt: not root, cannot install:$$missing (tests needing them will say so)"; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The editable install rebuilds the extension whenever the package definition or a .pyx changes.
$(STAMPS)/venv: $(BIN)/python pyproject.toml setup.py $(wildcard fastpath/*.pyx fastpath/*.pxd) | $(STAMPS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMPS)/apt $(STAMPS)/venv

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m pytest bench -p no:cacheprovider --benchmark-columns=min,median,mean,ops,rounds --benchmark-sort=name

lint: setup
	$(BIN)/ruff check router fastpath tests bench setup.py
	$(BIN)/ruff format --check router fastpath tests bench setup.py
	$(BIN)/mypy router fastpath/reference.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/cython-lint --max-line-length 100 $(wildcard fastpath/*.pyx fastpath/*.pxd)

demo:
	@echo "make demo: the lab demo does not exist yet (it arrives with the appliance, issue 6)." >&2
	@exit 1

clean:
	rm -rf build dist *.egg-info $(STAMPS) fastpath/*.c fastpath/*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
