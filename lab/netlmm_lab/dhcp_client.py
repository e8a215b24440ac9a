"""The mobile station's DHCP client in the lab: busybox ``udhcpc`` with the lab's own script.

:class:`DhcpClient` runs ``udhcpc`` on a mobile's ``ms0`` (one lease and exit, or a client kept
running that renews on its own), and :class:`Lease` is what its script reported.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import MS_IF, Lab


@dataclass(frozen=True, slots=True)
class Lease:
    """What udhcpc's script saw on its last ``bound``/``renew`` event."""

    serial: int  # events seen so far (grows with every script call)
    event: str
    interface: str
    address: IPv4Address
    prefix_len: int
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    domain: str
    lease_time: int
    server_id: IPv4Address | None
    mtu: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "event": self.event,
            "interface": self.interface,
            "address": str(self.address),
            "prefix_len": self.prefix_len,
            "router": None if self.router is None else str(self.router),
            "dns": [str(a) for a in self.dns],
            "domain": self.domain,
            "lease_time": self.lease_time,
            "server_id": None if self.server_id is None else str(self.server_id),
            "mtu": self.mtu,
        }

    @classmethod
    def parse(cls, text: str) -> Lease:
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

        def opt4(key: str) -> IPv4Address | None:
            words = fields.get(key, "").split()
            return IPv4Address(words[0]) if words else None

        mtu = fields.get("mtu", "")
        return cls(
            serial=int(fields.get("serial", "0") or 0),
            event=fields.get("event", ""),
            interface=fields.get("interface", ""),
            address=IPv4Address(fields["ip"]),
            prefix_len=int(fields.get("mask", "32") or 32),
            router=opt4("router"),
            dns=tuple(IPv4Address(w) for w in fields.get("dns", "").split()),
            domain=fields.get("domain", ""),
            lease_time=int(fields.get("lease", "0") or 0),
            server_id=opt4("serverid"),
            mtu=int(mtu) if mtu.isdigit() else None,
        )


# --- the MS's DHCP client --------------------------------------------------------------------

# busybox ships no default udhcpc script here; this one configures the MS from the lease, writes
# its DNS servers to the namespace's own resolv.conf (never the host's), and leaves the lease in
# NETLMM_LEASE_FILE (key=value) and one line per event in NETLMM_EVENT_LOG.
UDHCPC_SCRIPT = r"""#!/bin/sh
echo "$1 ip=$ip mask=$mask router=$router lease=$lease serverid=$serverid" >> "$NETLMM_EVENT_LOG"
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    ;;
  bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/${mask:-32} "; then
      ip -4 addr flush dev "$interface"
      ip addr add "$ip/${mask:-32}" dev "$interface"
    fi
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do
      ip route replace default via "$r" dev "$interface" onlink
      break
    done
    tmp="$NETLMM_RESOLV.tmp"
    echo "# from DHCP ($interface)" > "$tmp"
    [ -n "$domain" ] && echo "search $domain" >> "$tmp"
    for d in $dns; do echo "nameserver $d" >> "$tmp"; done
    mv "$tmp" "$NETLMM_RESOLV"
    serial=$(wc -l < "$NETLMM_EVENT_LOG")
    {
      echo "serial=$serial"; echo "event=$1"; echo "interface=$interface"
      echo "ip=$ip"; echo "mask=$mask"; echo "router=$router"; echo "dns=$dns"
      echo "domain=$domain"; echo "lease=$lease"; echo "serverid=$serverid"; echo "mtu=$mtu"
    } > "$NETLMM_LEASE_FILE.tmp"
    mv "$NETLMM_LEASE_FILE.tmp" "$NETLMM_LEASE_FILE"
    ;;
esac
exit 0
"""


class DhcpClient:
    """busybox ``udhcpc`` on a mobile's ``ms0`` with the lab's own script.

    :meth:`once` gets one lease and exits (``-f -q -n``); :meth:`start` keeps a client running
    (``-f``: it renews at T1 and re-acquires on its own, :meth:`renew` forces a renewal), and
    :meth:`wait_lease` polls for the lease it reports."""

    def __init__(self, lab: Lab, ms: str = "ms", *, extra_args: Sequence[str] = ()) -> None:
        self.lab = lab
        self.ms = ms
        self.extra_args = list(extra_args)
        lab.workdir.mkdir(parents=True, exist_ok=True)
        self.script = lab.workdir / f"udhcpc-{ms}.sh"
        self.lease_file = lab.workdir / f"lease-{ms}.env"
        self.event_log = lab.workdir / f"events-{ms}.log"
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        self.event_log.touch()
        self.proc: subprocess.Popen[Any] | None = None

    def _env(self) -> dict[str, str]:
        return {
            "NETLMM_LEASE_FILE": str(self.lease_file),
            "NETLMM_EVENT_LOG": str(self.event_log),
            "NETLMM_RESOLV": str(self.lab.resolv_conf(self.ms)),
        }

    def _argv(self, *mode: str) -> list[str]:
        return [
            "udhcpc", "-i", MS_IF, "-s", str(self.script), "-f", "-T", "1", "-A", "1",
            "-O", "mtu", *mode, *self.extra_args,
        ]  # fmt: skip

    def once(self, tries: int = 5, timeout: float = 30.0) -> Lease:
        """Send up to ``tries`` discovers (one a second), take the lease, exit."""
        before = self.serial()
        result = self.lab.exec(
            self.ms,
            self._argv("-q", "-n", "-t", str(tries)),
            env=self._env(),
            timeout=timeout,
            check=False,
        )
        lease = self.lease()
        if result.returncode != 0 or lease is None or lease.serial <= before:
            raise LabError(
                f"udhcpc in {self.ms} got no lease (exit {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        return lease

    def start(self, tries: int = 5) -> None:
        """Run udhcpc in the foreground until :meth:`stop` (or the lab closes)."""
        if self.proc is not None and self.proc.poll() is None:
            raise LabError("udhcpc already running")
        self.proc = self.lab.popen(
            self.ms,
            self._argv("-t", str(tries)),
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def renew(self) -> None:
        """Ask the running client to renew now (SIGUSR1)."""
        if self.proc is None or self.proc.poll() is not None:
            raise LabError("udhcpc is not running")
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = self.lab.stop(self.proc)
        self.proc = None
        return code

    def serial(self) -> int:
        """Script calls so far."""
        try:
            return len(self.event_log.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def events(self) -> list[str]:
        """One line per script call: ``<event> ip=... mask=... router=... lease=...``."""
        try:
            return self.event_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def lease(self) -> Lease | None:
        try:
            return Lease.parse(self.lease_file.read_text())
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def wait_lease(self, timeout: float = 15.0, after: int = 0) -> Lease:
        """Poll until a lease newer than event ``after`` (a :meth:`serial`) is reported."""

        def newer() -> Lease | None:
            lease = self.lease()
            return lease if lease is not None and lease.serial > after else None

        return wait_until(newer, timeout, f"a DHCP lease in {self.ms}")
