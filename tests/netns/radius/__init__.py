"""A RADIUS lab in namespaces: a NAS namespace, an AAA namespace, real FreeRADIUS processes.

::

    ns "nas" (the DMPA's client, fake servers)      ns "aaa" (FreeRADIUS)
      r0  2001:db8:5::1/64  192.0.2.1/24  <-veth->  r1  2001:db8:5::2/64 HAAA  [::2]:1812
                                                        2001:db8:5::3/64 VAAA source
                                                        192.0.2.2/24     VAAA  192.0.2.2:1812

A :class:`netlmm_lab.topology.Lab` of two namespaces: the veth pair is created inside the NAS
namespace with its peer moved straight into the AAA namespace, so no link ever exists in the
root namespace. FreeRADIUS configs are rendered from the lab's templates
(``lab/netlmm_lab/radius/``, with its example ``users``) into a per-run directory; each
``freeradius -X`` is started by the lab (:func:`netlmm_lab.servers.start_server`) and ended by
its PID with it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from string import Template

from netlmm_lab.errors import LabError
from netlmm_lab.servers import RADIUS_TEMPLATES, Server, render_radiusd, start_server, tail
from netlmm_lab.topology import Lab

NAS6 = "2001:db8:5::1"
HAAA6 = "2001:db8:5::2"
VAAA6 = "2001:db8:5::3"
NAS4 = "192.0.2.1"
VAAA4 = "192.0.2.2"
REALM = "home.example"
NAS_SECRET = "nas-secret-1"  # NAS <-> HAAA and NAS <-> VAAA
PROXY_SECRET = "proxy-secret-2"  # VAAA <-> HAAA


def log_of(server: Server) -> str:
    """Everything the server has logged so far."""
    return server.log.read_text(errors="replace")


class RadiusLab(Lab):
    """Both namespaces, the veth, an HAAA and a VAAA proxying realm ``home.example`` to it
    (:meth:`start_servers`)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.mobiles = []
        self.directory = directory
        self.nas, self.aaa = self.ns("nas"), self.ns("aaa")

    def build(self) -> None:
        self.add_namespace("nas")
        self.add_namespace("aaa")
        self.ip("nas", "link", "add", "r0", "type", "veth", "peer", "name", "r1", "netns", self.aaa)
        for ns, dev, addresses in (
            ("nas", "r0", (f"{NAS6}/64", f"{NAS4}/24")),
            ("aaa", "r1", (f"{HAAA6}/64", f"{VAAA6}/64", f"{VAAA4}/24")),
        ):
            for address in addresses:
                extra = ["nodad"] if ":" in address else []
                self.addr(ns, address, dev, *extra)
            self.link(ns, "set", dev, "up")

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for address in (HAAA6, VAAA6, VAAA4):
            self.wait_ping("nas", address, max(0.1, deadline - time.monotonic()))

    def freeradius(
        self,
        name: str,
        *,
        listen: tuple[str, int],
        clients: list[tuple[str, str, str]],
        authorize: str,
        proxy: str = "",
    ) -> Server:
        """Render a config into ``directory/name`` and run ``freeradius -X`` in ``aaa``."""
        binary = shutil.which("freeradius")
        if binary is None:
            raise LabError("freeradius is not installed")
        folder = self.directory / name
        folder.mkdir(parents=True, exist_ok=True)
        render_radiusd(
            folder, name=name, listen=listen, clients=clients, authorize=authorize, proxy=proxy
        )
        (folder / "users").write_text((RADIUS_TEMPLATES / "users").read_text())
        return start_server(
            self,
            name,
            "aaa",
            [binary, "-X", "-d", str(folder), "-n", "radiusd"],
            folder,
            f"[{listen[0]}]:{listen[1]}",
            lambda log: "Ready to process requests" in tail(log, 5),
        )

    def start_servers(self) -> None:
        self.haaa = self.freeradius(
            "haaa",
            listen=(HAAA6, 1812),
            clients=[("nas", NAS6, NAS_SECRET), ("vaaa", VAAA6, PROXY_SECRET)],
            authorize="\t\tfiles\n\t\tpap\n\t\tchap",
        )
        proxy = Template((RADIUS_TEMPLATES / "proxy.conf.in").read_text()).substitute(
            realm=REALM,
            home_address=HAAA6,
            home_port=1812,
            source_address=VAAA6,
            home_secret=PROXY_SECRET,
        )
        self.vaaa = self.freeradius(
            "vaaa",
            listen=(VAAA4, 1812),
            clients=[("nas", NAS4, NAS_SECRET)],
            # A realm we proxy for goes on; anything else finds no Auth-Type: rejected.
            authorize="\t\tsuffix",
            proxy=proxy,
        )
