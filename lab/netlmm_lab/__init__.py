"""The lab: a whole domain in network namespaces, and the tools that measure it.

:mod:`netlmm_lab.topology` builds the namespaces, links and addresses (CN, DLMAP, the IPv6
transport, two DMPAs with their base-station bridges, the MS) and moves the MS between base
stations; :mod:`netlmm_lab.tools` measures traffic across it (UDP probe stream, TCP transfer,
a long-lived TCP session, ping). Nothing outside the namespaces a lab made is touched.
"""

from __future__ import annotations

from netlmm_lab.topology import DhcpClient, HandoverResult, Lab, LabError, Lease

__all__ = ["DhcpClient", "HandoverResult", "Lab", "LabError", "Lease"]
