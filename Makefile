# The targets here are the commands the README documents. Every target sets up what it needs,
# idempotently: Debian packages (as root), a virtual environment, an editable install that builds
# the Cython fastpath.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps

# Debian packages, one variable per capability, each with why it is here; APT_PACKAGES is all
# of them (a new capability adds its own variable and its line below).
# Build and run the package: the venv, the Cython build, ip for every namespace.
APT_BUILD := python3-venv python3-dev gcc iproute2
# The kernel tier (docs/kernel-tier.md): clang/llvm compile bpf/*.c into the BPF object
# setup.py ships, libbpf-dev is what fastpath/_kernel.pyx links (-lbpf) and includes.
APT_KERNEL := clang-14 llvm-14 libbpf-dev
# tshark is the wire oracle (tests/oracle) and what `netlmm trace --tshark` decodes with.
APT_ORACLE := tshark
# udhcpc, arping and ping are the mobile station's real host tools.
APT_MS_TOOLS := udhcpc iputils-arping iputils-ping
# The real DHCP and RADIUS servers the service tests (and `netlmm lab --dhcp/--aaa`) start in
# their own namespaces.
APT_SERVERS := kea-dhcp4-server dnsmasq-base freeradius freeradius-utils
# 802.1X on the access links: hostapd (driver=wired) is the authenticator the DMPA reads events
# from, wpasupplicant the MS's supplicant in the lab and the netns tests (their EAP runs against
# the FreeRADIUS of APT_SERVERS; openssl makes the test certificates).
APT_8021X := hostapd wpasupplicant openssl
# iperf3, and tayga (the C NAT64 the data path is compared with), for the lab benchmarks.
APT_BENCH := iperf3 tayga
# nftables drops MH packets in the signaling-loss tests and `make faults`.
APT_FAULTS := nftables
# systemd gives systemd-analyze, which checks the unit file (a minimal image may lack it;
# installing it starts nothing).
APT_SERVICE := systemd
# PostgreSQL 15 (store = postgresql) and keepalived (VRRPv3) for the DLMAP active/standby pair:
# the store tests, `netlmm lab up --ha` and `make ha` start their own, never the system's.
APT_HA := postgresql keepalived
# ppp gives pppoe-discovery, an independent PPPoE client the netns tests run against the
# DMPA's PPPoE server (auth = pppoe); pppd itself cannot run here (this kernel has no /dev/ppp).
APT_PPP := ppp
APT_PACKAGES := $(APT_BUILD) $(APT_KERNEL) $(APT_ORACLE) $(APT_MS_TOOLS) $(APT_SERVERS) \
	$(APT_8021X) $(APT_BENCH) $(APT_FAULTS) $(APT_SERVICE) $(APT_HA) $(APT_PPP)

.PHONY: all setup test test-fast bench bench-lab lint demo fuzz soak faults ha clean wheel install

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

