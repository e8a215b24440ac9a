// SPDX-License-Identifier: GPL-2.0 OR MIT
/* netlmm's kernel tier: TC clsact ingress programs that carry bound MSs' traffic through the
 * IPv4-in-IPv6 tunnel inside the kernel, GSO kept (docs/kernel-tier.md); dual-stack MSs' IPv6
 * (their /64 home network prefix) through the IPv6-in-IPv6 one (next header 41, netlmm_tc6.h).
 *
 *   dmpa_access     access port ingress, before the bridge: a bound MS's IPv4 to the pseudo-MAC
 *                   -> encapsulate to its DLMAP, out of the transport          (uplink)
 *   dmpa_transport  transport ingress: next header 4 from the serving DLMAP to a bound HoA
 *                   -> decapsulate, Ethernet from the pseudo-MAC, out of the MS's port (downlink)
 *   dlmap_ingress   every DLMAP interface: next header 4 from the DMPA an inner source is bound
 *                   to -> decapsulate, into the stack through the TUN's ingress  (uplink);
 *                   IPv4 to a bound HoA -> encapsulate to its DMPA                (downlink)
 *   probe_decap     run once by the node with a test packet: 0 when the kernel knows
 *                   BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (6.3+), the helper's error otherwise.
 *
 * Everything else is left as it came (TC_ACT_OK) for the user-space tier, counted by reason:
 * ARP, DHCP, ICMP to the gateway, unknown MSs, TTL <= 1, fragments, options, non-GSO packets
 * over the tunnel MTU, IPv6 ND, link-local and multicast IPv6, extension headers, MH. Two
 * reasons drop, as the user-space tier does: a bound HoA (or prefix) from the wrong MAC or port
 * (SPOOFED_SRC) and tunnel input from a peer the inner source is not bound to (SRC_NOT_BOUND).
 *
 * TTL: one decrement per node, as the user-space tier does: the DMPA decrements both ways, the
 * DLMAP on the downlink (its uplink goes through the kernel stack, which decrements).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "netlmm_tc.h"

/* Debian 12's uapi headers are 6.1's: the decapsulation flags came with 6.3 (uapi
 * linux/bpf.h, enum of BPF_F_ADJ_ROOM_*). Defined here when missing. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV6
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

#define AF_INET6 10
#define IP4_LEN 20
#define IP6_LEN 40
#define OUTER (ETH_HLEN + IP6_LEN)
#define ROLE_DMPA 1
#define ROLE_DLMAP 2
#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68
#define IP_MF_OFFSET 0x3fff
#define IP_DF 0x4000
/* what the parse pulls into the linear area at most: Ethernet, IPv6, IPv4, a TCP header */
#define PULL (ETH_HLEN + IP6_LEN + IP4_LEN + 60)

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20); /* the node sets its own before loading */
	__type(key, __u32);
	__type(value, struct netlmm_binding);
} bindings SEC(".maps");

/* The dual-stack MSs' IPv6 home network prefixes (/64): the key is the prefix's first 8
 * octets as they are in the packet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20); /* the node sets its own before loading */
	__type(key, __u64);
	__type(value, struct netlmm_binding);
} prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netlmm_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * N_REASONS);
	__type(key, __u32);
	__type(value, struct netlmm_counter);
} counters SEC(".maps");

static __always_inline int mac_differs(const void *a, const void *b)
{
	const __u16 *x = a, *y = b;

	return (x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]);
}

static __always_inline int ip6_differs(const void *a, const void *b)
{
	const __u32 *x = a, *y = b;

	return (x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]);
}

static __always_inline int count(__u32 dir, __u32 reason, __u64 bytes)
{
	__u32 key = dir * N_REASONS + reason;
	struct netlmm_counter *c = bpf_map_lookup_elem(&counters, &key);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return reason;
}

/* An IPv4 header (IHL 5) as the programs take it: R_FORWARDED when it is whole, valid and
 * neither fragmented nor carrying options; its length and checksum against what holds it. */
static __always_inline int ipv4_ok(struct iphdr *ip, __u32 avail)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
	__u16 tot;

	if (ip->version != 4)
		return R_UNPARSED;
	if (ip->ihl != 5)
		return R_IP_OPTIONS;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < IP4_LEN || tot > avail)
		return R_UNPARSED; /* also a BIG TCP packet (tot_len 0) */
