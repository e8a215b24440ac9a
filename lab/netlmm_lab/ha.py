"""The active/standby DLMAP pair in the lab (``netlmm lab up --ha``, ``make ha``, the HA tests).

The NETLMM domain of :mod:`netlmm_lab.topology` with two DLMAP hosts and a database host::

    cn  cn0 198.51.100.2 --- [ub br0] --- up0 198.51.100.3  lm   (VIP 198.51.100.1: next hop
                                    \\--- up0 198.51.100.4  lb    of the HoA network)
    lm  tr0 2001:db8:100::2 --- [tr br0] --- tr0 2001:db8:100::3 lb   (VIP 2001:db8:100::1:
    m1  tr0 2001:db8:100::11 --/         \\-- tr0 2001:db8:100::12 m2    the DLMAP's address)
    lm  db0 2001:db8:5::2 --- lm 2001:db8:5::1  db  lb 2001:db8:6::1 --- db0 2001:db8:6::2  lb

- ``db``: a real PostgreSQL 15 (:mod:`netlmm_lab.postgres`) with its own data directory,
  listening on its two links; the ``netlmm`` role logs in with a password (scram-sha-256) kept
  in a mode-600 file of the run's directory.
- ``lm`` and ``lb``: ``netlmm run`` with ``store = postgresql`` and ``ha = pair`` (both wait as
  the standby until keepalived gives them the address), and keepalived (VRRPv3, advert_int
  0.3, both BACKUP with nopreempt, lm at a higher priority) holding the two VIPs. keepalived
  follows the DLMAP process through a track file (weight 0: non-zero means down) that a
  watcher beside the process writes the moment it exits (``tail --pid``), and a check script
  (``kill -0``, once a second) as a second line; ``track_process`` does not work inside a
  network namespace here.

Everything is made in the lab's namespaces and removed with them; keepalived and PostgreSQL are
started by the lab and ended by PID.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from netlmm_lab import netns
from netlmm_lab.configs import MobileProfile
from netlmm_lab.domain import Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.postgres import PostgresServer
from netlmm_lab.topology import (
    ACCESS_MTU,
    BRIDGE,
    CN_ADDRESS,
    CN_IF,
    DLMAP_ADDRESS,
    DLMAP_UPLINK_ADDRESS,
    DMPA_ADDRESSES,
    HOA_NETWORK,
    NO_DAD,
    NO_IPV6,
    TRANSPORT_IF,
    UPLINK_IF,
    Lab,
)

DLMAPS = ("lm", "lb")
OWN_TRANSPORT = {"lm": IPv6Address("2001:db8:100::2"), "lb": IPv6Address("2001:db8:100::3")}
OWN_UPLINK = {"lm": IPv4Address("198.51.100.3"), "lb": IPv4Address("198.51.100.4")}
#: Each DLMAP's own link to the database host: (its address, the database's address).
DB_LINK = {
    "lm": (IPv6Address("2001:db8:5::2"), IPv6Address("2001:db8:5::1")),
    "lb": (IPv6Address("2001:db8:6::2"), IPv6Address("2001:db8:6::1")),
}
DB_IF = "db0"
DB_NAME = "netlmm"
DB_USER = "netlmm"
VRID = 51
PRIORITY = {"lm": 150, "lb": 100}
ADVERT_INT = 0.3
KEEP_ADDRESSES = (
    "net.ipv6.conf.all.keep_addr_on_down=1",
    "net.ipv6.conf.default.keep_addr_on_down=1",
)
#: The roles of the pair in the :class:`HADomain` (``dlmap`` is lm's, ``dlmap_b`` lb's).
ROLE_NS = {"dlmap": "lm", "dlmap_b": "lb", "dmpa1": "m1", "dmpa2": "m2"}
NS_ROLE = {"lm": "dlmap", "lb": "dlmap_b"}


class HALab(Lab):
    """The domain with two DLMAP hosts and a database host (see the module)."""

    def build(self) -> None:
        shorts = ["cn", "ub", "lm", "lb", "db", "tr", "m1", "m2", "b1", "b2", *self.mobiles]
        for short in shorts:
            self.add_namespace(short)
            self.sysctl(short, *NO_DAD)
            if short not in ("lm", "lb", "db", "m1", "m2"):
                self.sysctl(short, *NO_IPV6)
            if short in DLMAPS:  # a link that comes back has its addresses (a server's setup)
                self.sysctl(short, *KEEP_ADDRESSES)
        for short in self.mobiles:
            netns.etc(self.ns(short))
            self.resolv_conf(short).write_text("# netlmm lab: written by the MS's DHCP client\n")
        # IPv4 side: cn and both DLMAPs on one bridge (the VIP moves between lm and lb).
        self.bridge("ub", ACCESS_MTU)
        self.veth("cn", CN_IF, "ub", "cn", ACCESS_MTU)
        self.link("ub", "set", "cn", "master", BRIDGE, "up")
        self.addr("cn", f"{CN_ADDRESS}/24", CN_IF)
        self.ip("cn", "route", "add", str(HOA_NETWORK), "via", str(DLMAP_UPLINK_ADDRESS))
        self.bridge("tr", self.transport_mtu)
        for short in DLMAPS:
            self.veth(short, UPLINK_IF, "ub", short, ACCESS_MTU)
            self.link("ub", "set", short, "master", BRIDGE, "up")
            self.addr(short, f"{OWN_UPLINK[short]}/24", UPLINK_IF)
            self.veth(short, TRANSPORT_IF, "tr", short, self.transport_mtu)
            self.link("tr", "set", short, "master", BRIDGE, "up")
            self.addr(short, f"{OWN_TRANSPORT[short]}/64", TRANSPORT_IF, "nodad")
            own, db = DB_LINK[short]
            self.veth(short, DB_IF, "db", short, ACCESS_MTU)
            self.addr(short, f"{own}/64", DB_IF, "nodad")
            self.addr("db", f"{db}/64", short, "nodad")
        for index, address in DMPA_ADDRESSES.items():
            short = f"m{index}"
            self.veth(short, TRANSPORT_IF, "tr", short, self.transport_mtu)
            self.link("tr", "set", short, "master", BRIDGE, "up")
            self.addr(short, f"{address}/64", TRANSPORT_IF, "nodad")
        self.build_access()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for short in ["cn", "ub", "lm", "lb", "db", "tr", "m1", "m2", "b1", "b2", *self.mobiles]:
            self.up(short, max(0.1, deadline - time.monotonic()))
        for short in DLMAPS:
            left = max(0.1, deadline - time.monotonic())
            self.wait_ping("cn", str(OWN_UPLINK[short]), left)
            self.wait_ping("m1", str(OWN_TRANSPORT[short]), left)
            self.wait_ping(short, str(DB_LINK[short][1]), left)

    def vip_holder(self) -> str | None:
        """Which DLMAP host has the DLMAP's address now (None: neither; both: split brain)."""
        found = [
            short
            for short in DLMAPS
            if str(DLMAP_ADDRESS) in self.ip(short, "-6", "addr", "show", "dev", TRANSPORT_IF)
        ]
        if len(found) > 1:
            return "both"
        return found[0] if found else None


