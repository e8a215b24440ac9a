"""The pure-Python fastpath: the executable specification of ``fastpath._fastpath``.

Same classes, same methods, same results, byte for byte; any difference is a bug in one of the
two (the tests in ``tests/fastpath`` run both and compare). Written for clarity, not speed.

Data paths (see ``shared/docs/architecture.md``):

* DMPA uplink, ``Dmpa.from_access``: an Ethernet frame from an access TAP -> classify -> outer
  IPv6 (next header 4) towards the DLMAP, TTL decremented (RFC 2473 3.1(b): the DMPA is the MS's
  first-hop router and the tunnel entry point).
* DMPA downlink, ``Dmpa.from_tunnel``: inner IPv4 from the raw protocol-4 socket -> Ethernet
  header (pseudo-MAC -> MS MAC), TTL decremented (the exit point forwards it as a router).
* DLMAP uplink, ``Dlmap.from_tunnel``: inner IPv4 -> the TUN, TTL unchanged (the kernel forwards
  it from the TUN and decrements it then).
* DLMAP downlink, ``Dlmap.from_tun``: IPv4 from the TUN (the kernel already decremented the TTL
  when it routed it into the TUN) -> outer IPv6 towards the serving DMPA.

``from_tunnel_ipv6`` takes whole IPv6 packets (TUN on the IPv6 side, packet rings) and checks the
outer header itself; ``from_tunnel`` takes what a raw protocol-4 socket delivers: the outer source
address and the inner packet.

Nothing here raises on packet content: every packet ends with one :class:`Reason`.

The code is in modules that mirror the compiled twin's units (``_fastpath.pyx`` includes them):
``reference_packet`` (``packet.pxi``: byte order, checksums, header checks), ``reference_table``
(``table.pxi``: the HoA table), ``reference_gso`` (``gso.pxi``: segmentation and coalescing),
``reference_io`` (``io.pxi``: batches in memory and on fds, the pump loop) and
``reference_engines`` (``engines.pxi``: the two roles). The constants both twins use are in
``fastpath.common``.
"""

from __future__ import annotations

# constants that were defined here before fastpath.common held them, still importable from here
from fastpath.common import ETH_LEN as ETH_LEN
from fastpath.common import IO_BUF as IO_BUF
from fastpath.common import IP6_LEN as IP6_LEN
from fastpath.reference_engines import Dlmap, Dmpa
from fastpath.reference_gso import coalesce, segment
from fastpath.reference_io import Batch, MessageIO
from fastpath.reference_table import REHASH_STEPS as REHASH_STEPS
from fastpath.reference_table import HoaTable

__all__ = ["Batch", "Dlmap", "Dmpa", "HoaTable", "MessageIO", "coalesce", "segment"]