#pragma unroll
	for (int i = 0; i < IP4_LEN / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	if (sum != 0xffff)
		return R_UNPARSED;
	if (ip->frag_off & bpf_htons(IP_MF_OFFSET))
		return R_IP_FRAGMENT;
	return R_FORWARDED;
}

/* The destination port of a UDP packet (0 when not UDP or not in the linear area). */
static __always_inline __u16 udp_dport(struct iphdr *ip, void *end)
{
	struct udphdr *udp = (void *)(ip + 1);

	if (ip->protocol != IPPROTO_UDP || (void *)(udp + 1) > end)
		return 0;
	return bpf_ntohs(udp->dest);
}

/* Whether a packet of ``tot`` octets at ``ip`` fits the tunnel: R_FORWARDED, or the punt. A
 * super-packet fits when each of its segments does (its headers and gso_size). */
static __always_inline int fits(struct __sk_buff *skb, struct iphdr *ip, void *end, __u32 tot,
				__u32 mtu)
{
	__u32 l4;

	if (!skb->gso_size)
		return tot <= mtu ? R_FORWARDED
				  : ((ip->frag_off & bpf_htons(IP_DF)) ? R_FRAG_NEEDED : R_FRAGMENT);
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);

		if ((void *)(tcp + 1) > end)
			return R_UNPARSED;
		l4 = tcp->doff * 4;
	} else if (ip->protocol == IPPROTO_UDP) {
		l4 = sizeof(struct udphdr);
	} else {
		return R_GSO_OVER_MTU;
	}
	return IP4_LEN + l4 + skb->gso_size <= mtu ? R_FORWARDED : R_GSO_OVER_MTU;
}

/* TTL - 1 with the header checksum updated incrementally (RFC 1624). */
static __always_inline int decrement_ttl(struct __sk_buff *skb, __u32 off)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + off;
	__u16 old, new;

	if ((void *)(ip + 1) > end)
		return -1;
	old = *(__u16 *)&ip->ttl;
	ip->ttl--;
	new = *(__u16 *)&ip->ttl;
	return bpf_l3_csum_replace(skb, off + offsetof(struct iphdr, check), old, new, 2);
}

static __always_inline void count_binding(struct netlmm_binding *b, __u32 octets)
{
	__sync_fetch_and_add(&b->packets, 1);
	__sync_fetch_and_add(&b->octets, octets);
}

/* Where the tunnel to ``dst`` carrying next header ``nexthdr`` (4 or 41: what policy routing
 * on the protocol sees) leaves: 0 with ``fib`` filled (MACs, ifindex), 1 when the neighbour is
 * not known yet (bpf_redirect_neigh resolves it), -1 when there is no route. */
static __always_inline int route6(struct __sk_buff *skb, struct netlmm_config *cfg,
				  const __u8 *dst, __u8 nexthdr, struct bpf_fib_lookup *fib)
{
	int rc;

	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET6;
	fib->l4_protocol = nexthdr;
	fib->tot_len = 0; /* a super-packet must not fail the MTU check */
	fib->ifindex = cfg->transport_ifindex;
	__builtin_memcpy(fib->ipv6_src, cfg->local, 16);
	__builtin_memcpy(fib->ipv6_dst, dst, 16);
	rc = bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return 1;
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED) {
		/* IPv6 forwarding off on the transport: bpf_redirect_neigh routes by itself */
		fib->ifindex = cfg->transport_ifindex;
		return 2;
	}
	return -1;
}

/* The packet at ETH_HLEN is IPv4 (``nexthdr`` 4) or IPv6 (41) of ``tot`` octets: put an IPv6
 * header to ``dst`` in front of it and send it where ``fib`` says. Returns the TC verdict, or
 * -1 when it could not (the packet is unchanged then). */
static __always_inline int encapsulate(struct __sk_buff *skb, struct netlmm_config *cfg,
				       const __u8 *dst, __u32 tot, __u8 tos, __u8 nexthdr,
				       struct bpf_fib_lookup *fib, int how)
{
	void *data, *end;
	struct ipv6hdr *ip6;
	struct ethhdr *eth;
	struct bpf_redir_neigh nh;

