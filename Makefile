# The targets here are the commands the README documents. Every target sets up what it needs,
# idempotently: Debian packages (as root), a virtual environment, an editable install that builds
# the Cython fastpath.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps

# Debian packages the tests need: tshark is the wire oracle; udhcpc, arping and ping are the
# mobile station's real host tools; kea-dhcp4-server, dnsmasq-base and freeradius are the real
# DHCP and RADIUS servers the service tests start in their own namespaces; iperf3 and tayga (the
# C NAT64 the data path is compared with) are for the lab benchmarks; nftables drops MH packets
# in the signaling-loss tests; systemd gives systemd-analyze, which checks the unit file (a
# minimal image may lack it; installing it starts nothing); the rest build and run the package.
APT_PACKAGES := tshark python3-venv python3-dev gcc iproute2 udhcpc iputils-arping \
	iputils-ping kea-dhcp4-server dnsmasq-base freeradius freeradius-utils iperf3 tayga nftables \
	systemd

.PHONY: all setup test test-fast bench bench-lab lint demo fuzz soak faults clean

all: test

$(STAMPS):
	@mkdir -p $(STAMPS)

# apt: only when something is missing, and only as root (a non-root run prints what is missing;
# the tests that need it then say why they skip). Services in these packages (FreeRADIUS, Kea)
# must not start on install: the tests start their own, in namespaces, with their own configs.
# A policy-rc.d that forbids it is put in place for the install if the system has none.
$(STAMPS)/apt: Makefile | $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "apt: all of $(APT_PACKAGES) present"; touch $@; \
	elif [ "$$(id -u)" = 0 ]; then \
	    echo "apt: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    made_policy=""; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
	        made_policy=1; \
	    fi; \
	    apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; rc=$$?; \
	    [ -n "$$made_policy" ] && rm -f /usr/sbin/policy-rc.d; \
	    [ $$rc = 0 ] && touch $@; exit $$rc; \
	else echo "apt: not root, cannot install:$$missing (tests needing them will say so)"; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The editable install rebuilds the extension whenever the package definition or a .pyx changes.
$(STAMPS)/venv: $(BIN)/python pyproject.toml setup.py $(wildcard fastpath/*.pyx fastpath/*.pxd) | $(STAMPS)
	$(BIN)/python -m pip install -q -e '.[dev,lab]'
	@touch $@

setup: $(STAMPS)/apt $(STAMPS)/venv

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m pytest bench -p no:cacheprovider --benchmark-columns=min,median,mean,ops,rounds --benchmark-sort=name

# Data-path throughput in network namespaces (needs root): kernel forwarding, a tayga pair and
# the appliance side by side, iperf3 TCP/UDP and ping, 3 runs each; prints the table and saves
# the JSON under bench/results/ (about 10 minutes). Everything it builds is torn down.
bench-lab: setup
	$(BIN)/netlmm lab bench

lint: setup
	$(BIN)/ruff check router fastpath tests bench setup.py
	$(BIN)/ruff format --check router fastpath tests bench setup.py
	$(BIN)/mypy router fastpath/reference.py
	$(BIN)/lint-imports --no-logo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/cython-lint --max-line-length 100 $(wildcard fastpath/*.pyx fastpath/*.pxd)

# The lab demo: a DLMAP, two DMPAs, a CN and an MS in network namespaces, with a handover
# (needs root). Everything it builds is torn down at the end, on error and on Ctrl-C too.
demo: setup
	$(BIN)/netlmm lab demo

# A fuzz campaign (needs root): 1,000,000 mutated and random MH messages, access frames and
# tunnel packets into a running DLMAP and DMPA while an MS pings the CN; both processes must
# live, internal_error stay 0. Bounded: at most 25,000 inputs a second (about a minute).
fuzz: setup
	$(BIN)/netlmm lab fuzz

# The soak (needs root): 10,000 simulated MSs attach, refresh, hand over and leave for 10
# minutes next to real MSs; RSS and fds sampled, the binding cache checked at the end; the JSON
# goes under bench/results/.
soak: setup
	$(BIN)/netlmm lab soak

# Fault runs (needs root, a few minutes): 100 real DHCP hosts register and hand over with 20 %
# of MH packets dropped each way (nftables in the lab), then SIGKILL + restart of the DLMAP and
# of a DMPA under a UDP stream, 5 rounds each; prints the times.
faults: setup
	$(BIN)/python -m router.lab.faults loss --count 100 --percent 20
	$(BIN)/python -m router.lab.faults restart --role dlmap --rounds 5
	$(BIN)/python -m router.lab.faults restart --role dmpa1 --rounds 5

clean:
	rm -rf build dist *.egg-info $(STAMPS) fastpath/*.c fastpath/*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
