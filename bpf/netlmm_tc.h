/* The kernel tier's shared layout: the reasons, the map values, the configuration.
 *
 * The user-space side (fastpath/kernel.py) restates these; tests/fastpath/test_kernel_layout.py
 * parses this file and fails when the two disagree. Reason numbers 0..23 are fastpath/common.py's
 * Reason values (the same meaning, so the same name in `show counters`); 24.. are the kernel
 * tier's own. A reason's verdict here is what the program does: FORWARDED redirects, the drops
 * (SPOOFED_SRC, SRC_NOT_BOUND) are counted and dropped, everything else goes on unchanged to
 * the user-space tier (a punt: TC_ACT_OK).
 */
#ifndef NETLMM_TC_H
#define NETLMM_TC_H

enum netlmm_reason {
	R_FORWARDED = 0,
	R_ARP = 1,
	R_DHCP = 2,
	R_ICMP_GATEWAY = 3,
	R_UNKNOWN_MS = 4,
	R_TTL_EXPIRED = 5,
	R_FRAG_NEEDED = 6,
	R_FRAGMENT = 7,
	R_SPOOFED_SRC = 15,
	R_SRC_NOT_BOUND = 16,
	R_NO_BINDING = 17,
	/* the kernel tier's own */
	R_PASSED = 24,       /* not a tunnel packet of ours nor a bound MS's: not looked at */
	R_IP_OPTIONS = 25,   /* IHL > 5 */
	R_IP_FRAGMENT = 26,  /* MF or a fragment offset */
	R_GSO_OVER_MTU = 27, /* a super-packet whose segments would not fit the tunnel MTU */
	R_NO_ROUTE = 28,     /* no usable route to the tunnel endpoint */
	R_ECN_CE = 29,       /* outer CE: the user-space tier applies RFC 6040 */
	R_UNPARSED = 30,     /* lengths, checksum or headers the program does not take as they are */
	R_EXT_HEADER = 31,   /* an IPv6 extension header (hop-by-hop, routing, ...): not parsed */
	N_REASONS = 32,
};

enum netlmm_direction { D_UPLINK = 0, D_DOWNLINK = 1 };

/* One HoA binding (key: the HoA, network order), or one IPv6 home network prefix (map
 * `prefixes`, key: the /64's first 8 octets as they are on the wire; gateway 0). 56 bytes. */
struct netlmm_binding {
	__u8 endpoint[16]; /* the tunnel peer serving it (DMPA: the DLMAP; DLMAP: the DMPA) */
	__u8 mac[6];       /* DMPA: the MS MAC */
	__u8 pad[2];
	__u32 ifindex;     /* DMPA: the access port the MS is on */
	__u32 gateway;     /* DMPA: the MS's default gateway (network order): ICMP to it punts */
	__u32 link;        /* DMPA: the access link index (user space's) */
	__u32 flags;
	__u64 packets;     /* forwarded through it by this tier, both directions */
	__u64 octets;      /* inner (IPv4 or IPv6) octets of those */
};

/* The node's configuration: entry 0 of the `config` array. 36 bytes. */
struct netlmm_config {
	__u8 local[16];       /* our tunnel address */
	__u8 pseudo_mac[6];   /* DMPA: the MSs' gateway MAC */
	__u8 hop_limit;       /* outer IPv6 hop limit */
	__u8 role;            /* 1 DMPA, 2 DLMAP; 0: not configured (every program punts) */
	__u32 tunnel_mtu;     /* the largest inner (IPv4 or IPv6) packet the tunnel carries */
	__u32 transport_ifindex;
	__u32 tun_ifindex;    /* DLMAP: its TUN; decapsulated packets enter the stack there */
};

struct netlmm_counter {
	__u64 packets;
	__u64 bytes;
};

#endif