	if (bpf_skb_adjust_room(skb, IP6_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return -1;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip6 = data + ETH_HLEN;
	if ((void *)(ip6 + 1) > end)
		return TC_ACT_SHOT; /* cannot happen: the room was just made in the linear area */
	/* RFC 2473 5: traffic class from the inner TOS or traffic class (RFC 6040 normal
	 * mode), flow label 0 */
	*(__u32 *)ip6 = bpf_htonl(0x60000000 | ((__u32)tos << 20));
	ip6->payload_len = bpf_htons(tot);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = cfg->hop_limit;
	__builtin_memcpy(&ip6->saddr, cfg->local, 16);
	__builtin_memcpy(&ip6->daddr, dst, 16);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	if (how == 0) {
		__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
		return bpf_redirect(fib->ifindex, 0);
	}
	if (how == 1) {
		__builtin_memset(&nh, 0, sizeof(nh));
		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, fib->ipv6_dst, 16);
		return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect_neigh(fib->ifindex, NULL, 0, 0);
}

static __always_inline struct netlmm_config *configured(__u8 role)
{
	__u32 zero = 0;
	struct netlmm_config *cfg = bpf_map_lookup_elem(&config, &zero);

	return cfg && cfg->role == role ? cfg : NULL;
}

/* Pull the first ``PULL`` octets (or the whole packet) into the linear area. */
static __always_inline void pull(struct __sk_buff *skb)
{
	__u32 want = skb->len < PULL ? skb->len : PULL;

	if ((long)skb->data + want > (long)skb->data_end)
		bpf_skb_pull_data(skb, want);
}

#include "netlmm_tc6.h"

SEC("tc")
int dmpa_access(struct __sk_buff *skb)
{
	struct netlmm_config *cfg = configured(ROLE_DMPA);
	struct bpf_fib_lookup fib;
	struct netlmm_binding *b;
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 len = skb->len, tot, hoa;
	int r, how, act;
	__u8 tos;

	if (!cfg)
		return TC_ACT_OK;
	pull(skb);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return count(D_UPLINK, R_PASSED, len), TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return count(D_UPLINK, R_ARP, len), TC_ACT_OK;
	if (mac_differs(eth->h_dest, cfg->pseudo_mac))
		return count(D_UPLINK, R_PASSED, len), TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return dmpa_access6(skb, cfg, eth, end, len);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count(D_UPLINK, R_PASSED, len), TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	r = ipv4_ok(ip, len - ETH_HLEN);
	if (r)
		return count(D_UPLINK, r, len), TC_ACT_OK;
	tot = bpf_ntohs(ip->tot_len);
	if (udp_dport(ip, end) == DHCP_SERVER_PORT)
		return count(D_UPLINK, R_DHCP, len), TC_ACT_OK;
	hoa = ip->saddr;
	b = bpf_map_lookup_elem(&bindings, &hoa);
	if (!b)
		return count(D_UPLINK, R_UNKNOWN_MS, len), TC_ACT_OK;
	if (ip->protocol == IPPROTO_ICMP && ip->daddr == b->gateway)
		return count(D_UPLINK, R_ICMP_GATEWAY, len), TC_ACT_OK;
	if (mac_differs(eth->h_source, b->mac) || skb->ifindex != b->ifindex)
		return count(D_UPLINK, R_SPOOFED_SRC, len), TC_ACT_SHOT;
	if (ip->ttl <= 1)
		return count(D_UPLINK, R_TTL_EXPIRED, len), TC_ACT_OK;
	r = fits(skb, ip, end, tot, cfg->tunnel_mtu);
	if (r)
		return count(D_UPLINK, r, len), TC_ACT_OK;
	how = route6(skb, cfg, b->endpoint, IPPROTO_IPIP, &fib);
	if (how < 0)
		return count(D_UPLINK, R_NO_ROUTE, len), TC_ACT_OK;
	tos = ip->tos;
	/* Ethernet may pad a short frame: the tunnel carries the IPv4 packet only */
	if (!skb->gso_size && len > ETH_HLEN + tot && bpf_skb_change_tail(skb, ETH_HLEN + tot, 0))
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	if (decrement_ttl(skb, ETH_HLEN))
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	act = encapsulate(skb, cfg, b->endpoint, tot, tos, IPPROTO_IPIP, &fib, how);
	if (act < 0) {
		/* the room could not be made: the packet is as it came but one TTL down; the
		 * user-space tier would decrement it again, so it goes no further */
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_SHOT;
	}
	count_binding(b, tot);
	count(D_UPLINK, R_FORWARDED, tot);
	return act;
}

SEC("tc")
int dmpa_transport(struct __sk_buff *skb)
{
	struct netlmm_config *cfg = configured(ROLE_DMPA);
	struct netlmm_binding *b;
	void *data, *end;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	struct iphdr *ip;
	__u32 len = skb->len, tot, hoa, ifindex;
	int r;

	if (!cfg)
		return TC_ACT_OK;
	pull(skb);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > end || eth->h_proto != bpf_htons(ETH_P_IPV6) ||
	    ip6->version != 6 || ip6_differs(&ip6->daddr, cfg->local))
		return count(D_DOWNLINK, R_PASSED, len), TC_ACT_OK; /* the stack drops a bad version */
	if (ip6->nexthdr == IPPROTO_IPV6)
		return dmpa_transport6(skb, cfg, ip6, end, len);
	if (ip6->nexthdr != IPPROTO_IPIP)
		return count(D_DOWNLINK, R_PASSED, len), TC_ACT_OK;
	ip = (void *)(ip6 + 1);
	if ((void *)(ip + 1) > end || ETH_HLEN + IP6_LEN + bpf_ntohs(ip6->payload_len) != len)
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	r = ipv4_ok(ip, len - OUTER);
	if (r)
		return count(D_DOWNLINK, r, len), TC_ACT_OK;
	tot = bpf_ntohs(ip->tot_len);
	if (tot != len - OUTER)
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	if (udp_dport(ip, end) == DHCP_CLIENT_PORT)
		return count(D_DOWNLINK, R_DHCP, len), TC_ACT_OK;
	hoa = ip->daddr;
	b = bpf_map_lookup_elem(&bindings, &hoa);
	if (!b)
		return count(D_DOWNLINK, R_NO_BINDING, len), TC_ACT_OK;
	if (ip6_differs(&ip6->saddr, b->endpoint))
		return count(D_DOWNLINK, R_SRC_NOT_BOUND, len), TC_ACT_SHOT;
	if (outer_ce(ip6))
		return count(D_DOWNLINK, R_ECN_CE, len), TC_ACT_OK;
	if (ip->ttl <= 1)
		return count(D_DOWNLINK, R_TTL_EXPIRED, len), TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -IP6_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	ifindex = b->ifindex;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_SHOT;
	__builtin_memcpy(eth->h_dest, b->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->pseudo_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	if (decrement_ttl(skb, ETH_HLEN))
		return TC_ACT_SHOT;
	count_binding(b, tot);
	count(D_DOWNLINK, R_FORWARDED, tot);
	return bpf_redirect(ifindex, 0);
}

/* DLMAP, tunnel input: decapsulate into the kernel stack. */
static __always_inline int dlmap_tunnel(struct __sk_buff *skb, struct netlmm_config *cfg,
					void *end, struct ipv6hdr *ip6, __u32 len)
{
	struct netlmm_binding *b;
	struct ethhdr *eth;
	struct iphdr *ip = (void *)(ip6 + 1);
	__u32 tot, hoa;
	int r;

	if ((void *)(ip + 1) > end || ETH_HLEN + IP6_LEN + bpf_ntohs(ip6->payload_len) != len)
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	r = ipv4_ok(ip, len - OUTER);
	if (r)
		return count(D_UPLINK, r, len), TC_ACT_OK;
	tot = bpf_ntohs(ip->tot_len);
	if (tot != len - OUTER)
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	if (udp_dport(ip, end) == DHCP_SERVER_PORT)
		return count(D_UPLINK, R_DHCP, len), TC_ACT_OK;
	hoa = ip->saddr;
	b = bpf_map_lookup_elem(&bindings, &hoa);
	if (!b || ip6_differs(&ip6->saddr, b->endpoint))
		return count(D_UPLINK, R_SRC_NOT_BOUND, len), TC_ACT_SHOT;
	if (outer_ce(ip6))
		return count(D_UPLINK, R_ECN_CE, len), TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, -IP6_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return count(D_UPLINK, R_UNPARSED, len), TC_ACT_OK;
	eth = (void *)(long)skb->data;
	if ((void *)(eth + 1) > (void *)(long)skb->data_end)
		return TC_ACT_SHOT;
	eth->h_proto = bpf_htons(ETH_P_IP);
	count_binding(b, tot);
	count(D_UPLINK, R_FORWARDED, tot);
	/* into the stack as if the TUN had received it, as the user-space tier writes it there:
	 * the same input interface for the reverse-path check and netfilter; it routes (and
	 * decrements the TTL). Without a TUN, here. */
	return cfg->tun_ifindex ? bpf_redirect(cfg->tun_ifindex, BPF_F_INGRESS) : TC_ACT_OK;
}

/* DLMAP, IPv4 to a bound HoA: encapsulate to the DMPA serving it. */
static __always_inline int dlmap_downlink(struct __sk_buff *skb, struct netlmm_config *cfg,
					  void *end, struct iphdr *ip, __u32 len)
{
	struct bpf_fib_lookup fib;
	struct netlmm_binding *b;
	__u32 tot, hoa;
	int r, how, act;
	__u8 tos;

	if ((void *)(ip + 1) > end)
		return count(D_DOWNLINK, R_PASSED, len), TC_ACT_OK;
	hoa = ip->daddr;
	b = bpf_map_lookup_elem(&bindings, &hoa);
	if (!b)
		return count(D_DOWNLINK, R_PASSED, len), TC_ACT_OK;
	r = ipv4_ok(ip, len - ETH_HLEN);
	if (r)
		return count(D_DOWNLINK, r, len), TC_ACT_OK;
	tot = bpf_ntohs(ip->tot_len);
	if (ip->ttl <= 1)
		return count(D_DOWNLINK, R_TTL_EXPIRED, len), TC_ACT_OK;
	r = fits(skb, ip, end, tot, cfg->tunnel_mtu);
	if (r)
		return count(D_DOWNLINK, r, len), TC_ACT_OK;
	how = route6(skb, cfg, b->endpoint, IPPROTO_IPIP, &fib);
	if (how < 0)
		return count(D_DOWNLINK, R_NO_ROUTE, len), TC_ACT_OK;
	tos = ip->tos;
	if (!skb->gso_size && len > ETH_HLEN + tot && bpf_skb_change_tail(skb, ETH_HLEN + tot, 0))
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	if (decrement_ttl(skb, ETH_HLEN))
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_OK;
	act = encapsulate(skb, cfg, b->endpoint, tot, tos, IPPROTO_IPIP, &fib, how);
	if (act < 0)
		return count(D_DOWNLINK, R_UNPARSED, len), TC_ACT_SHOT;
	count_binding(b, tot);
	count(D_DOWNLINK, R_FORWARDED, tot);
	return act;
}

SEC("tc")
int dlmap_ingress(struct __sk_buff *skb)
{
	struct netlmm_config *cfg = configured(ROLE_DLMAP);
	void *data, *end;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u32 len = skb->len;

	if (!cfg)
		return TC_ACT_OK;
	pull(skb);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return count(D_DOWNLINK, R_PASSED, len), TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return dlmap_downlink(skb, cfg, end, (void *)(eth + 1), len);
	ip6 = (void *)(eth + 1);
	if (eth->h_proto != bpf_htons(ETH_P_IPV6) || (void *)(ip6 + 1) > end || ip6->version != 6)
		return count(D_UPLINK, R_PASSED, len), TC_ACT_OK;
	if (ip6_differs(&ip6->daddr, cfg->local))
		return dlmap_downlink6(skb, cfg, end, ip6, len); /* to a bound prefix, or passed */
	if (ip6->nexthdr == IPPROTO_IPIP)
		return dlmap_tunnel(skb, cfg, end, ip6, len);
	if (ip6->nexthdr == IPPROTO_IPV6)
		return dlmap_tunnel6(skb, cfg, end, ip6, len);
	return count(D_UPLINK, R_PASSED, len), TC_ACT_OK;
}

SEC("tc")
int probe_decap(struct __sk_buff *skb)
{
	return bpf_skb_adjust_room(skb, -IP6_LEN, BPF_ADJ_ROOM_MAC,
				   BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO) ? 1 : 0;
}
