"""The protocol defaults the cores own, each written once.

The core and service dataclasses take them as field defaults, and the ini schema
(:mod:`router.app.config.schema`) as the default of the key that sets that field, so a default
such as the binding lifetime lives here and nowhere else. Values without a protocol meaning
(log level, pseudo-MAC, ...) are the schema's own.
"""

from __future__ import annotations

#: Binding lifetime a DMPA asks for and the longest a DLMAP grants, seconds (a multiple of the
#: 4-second unit it travels in, RFC 6275 6.1.7).
LIFETIME = 3600
#: DHCP lease time handed to an MS, seconds (never longer than the binding lifetime).
LEASE_TIME = 3600
#: Prefix length of the HoA network (the subnet mask handed to the MS).
PREFIX_LENGTH = 24
#: Length of every IPv6 home network prefix, one per MS (RFC 5213 section 2.2; SLAAC needs /64).
HOME_PREFIX_LENGTH = 64
#: Largest inner IPv4 packet the tunnel carries: a 1500-byte IPv6 transport MTU less the
#: 40-byte IPv6 header.
TUNNEL_MTU = 1460
#: RFC 5213 InitialBindackTimeoutFirstReg: a DMPA's first PBU retransmission, seconds.
FIRST_BINDACK_TIMEOUT = 1.5
#: Longest wait of the new DMPA's PBA for the old DMPA's revocation acknowledgement, seconds.
REVOCATION_BUDGET = 0.5
#: RFC 5846 MINDelayBRIs (seconds) and BRIMaxRetriesNumber.
BRI_INTERVAL = 1.0
BRI_RETRIES = 3
#: After those retries a BRI goes on at a slower pace, its interval doubling up to this (the
#: bound RFC 6275 gives PBU retransmissions, MAX_BINDACK_TIMEOUT), until the old registration's
#: lifetime is over.
BRI_MAX_INTERVAL = 32.0
#: RFC 5847 HEARTBEAT_INTERVAL, seconds (the DMPA's default; 0 turns heartbeats off).
HEARTBEAT_INTERVAL = 60.0
HEARTBEAT_OFF = 0.0
#: RFC 5847 MISSING_HEARTBEATS_ALLOWED.
MISSING_HEARTBEATS_ALLOWED = 3
#: How an access link's MSs identify themselves ([access IFACE] auth): by MAC profile, by
#: 802.1X (EAP through hostapd) or by PPPoE (PPP's LCP authentication, router/app/pppoe_links.py).
ACCESS_AUTH_MODES = ("mac", "8021x", "pppoe")
#: Where a DMPA's RADIUS proxy listens for its 802.1X authenticators (hostapd on the same box).
RADIUS_PROXY = ("127.0.0.1", 18121)

# RFC 4861 section 6.2.1 / 10: Router Advertisements the DMPA sends a dual-stack MS.
#: MaxRtrAdvInterval and MinRtrAdvInterval (0.33 x Max), seconds.
MAX_RTR_ADV_INTERVAL = 600.0
MIN_RTR_ADV_INTERVAL = 198.0
#: AdvDefaultLifetime (3 x MaxRtrAdvInterval), seconds.
ADV_DEFAULT_LIFETIME = 1800
#: AdvValidLifetime and AdvPreferredLifetime of the home network prefix, seconds.
ADV_VALID_LIFETIME = 86400
ADV_PREFERRED_LIFETIME = 14400
#: MAX_INITIAL_RTR_ADVERT_INTERVAL (s) and MAX_INITIAL_RTR_ADVERTISEMENTS.
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
#: MAX_RA_DELAY_TIME and MIN_DELAY_BETWEEN_RAS, seconds.
MAX_RA_DELAY_TIME = 0.5
MIN_DELAY_BETWEEN_RAS = 3.0
