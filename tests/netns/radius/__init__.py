"""A RADIUS lab in namespaces: a NAS namespace, an AAA namespace, real FreeRADIUS processes.

::

    ns "nas" (the DMPA's client, fake servers)      ns "aaa" (FreeRADIUS)
      r0  2001:db8:5::1/64  192.0.2.1/24  <-veth->  r1  2001:db8:5::2/64 HAAA  [::2]:1812
                                                        2001:db8:5::3/64 VAAA source
                                                        192.0.2.2/24     VAAA  192.0.2.2:1812

The veth pair is created inside the NAS namespace with its peer moved straight into the AAA
namespace, so no link ever exists in the root namespace. FreeRADIUS configs are rendered from
the lab's templates (``lab/netlmm_lab/radius/``, with its example ``users``) into a per-run
directory; each ``freeradius -X`` is started with ``ip netns exec`` (which execs, so the PID we
hold is the server's) and ended by that PID.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

from netlmm_lab.servers import RADIUS_TEMPLATES, render_radiusd
from tests.netns.netns import namespace

NAS6 = "2001:db8:5::1"
HAAA6 = "2001:db8:5::2"
VAAA6 = "2001:db8:5::3"
NAS4 = "192.0.2.1"
VAAA4 = "192.0.2.2"
REALM = "home.example"
NAS_SECRET = "nas-secret-1"  # NAS <-> HAAA and NAS <-> VAAA
PROXY_SECRET = "proxy-secret-2"  # VAAA <-> HAAA


def poll(check: Callable[[], bool], deadline: float, what: str, step: float = 0.05) -> None:
    """Call ``check`` until it holds or ``deadline`` (monotonic) passes; bounded in count too."""
    for _ in range(int((deadline - time.monotonic()) / step) + 2):
        if check():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _reachable(ns: str, address: str) -> Callable[[], bool]:
    def check() -> bool:
        cmd = ["ip", "netns", "exec", ns, "ping", "-c1", "-W1", address]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0

    return check


@dataclass
class Server:
    name: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.directory / "radiusd.log").read_text(errors="replace")


@contextmanager
def freeradius(
    ns: str,
    directory: Path,
    *,
    name: str,
    listen: tuple[str, int],
    clients: list[tuple[str, str, str]],
    authorize: str,
    proxy: str = "",
    timeout: float = 20,
) -> Iterator[Server]:
    """Render a config into ``directory``, run ``freeradius -X`` in ``ns``; end it by PID."""
    render_radiusd(
        directory,
        name=name,
        listen=listen,
        clients=clients,
        authorize=authorize,
        proxy=proxy,
    )
    (directory / "users").write_text((RADIUS_TEMPLATES / "users").read_text())
    with (directory / "radiusd.log").open("wb") as log:
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, "freeradius", "-X", "-d", str(directory), "-n", "radiusd"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Server(name, directory, process)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"freeradius {name} exited {process.returncode}:\n{server.log}"
                )
            return "Ready to process requests" in server.log

        poll(ready, time.monotonic() + timeout, f"freeradius {name} to start")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@dataclass
class Lab:
    nas: str
    aaa: str
    haaa: Server
    vaaa: Server


@contextmanager
def radius_lab(directory: Path) -> Iterator[Lab]:
    """Both namespaces, the veth, an HAAA and a VAAA proxying realm ``home.example`` to it."""
    with ExitStack() as stack:
        nas = stack.enter_context(namespace("rnas"))
        aaa = stack.enter_context(namespace("raaa"))
        _ip("-n", nas, "link", "add", "r0", "type", "veth", "peer", "name", "r1", "netns", aaa)
        for ns, dev, addresses in (
            (nas, "r0", (f"{NAS6}/64", f"{NAS4}/24")),
            (aaa, "r1", (f"{HAAA6}/64", f"{VAAA6}/64", f"{VAAA4}/24")),
        ):
            for address in addresses:
                extra = ["nodad"] if ":" in address else []
                _ip("-n", ns, "addr", "add", address, "dev", dev, *extra)
            _ip("-n", ns, "link", "set", dev, "up")
        deadline = time.monotonic() + 15
        for address in (HAAA6, VAAA6, VAAA4):
            poll(_reachable(nas, address), deadline, f"{address} from {nas}", step=0.1)

        haaa = stack.enter_context(
            freeradius(
                aaa,
                directory / "haaa",
                name="haaa",
                listen=(HAAA6, 1812),
                clients=[("nas", NAS6, NAS_SECRET), ("vaaa", VAAA6, PROXY_SECRET)],
                authorize="\t\tfiles",
            )
        )
        proxy = Template((RADIUS_TEMPLATES / "proxy.conf.in").read_text()).substitute(
            realm=REALM,
            home_address=HAAA6,
            home_port=1812,
            source_address=VAAA6,
            home_secret=PROXY_SECRET,
        )
        vaaa = stack.enter_context(
            freeradius(
                aaa,
                directory / "vaaa",
                name="vaaa",
                listen=(VAAA4, 1812),
                clients=[("nas", NAS4, NAS_SECRET)],
                # A realm we proxy for goes on; anything else finds no Auth-Type: rejected.
                authorize="\t\tsuffix",
                proxy=proxy,
            )
        )
        yield Lab(nas, aaa, haaa, vaaa)
