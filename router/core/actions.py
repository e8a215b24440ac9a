"""What the cores ask the outside world to do. The adapters carry these out, in list order.

Order matters and the cores rely on it: a :class:`Persist` comes before the :class:`SendMH` it
makes durable ("a binding is on disk before its PBA leaves"), and the adapter commits the
persistence batch before it sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from router.wire.ethernet import MacAddress
from router.wire.mh import MobilityMessage


@dataclass(frozen=True, slots=True)
class SendMH:
    """Send a Mobility Header message to ``peer`` (encoded in that peer's dialect)."""

    peer: IPv6Address
    message: MobilityMessage


@dataclass(frozen=True, slots=True)
class SendTunnel:
    """Send the IPv4 ``packet`` through the IPv4-in-IPv6 tunnel (next header 4) to ``peer``:
    the DLMAP, from a DMPA; a DMPA, from the DLMAP."""

    peer: IPv6Address
    packet: bytes


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Write ``frame`` (a whole Ethernet frame) on access link ``link``, i.e. its TAP."""

    link: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class SendTun:
    """DLMAP: write the IPv4 ``packet`` to the TUN, i.e. hand it to the kernel, which routes it
    (an ICMP error the slow path answers a punted packet with)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class Reinject:
    """Give ``data`` back to the data path as if it had just been read there, to be forwarded
    through the tunnel: a frame from access link ``link`` (DMPA), or an IPv4 packet from the TUN
    (DLMAP, ``link`` -1). The slow path's fragments of a packet too big for the tunnel MTU."""

    data: bytes
    link: int = -1


@dataclass(frozen=True, slots=True)
class Bind:
    """Point the fastpath's HoA at a tunnel endpoint (and, on the DMPA, an MS on a link).

    ``gateway``: the MS's default gateway on the DMPA (from its profile, RADIUS attribute 161
    or the PBA's IPv4 default router, seed 3.4), which the data path answers for (packets to
    it go to the slow path) and sources its ICMP errors from; None: the node's gateway."""

    hoa: IPv4Address
    endpoint: IPv6Address
    mac: MacAddress | None = None
    link: int = 0
    gateway: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class Unbind:
    hoa: IPv4Address


@dataclass(frozen=True, slots=True)
class BindPrefix:
    """Point the data path's IPv6 home network ``prefix`` (RFC 5213) at a tunnel endpoint (and,
    on the DMPA, an MS on a link): its IPv6 goes IPv6-in-IPv6 (next header 41)."""

    prefix: IPv6Network
    endpoint: IPv6Address
    mac: MacAddress | None = None
    link: int = 0


@dataclass(frozen=True, slots=True)
class UnbindPrefix:
    prefix: IPv6Network


@dataclass(frozen=True, slots=True)
class Persist:
    """Write (``record`` set) or delete (``record`` None) one row of durable state."""

    table: str
    key: str
    record: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class AAARequest:
    """DMPA: authenticate the MS seen with ``mac`` on ``link`` (the answer comes back later)."""

    mac: MacAddress
    link: int
    nai: str | None = None


class Event:
    """Something an operator may want in the log or metrics: ``kind`` plus key=value context.

    A plain slotted class, not a frozen dataclass: one is made per registration, and frozen
    dataclass construction is several times slower.
    """

    __slots__ = ("fields", "kind")

    def __init__(self, kind: str, fields: dict[str, object] | None = None) -> None:
        self.kind = kind
        self.fields = fields if fields is not None else {}

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, {self.fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and (self.kind, self.fields) == (other.kind, other.fields)

    __hash__ = None  # type: ignore[assignment]


Action = (
    SendMH
    | SendTunnel
    | SendFrame
    | SendTun
    | Reinject
    | Bind
    | Unbind
    | BindPrefix
    | UnbindPrefix
    | Persist
    | AAARequest
    | Event
)


def event(kind: str, **fields: object) -> Event:
    return Event(kind, fields)