# The editable install rebuilds the extension whenever the package definition or a Cython source
# (.pyx, .pxd, or a .pxi unit it includes) changes.
# The lab (lab/, the netlmm-lab distribution: test bed, demo, campaigns) is installed after the
# appliance it depends on; the appliance's own wheel holds none of it.
$(STAMPS)/venv: $(BIN)/python pyproject.toml setup.py lab/pyproject.toml $(wildcard fastpath/*.pyx fastpath/*.pxd fastpath/*.pxi bpf/*.[ch]) | $(STAMPS)
	$(BIN)/python -m pip install -q -e '.[dev,postgresql]'
	$(BIN)/python -m pip install -q -e ./lab
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
	$(BIN)/ruff check router fastpath lab tests bench setup.py
	$(BIN)/ruff format --check router fastpath lab tests bench setup.py
	$(BIN)/mypy router $(wildcard fastpath/reference*.py) fastpath/common.py fastpath/gen_pxd.py fastpath/kernel.py \
		lab/netlmm_lab tests/netns/children
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m mypy.stubtest fastpath._fastpath fastpath._kernel
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/cython-lint --max-line-length 100 $(wildcard fastpath/*.pyx fastpath/*.pxd fastpath/*.pxi)

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
	$(BIN)/python -m netlmm_lab.faults loss --count 100 --percent 20
	$(BIN)/python -m netlmm_lab.faults restart --role dlmap --rounds 5
	$(BIN)/python -m netlmm_lab.faults restart --role dmpa1 --rounds 5

# The appliance's wheel (no lab, no generated C): dist/netlmm-VERSION-*.whl. Building needs
# gcc and python3-dev (APT_BUILD) and, through the dev environment, Cython and setuptools>=77.
# build/ goes too: setuptools stages files there and never removes one the tree no longer has.
wheel: setup
	rm -rf dist build && $(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .

# Install the appliance (as root): a virtual environment of its own (INSTALL_VENV, with its
# dependencies from PyPI), the `netlmm` entry point in $(PREFIX)/bin, the systemd unit (its
# paths rewritten for PREFIX) in SYSTEMD_DIR, the example ini files, the docs and the license
# in DOC_DIR, and CONF_DIR (/etc/netlmm, 0750) for the ini files you write. Nothing under
# CONF_DIR is overwritten. Then: docs/operations.md "Quick start". INSTALL_PIP_OPTS adds pip
# options (the test uses --no-deps to stay off the network).
PREFIX      ?= /usr/local
INSTALL_VENV ?= /opt/netlmm
SYSTEMD_DIR ?= /etc/systemd/system
DOC_DIR     ?= $(PREFIX)/share/doc/netlmm
CONF_DIR    ?= /etc/netlmm
INSTALL_PIP_OPTS ?=
install: wheel
	$(PYTHON) -m venv $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python -m pip install -q $(INSTALL_PIP_OPTS) --force-reinstall dist/netlmm-*.whl
	install -d -m 755 $(PREFIX)/bin $(SYSTEMD_DIR) $(DOC_DIR)/examples
	ln -sf $(INSTALL_VENV)/bin/netlmm $(PREFIX)/bin/netlmm
	sed -e 's|/usr/local/bin/netlmm|$(PREFIX)/bin/netlmm|g' \
	    -e 's|file:/usr/local/share/doc/netlmm|file:$(DOC_DIR)|g' \
	    -e 's|/etc/netlmm/|$(CONF_DIR)/|g' \
	    etc/systemd/netlmm@.service > $(SYSTEMD_DIR)/netlmm@.service
	chmod 644 $(SYSTEMD_DIR)/netlmm@.service
	install -m 644 etc/dmpa.ini etc/dlmap.ini etc/README.md $(DOC_DIR)/examples/
	install -m 644 README.md LICENSE docs/*.md $(DOC_DIR)/
	install -d -m 750 $(CONF_DIR)
	@if [ -d /run/systemd/system ] && [ "$(SYSTEMD_DIR)" = /etc/systemd/system ]; then \
	    systemctl daemon-reload; fi
	@echo "installed: $(PREFIX)/bin/netlmm -> $(INSTALL_VENV), unit $(SYSTEMD_DIR)/netlmm@.service,"
	@echo "examples and docs in $(DOC_DIR); write $(CONF_DIR)/NAME.ini (netlmm example dmpa)"
# The DLMAP pair's failover variants (needs root, a few minutes): SIGKILL of the active (also
# in CI), its whole namespace cut off, a split brain, and the database primary killed and
# restarted (no failover); real MSs under traffic, PostgreSQL and keepalived started by the
# tests; prints the gaps and times.
ha: setup
	NETLMM_HA=1 $(BIN)/python -m pytest -p no:cacheprovider -s tests/netns/test_ha_failover.py tests/ha

clean:
	rm -rf build dist *.egg-info lab/build lab/dist lab/*.egg-info $(STAMPS) fastpath/*.c fastpath/*.so fastpath/*.bpf.o
	find . -name __pycache__ -prune -exec rm -rf {} +