def keepalived_conf(short: str, track_file: Path, check: Path) -> str:
    return f"""global_defs {{
    router_id netlmm-{short}
    vrrp_version 3
    enable_script_security
    script_user root
    vrrp_garp_master_refresh 1
}}
track_file netlmm_dead {{
    file "{track_file}"
    weight 0
}}
vrrp_script netlmm_alive {{
    script "{check}"
    interval 1
    fall 1
    rise 1
}}
vrrp_instance dlmap {{
    state BACKUP
    nopreempt
    interface {TRANSPORT_IF}
    virtual_router_id {VRID}
    priority {PRIORITY[short]}
    advert_int {ADVERT_INT}
    virtual_ipaddress {{
        {DLMAP_ADDRESS}/64 dev {TRANSPORT_IF}
    }}
    virtual_ipaddress_excluded {{
        {DLMAP_UPLINK_ADDRESS}/24 dev {UPLINK_IF}
    }}
    track_file {{
        netlmm_dead
    }}
    track_script {{
        netlmm_alive
    }}
}}
"""


class HADomain(Domain):
    """The pair (``dlmap`` in lm, ``dlmap_b`` in lb) sharing a PostgreSQL in ``db``, with
    keepalived in both, and the two DMPAs. :meth:`start` starts them all; :meth:`close` ends
    keepalived and PostgreSQL (the lab ends the rest)."""

    def __init__(self, lab: HALab, profiles: list[MobileProfile], **options: Any) -> None:
        super().__init__(lab, profiles, **options)
        self.halab = lab
        self.db: PostgresServer | None = None
        self.keepalived: dict[str, subprocess.Popen[Any]] = {}
        self.watchers: dict[str, subprocess.Popen[Any]] = {}
        folder = lab.workdir / "appliance"
        self.secret = folder / "db-password"
        # lb's ini: lm's, with its own state directory and control socket.
        text = self.configs.dlmap.read_text()
        self.configs.sockets["dlmap_b"] = folder / "dlmap-b.sock"
        self.config_b = folder / "dlmap-b.ini"
        self.config_b.write_text(
            text.replace(str(folder / "dlmap.sock"), str(folder / "dlmap-b.sock")).replace(
                str(folder / "dlmap-state"), str(folder / "dlmap-b-state")
            )
        )
        for short, path in (("lm", self.configs.dlmap), ("lb", self.config_b)):
            dsn = f"postgresql://{DB_USER}@[{DB_LINK[short][1]}]:5432/{DB_NAME}"
            keys = f"store = postgresql\nstore_dsn = {dsn}\nstore_password_file = {self.secret}\n"
            keys += "ha = pair\n"
            body = path.read_text()
            path.write_text(body.replace("[node]\n", "[node]\n" + keys, 1))

    def config(self, role: str) -> Path:
        if role == "dlmap_b":
            return self.config_b
        return super().config(role)

    def start_one(self, role: str) -> None:
        log = self.lab.workdir / f"{role}.log"
        self.logs[role] = log
        argv = [sys.executable, "-m", "router", "run", "-c", str(self.config(role))]
        argv += ["--fastpath", self.fastpath]
        with log.open("ab") as out:
            self.processes[role] = self.lab.popen(
                ROLE_NS[role], argv, stdout=out.fileno(), stderr=subprocess.STDOUT
            )
        short = ROLE_NS[role]
        if short in DLMAPS:
            self._watch(short, self.processes[role].pid)

    # --- the database and keepalived ------------------------------------------------------

    def start_database(self) -> None:
        password = secrets.token_hex(16)
        self.secret.parent.mkdir(parents=True, exist_ok=True)
        self.secret.unlink(missing_ok=True)
        self.secret.touch(mode=0o600)
        self.secret.write_text(password + "\n")
        listen = ",".join(str(db) for _, db in DB_LINK.values())
        root = self.lab.workdir / "db"
        self.db = PostgresServer(namespace=self.halab.ns("db"), listen=listen, root=root).start()
        self.db.create_database(DB_NAME, DB_USER, password)

    def _files(self, short: str) -> tuple[Path, Path, Path]:
        base = self.lab.workdir / "ha"
        base.mkdir(parents=True, exist_ok=True)
        return base / f"{short}.dead", base / f"{short}.pid", base / f"{short}.check"

    def _watch(self, short: str, pid: int) -> None:
        """The track file says 0 while the DLMAP process ``pid`` lives; a watcher writes 1 the
        moment it exits (keepalived reads the file on change: inotify)."""
        dead, pidfile, _ = self._files(short)
        dead.write_text("0\n")
        pidfile.write_text(f"{pid}\n")
        old = self.watchers.pop(short, None)
        if old is not None:
            self.lab.stop(old)
        script = f"tail --pid={pid} -s 0.02 -f /dev/null; echo 1 > {dead}"
        self.watchers[short] = self.lab.popen(short, ["sh", "-c", script])

    def start_keepalived(self, short: str) -> None:
        dead, pidfile, check = self._files(short)
        if not dead.exists():
            dead.write_text("1\n")  # no DLMAP yet: not a candidate
        check.write_text(f'#!/bin/sh\nkill -0 "$(cat {pidfile} 2>/dev/null)" 2>/dev/null\n')
        check.chmod(0o755)
        conf = self.lab.workdir / "ha" / f"keepalived-{short}.conf"
        conf.write_text(keepalived_conf(short, dead, check))
        run = self.lab.workdir / "ha"
        argv = [
            "keepalived", "--dont-fork", "--log-console", "--vrrp", "-f", str(conf),
            "-p", str(run / f"ka-{short}.pid"), "-r", str(run / f"ka-{short}-vrrp.pid"),
            "-c", str(run / f"ka-{short}-checkers.pid"),
        ]  # fmt: skip
        log = run / f"keepalived-{short}.log"
        with log.open("ab") as out:
            self.keepalived[short] = self.lab.popen(
                short, argv, stdout=out.fileno(), stderr=subprocess.STDOUT
            )

    def start(self, roles: tuple[str, ...] = ("dlmap", "dlmap_b", "dmpa1", "dmpa2"),
              timeout: float = 30.0) -> float:  # fmt: skip
        """The database, both DLMAPs (standbys until keepalived gives one the address), then
        keepalived (lm first: it becomes the active), then the DMPAs."""
        began = time.monotonic()
        if self.db is None:
            self.start_database()
        for role in ("dlmap", "dlmap_b"):
            if role in roles:
                self.start_one(role)
        for role in ("dlmap", "dlmap_b"):
            if role in roles:
                wait_until(partial(self._answers_ha, role), timeout, f"{role} standby")
        self.start_keepalived("lm")
        wait_until(lambda: self.halab.vip_holder() == "lm", timeout, "the VIP on lm")
        self.start_keepalived("lb")
        self.wait_ready("dlmap", timeout)
        for role in roles:
            if role.startswith("dmpa"):
                self.start_one(role)
        for role in roles:
            if role.startswith("dmpa"):
                self.wait_ready(role, timeout)
        return time.monotonic() - began

    def _answers_ha(self, role: str) -> bool:
        process = self.processes[role]
        if process.poll() is not None:
            raise LabError(f"{role} exited with {process.returncode}:\n{self.tail(role)}")
        try:
            return bool(self.ask(role, "ha"))
        except Exception:
            return False

    def ha(self, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self.ask(role, "ha")
        return result

    def active(self) -> str:
        """The role whose process holds the identity now (asked over the control sockets)."""
        for role in ("dlmap", "dlmap_b"):
            process = self.processes.get(role)
            if process is None or process.poll() is not None:
                continue
            try:
                if self.ha(role).get("role") == "active":
                    return role
            except Exception:
                continue
        raise LabError("no active DLMAP")

    def kill(self, role: str) -> None:
        """SIGKILL a DLMAP (its watcher then marks it down for keepalived)."""
        self.stop_one(role, signal.SIGKILL)

    def close(self) -> None:
        for proc in list(self.keepalived.values()) + list(self.watchers.values()):
            self.lab.stop(proc)
        self.keepalived.clear()
        self.watchers.clear()
        if self.db is not None:
            self.db.stop()
            self.db = None

    def sql(self, query: str) -> str:
        if self.db is None:
            raise LabError("no database")
        return self.db.psql(query, DB_NAME)
