/* The kernel tier's IPv6-in-IPv6 paths (RFC 2473, next header 41): a dual-stack MS's IPv6,
 * the source or destination in the /64 home network prefix bound to it (map `prefixes`).
 * Included by netlmm_tc.bpf.c after its helpers; each function here is one program's IPv6
 * branch, returning the TC verdict with its reason counted, as the IPv4 paths there do.
 *
 *   dmpa_access6     a bound MS's IPv6 to the pseudo-MAC, to an off-link destination
 *                    -> hop limit - 1, encapsulate (next header 41) to its DLMAP
 *   dmpa_transport6  next header 41 from the serving DLMAP to a bound prefix
 *                    -> decapsulate (DECAP_L3_IPV6), hop limit - 1, out of the MS's port
 *   dlmap_tunnel6    next header 41 whose inner source prefix is bound to the outer source
 *                    -> decapsulate into the stack through the TUN's ingress
 *   dlmap_downlink6  IPv6 to a bound prefix -> hop limit - 1, encapsulate to its DMPA
 *
 * Left to the user-space tier, as for IPv4: ND (ICMPv6 133..137: ICMP_GATEWAY), link-local
 * or multicast addresses (PASSED), a source prefix not bound (UNKNOWN_MS), hop limit <= 1
 * (TTL_EXPIRED: it answers Time Exceeded), packets over the tunnel MTU (FRAG_NEEDED: it
 * answers Packet Too Big; IPv6 is never fragmented on the way), extension headers
 * (EXT_HEADER, a fragment header IP_FRAGMENT), outer CE (ECN_CE). Dropped: a bound prefix
 * from another MAC or port (SPOOFED_SRC), tunnel input whose inner prefix is not bound to
 * the peer that sent it (SRC_NOT_BOUND).
 */
#ifndef NETLMM_TC6_H
#define NETLMM_TC6_H

/* Next headers linux/in.h and linux/in6.h do not name (the others are their IPPROTO_*). */
#define NH_HIP 139
#define NH_SHIM6 140
#define NH_TEST1 253
#define NH_TEST2 254
#define ND_FIRST 133 /* router solicitation */
#define ND_LAST 137  /* redirect */

/* The prefix key of an address: its first 8 octets, as they are. */
static __always_inline __u64 prefix_of(const struct in6_addr *a)
{
	__u64 key;

	__builtin_memcpy(&key, a, 8);
	return key;
}

static __always_inline int link_local(const struct in6_addr *a)
{
	return a->s6_addr[0] == 0xfe && (a->s6_addr[1] & 0xc0) == 0x80;
}

/* The traffic class of an IPv6 header. */
static __always_inline __u8 traffic_class(const struct ipv6hdr *ip6)
{
	return bpf_ntohl(*(const __u32 *)ip6) >> 20;
}

/* An IPv6 header as the programs take it: R_FORWARDED and ``*tot`` its packet's length when
 * that fits in ``avail`` (a super-packet: equals it; a BIG TCP one has payload length 0). */
static __always_inline int ipv6_ok(struct __sk_buff *skb, struct ipv6hdr *ip6, __u32 avail,
				   __u32 *tot)
{
	if (ip6->version != 6)
		return R_UNPARSED;
	*tot = IP6_LEN + bpf_ntohs(ip6->payload_len);
	if (*tot > avail || (skb->gso_size && *tot != avail))
		return R_UNPARSED;
	return R_FORWARDED;
}

/* R_FORWARDED for an upper-layer header after the IPv6 one; the punt for an extension header. */
static __always_inline int extension(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_FRAGMENT:
		return R_IP_FRAGMENT;
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_AH:
	case IPPROTO_DSTOPTS:
	case IPPROTO_MH:
	case NH_HIP:
	case NH_SHIM6:
	case NH_TEST1:
	case NH_TEST2:
		return R_EXT_HEADER;
	}
	return R_FORWARDED;
}

/* Whether an IPv6 packet of ``tot`` octets fits the tunnel: a super-packet when each of its
 * segments does. Never fragmented: a packet over it is FRAG_NEEDED (Packet Too Big). */
static __always_inline int fits6(struct __sk_buff *skb, struct ipv6hdr *ip6, void *end,
				 __u32 tot, __u32 mtu)
{
	__u32 l4;

	if (!skb->gso_size)
		return tot <= mtu ? R_FORWARDED : R_FRAG_NEEDED;
	if (ip6->nexthdr == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip6 + 1);

		if ((void *)(tcp + 1) > end)
			return R_UNPARSED;
		l4 = tcp->doff * 4;
	} else if (ip6->nexthdr == IPPROTO_UDP) {
		l4 = sizeof(struct udphdr);
	} else {
		return R_GSO_OVER_MTU;
	}
	return IP6_LEN + l4 + skb->gso_size <= mtu ? R_FORWARDED : R_GSO_OVER_MTU;
}

