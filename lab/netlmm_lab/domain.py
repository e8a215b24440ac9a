"""A running NETLMM domain in the lab: the topology plus the appliance processes.

:class:`Domain` starts ``netlmm run`` in the DLMAP's and both DMPAs' namespaces from generated
ini files, waits until each answers on its control socket, and asks them what they know. It is
what the demo and the integration tests stand on: always the real process, never the cores in
memory.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netlmm_lab.configs import LabConfigs, MobileProfile, write_configs
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import Lab
from router.adapters.control import ControlClient, ControlError

ROLES = ("dlmap", "dmpa1", "dmpa2")
NAMESPACE = {"dlmap": "lm", "dmpa1": "m1", "dmpa2": "m2"}


class Domain:
    def __init__(
        self,
        lab: Lab,
        profiles: list[MobileProfile],
        *,
        dialect: str = "draft",
        dhcp: str = "builtin",
        dhcp_servers: tuple[str, ...] = (),
        fastpath: str = "auto",
        radius: tuple[str, str] | None = None,
        tunnel_mtu: int = 1500,
        offload: bool = True,
        auth: bool = True,
        wrong_key: tuple[int, ...] = (),
        **config_options: Any,
    ) -> None:
        self.lab = lab
        self.profiles = profiles
        self.fastpath = fastpath
        self.configs: LabConfigs = write_configs(
            lab.workdir / "appliance",
            profiles,
            dialect=dialect,
            dhcp=dhcp,
            dhcp_servers=dhcp_servers,
            radius=radius,
            tunnel_mtu=tunnel_mtu,
            offload=offload,
            auth=auth,
            wrong_key=wrong_key,
            **config_options,  # extra_peers, pool, lease_time: see write_configs
        )
        self.processes: dict[str, subprocess.Popen[Any]] = {}
        self.logs: dict[str, Path] = {}

    def config(self, role: str) -> Path:
        return self.configs.dlmap if role == "dlmap" else self.configs.dmpas[int(role[-1])]

    def start(self, roles: tuple[str, ...] = ROLES, timeout: float = 30.0) -> float:
        """Start the appliance in each role; returns the seconds until all answered."""
        began = time.monotonic()
        for role in roles:
            self.start_one(role)
        for role in roles:
            self.wait_ready(role, timeout)
        return time.monotonic() - began

    def start_one(self, role: str) -> None:
        log = self.lab.workdir / f"{role}.log"
        self.logs[role] = log
        argv = [sys.executable, "-m", "router", "run", "-c", str(self.config(role))]
        argv += ["--fastpath", self.fastpath]
        with log.open("ab") as out:
            self.processes[role] = self.lab.popen(
                NAMESPACE[role], argv, stdout=out.fileno(), stderr=subprocess.STDOUT
            )

    def wait_ready(self, role: str, timeout: float = 30.0) -> None:
        def answers() -> bool:
            process = self.processes[role]
            if process.poll() is not None:
                raise LabError(f"{role} exited with {process.returncode}:\n{self.tail(role)}")
            try:
                return bool(self.ask(role, "counters") is not None)
            except ControlError:
                return False

        wait_until(answers, timeout, f"{role} answering on its control socket")

    def stop_one(self, role: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        process = self.processes.pop(role)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.lab.forget(process)
        return process.returncode

    def stop(self) -> dict[str, int | None]:
        return {role: self.stop_one(role) for role in list(self.processes)}

    def ask(self, role: str, what: str) -> Any:
        reply = ControlClient(self.configs.sockets[role], timeout=5.0).request(
            {"command": "show", "what": what}
        )
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        return reply["result"]

    def associated(self, role: str, mac: str, link: str | None = None) -> dict[str, Any]:
        """Tell DMPA ``role`` that station ``mac`` associated (what ``netlmm attach`` does; in a
        real cell the access point's association hook)."""
        request = {"command": "associated", "mac": mac, "link": link}
        reply = ControlClient(self.configs.sockets[role], timeout=5.0).request(request)
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error")))
        result: dict[str, Any] = reply["result"]
        return result

    def binding(self, nai: str) -> dict[str, Any] | None:
        rows = self.ask("dlmap", "bindings")
        return next((row for row in rows if row["nai"] == nai), None)

    def visitor(self, role: str, nai: str) -> dict[str, Any] | None:
        rows = self.ask(role, "visitors")
        return next((row for row in rows if row["nai"] == nai), None)

    def tail(self, role: str, lines: int = 30) -> str:
        path = self.logs.get(role)
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