/* Hop limit ``hop`` - 1 at ``off``: no header checksum, but a CHECKSUM_COMPLETE sum follows. */
static __always_inline int decrement_hop_limit(struct __sk_buff *skb, __u32 off, __u8 hop)
{
	hop--;
	return bpf_skb_store_bytes(skb, off + offsetof(struct ipv6hdr, hop_limit), &hop, 1,
				   BPF_F_RECOMPUTE_CSUM);
}

/* The checks both encapsulating paths make of the IPv6 packet at ETH_HLEN after its binding,
 * then the encapsulation: the TC verdict (the reason counted in ``dir``). */
static __always_inline int encapsulate6(struct __sk_buff *skb, struct netlmm_config *cfg,
					struct netlmm_binding *b, struct ipv6hdr *ip6, void *end,
					__u32 len, __u32 dir)
{
	struct bpf_fib_lookup fib;
	__u32 tot;
	__u8 tclass, hop;
	int r, how, act;

	r = ipv6_ok(skb, ip6, len - ETH_HLEN, &tot);
	if (r)
		return count(dir, r, len), TC_ACT_OK;
	hop = ip6->hop_limit;
	if (hop <= 1)
		return count(dir, R_TTL_EXPIRED, len), TC_ACT_OK;
	r = extension(ip6->nexthdr);
	if (r)
		return count(dir, r, len), TC_ACT_OK;
	r = fits6(skb, ip6, end, tot, cfg->tunnel_mtu);
	if (r)
		return count(dir, r, len), TC_ACT_OK;
	tclass = traffic_class(ip6);
	how = route6(skb, cfg, b->endpoint, IPPROTO_IPV6, &fib);
	if (how < 0)
		return count(dir, R_NO_ROUTE, len), TC_ACT_OK;
	/* Ethernet may pad a short frame: the tunnel carries the IPv6 packet only */
	if (!skb->gso_size && len > ETH_HLEN + tot && bpf_skb_change_tail(skb, ETH_HLEN + tot, 0))
		return count(dir, R_UNPARSED, len), TC_ACT_OK;
	if (decrement_hop_limit(skb, ETH_HLEN, hop))
		return count(dir, R_UNPARSED, len), TC_ACT_OK;
	act = encapsulate(skb, cfg, b->endpoint, tot, tclass, IPPROTO_IPV6, &fib, how);
	if (act < 0) /* as it came but one hop down: the user-space tier would take another */
		return count(dir, R_UNPARSED, len), TC_ACT_SHOT;
	count_binding(b, tot);
	count(dir, R_FORWARDED, tot);
	return act;
}

/* DMPA, access: an IPv6 frame to the pseudo-MAC. */
static __always_inline int dmpa_access6(struct __sk_buff *skb, struct netlmm_config *cfg,
					struct ethhdr *eth, void *end, __u32 len)
{
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct netlmm_binding *b;
	__u8 *type = (void *)(ip6 + 1);
	__u64 prefix;

	if ((void *)(ip6 + 1) > end)
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	/* ND for the router (unicast NUD, redirects): the user-space tier answers it */
	if (ip6->nexthdr == IPPROTO_ICMPV6 && (void *)(type + 1) <= end &&
	    bpf_ntohs(ip6->payload_len) > 0 && *type >= ND_FIRST && *type <= ND_LAST)
		return count(D_UPLINK, R_ICMP_GATEWAY, len), TC_ACT_OK;
	if (ip6->daddr.s6_addr[0] == 0xff || link_local(&ip6->daddr) || link_local(&ip6->saddr))
		return count(D_UPLINK, R_PASSED, len), TC_ACT_OK;
	prefix = prefix_of(&ip6->saddr);
	b = bpf_map_lookup_elem(&prefixes, &prefix);
	if (!b)
		return count(D_UPLINK, R_UNKNOWN_MS, len), TC_ACT_OK;
	if (mac_differs(eth->h_source, b->mac) || skb->ifindex != b->ifindex)
		return count(D_UPLINK, R_SPOOFED_SRC, len), TC_ACT_SHOT;
	return encapsulate6(skb, cfg, b, ip6, end, len, D_UPLINK);
}

/* The inner IPv6 packet of a tunnel packet (``ip6``, next header 41, to our address): R_FORWARDED
 * when both headers' lengths are the frame's. */
static __always_inline int inner6_ok(struct ipv6hdr *ip6, void *end, __u32 len)
{
	struct ipv6hdr *in = (void *)(ip6 + 1);

	if ((void *)(in + 1) > end || OUTER + bpf_ntohs(ip6->payload_len) != len)
		return R_UNPARSED;
	if (in->version != 6 || IP6_LEN + bpf_ntohs(in->payload_len) != len - OUTER)
		return R_UNPARSED;
	return R_FORWARDED;
}

/* Whether the outer header says CE (the ECN bits of its traffic class both set): the user-space
 * tier applies RFC 6040. Also what the IPv4-in-IPv6 decapsulations in netlmm_tc.bpf.c ask. */
static __always_inline int outer_ce(struct ipv6hdr *ip6)
{
	return (traffic_class(ip6) & 3) == 3;
}

/* DMPA, transport: next header 41 to our address. */
static __always_inline int dmpa_transport6(struct __sk_buff *skb, struct netlmm_config *cfg,
					   struct ipv6hdr *ip6, void *end, __u32 len)
{
	struct ipv6hdr *in = (void *)(ip6 + 1);
	struct netlmm_binding *b;
	struct ethhdr *eth;
	__u32 tot = len - OUTER, ifindex;
	__u64 prefix;
	__u8 hop;
	int r;

	r = inner6_ok(ip6, end, len);
	if (r)
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	prefix = prefix_of(&in->daddr);
	b = bpf_map_lookup_elem(&prefixes, &prefix);
	if (!b)
		return count(D_DOWNLINK, R_NO_BINDING, len), TC_ACT_OK;
	if (ip6_differs(&ip6->saddr, b->endpoint))
		return count(D_DOWNLINK, R_SRC_NOT_BOUND, len), TC_ACT_SHOT;
	if (outer_ce(ip6))
		return count(D_DOWNLINK, R_ECN_CE, len), TC_ACT_OK;
	hop = in->hop_limit;
	if (hop <= 1)
		return count(D_DOWNLINK, R_TTL_EXPIRED, len), TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -IP6_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV6 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	ifindex = b->ifindex;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return TC_ACT_SHOT;
	__builtin_memcpy(eth->h_dest, b->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->pseudo_mac, ETH_ALEN); /* h_proto: IPv6 already */
	if (decrement_hop_limit(skb, ETH_HLEN, hop))
		return TC_ACT_SHOT;
	count_binding(b, tot);
	count(D_DOWNLINK, R_FORWARDED, tot);
	return bpf_redirect(ifindex, 0);
}

/* DLMAP, tunnel input with next header 41: decapsulate into the kernel stack. */
static __always_inline int dlmap_tunnel6(struct __sk_buff *skb, struct netlmm_config *cfg,
					 void *end, struct ipv6hdr *ip6, __u32 len)
{
	struct ipv6hdr *in = (void *)(ip6 + 1);
	struct netlmm_binding *b;
	__u32 tot = len - OUTER;
	__u64 prefix;
	int r;

	r = inner6_ok(ip6, end, len);
	if (r)
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	prefix = prefix_of(&in->saddr);
	b = bpf_map_lookup_elem(&prefixes, &prefix);
	if (!b || ip6_differs(&ip6->saddr, b->endpoint))
		return count(D_UPLINK, R_SRC_NOT_BOUND, len), TC_ACT_SHOT;
	if (outer_ce(ip6))
		return count(D_UPLINK, R_ECN_CE, len), TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -IP6_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV6 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	count_binding(b, tot);
	count(D_UPLINK, R_FORWARDED, tot);
	/* the Ethernet header says IPv6 already; the stack routes it and decrements the hop
	 * limit, entering through the TUN as the user-space tier's packets do */
	return cfg->tun_ifindex ? bpf_redirect(cfg->tun_ifindex, BPF_F_INGRESS) : TC_ACT_OK;
}

/* DLMAP, IPv6 not to our address: to a bound prefix, encapsulate to the DMPA serving it. */
static __always_inline int dlmap_downlink6(struct __sk_buff *skb, struct netlmm_config *cfg,
					   void *end, struct ipv6hdr *ip6, __u32 len)
{
	struct netlmm_binding *b;
	__u64 prefix = prefix_of(&ip6->daddr);

	b = bpf_map_lookup_elem(&prefixes, &prefix);
	/* transit not to a bound prefix: D_DOWNLINK, as dlmap_downlink counts IPv4 not to a bound
	 * HoA (before next header 41 this IPv6 went to D_UPLINK with what is not for us) */
	if (!b)
		return count(D_DOWNLINK, R_PASSED, len), TC_ACT_OK;
	return encapsulate6(skb, cfg, b, ip6, end, len, D_DOWNLINK);
}

#endif
