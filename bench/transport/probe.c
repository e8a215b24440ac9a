/* Ceilings of the transport leg's I/O, without any appliance logic.
 *
 * One process per end; bench/transport/probe.py builds the namespaces, compiles this file and
 * runs a sender and a receiver side by side. Every mode is bounded by its SECONDS argument and
 * prints one JSON line. The packets are IPv4-in-IPv6 (next header 4) carrying one in-order TCP
 * flow 192.0.2.2:40000 -> 198.51.100.2:5201 with valid checksums (so the kernel's GRO may merge
 * them), SIZE bytes of outer IPv6 packet each, documentation prefixes only.
 *
 *   probe tx-raw  SRC6 DST6 SECONDS SIZE            IPPROTO_RAW socket, sendmmsg of 64
 *   probe tx-ring IF DSTMAC SRC6 DST6 SECONDS SIZE  AF_PACKET TPACKET_V2 TX ring + QDISC_BYPASS
 *   probe rx-raw  LOCAL6 SECONDS                    raw protocol-4 socket, recvmmsg of 64 (64 KiB)
 *   probe rx-ring IF SECONDS                        AF_PACKET TPACKET_V3 RX ring
 *   probe rx-vnet IF SECONDS                        AF_PACKET + PACKET_VNET_HDR, recvmmsg (64 KiB)
 *   probe tx-xdp IF DSTMAC SRC6 DST6 SECONDS SIZE BUDGET
 *                                                   AF_XDP socket (queue 0), TX ring only, no
 *                                                   XDP program; zero-copy tried first, then copy;
 *                                                   BUDGET > 0: XDP_MAX_TX_SKB_BUDGET (copy mode's
 *                                                   descriptors per sendto, kernel default 32)
 *   probe rx-xdp IF SECONDS native|skb             AF_XDP socket (queue 0) behind libxdp's default
 *                                                   program (XDP_REDIRECT to the XSK) attached in
 *                                                   driver (veth NAPI) or generic mode; zero-copy
 *                                                   tried first
 *   probe gro IF on|off                             ETHTOOL_SGRO (veth: GRO needs NAPI, on = NAPI)
 *   probe tso IF on|off                             ETHTOOL_STSO (veth GRO only takes packets from
 *                                                   a peer without TSO: veth_skb_is_eligible_for_gro)
 *
 * The two AF_XDP modes exist only when compiled with -DHAVE_XDP -lxdp -lbpf (Debian:
 * libxdp-dev libbpf-dev); they print on stderr which bind they got and the socket's drop counters.
 *
 * "packets" counts wire-sized packets (a GRO super-packet counts as the segments it carries),
 * "reads" the packets the socket handed over, "super" the super-packets among them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_XDP
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9 /* Linux 6.17; Debian 12's headers are older */
#endif
#endif

#define BATCH 64
#define BIG 65600
#define PAYLOAD_OFF (40 + 20 + 20) /* outer IPv6, inner IPv4, TCP */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    exit(1);
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s) {
    for (size_t i = 0; i + 1 < n; i += 2) s += (p[i] << 8) | p[i + 1];
    if (n & 1) s += p[n - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* One outer IPv6 packet of `size` bytes at p; TCP sequence `seq`; payload zeros (so the TCP
 * checksum covers the headers only and costs a few ns). */
static void build(uint8_t *p, size_t size, const struct in6_addr *src, const struct in6_addr *dst,
                  uint32_t seq) {
    size_t inner = size - 40, data = inner - 40;
    memset(p, 0, PAYLOAD_OFF);
    p[0] = 0x60;
    p[4] = inner >> 8, p[5] = inner & 0xff, p[6] = 4, p[7] = 64;
    memcpy(p + 8, src, 16);
    memcpy(p + 24, dst, 16);
    uint8_t *ip = p + 40, *tcp = ip + 20;
    ip[0] = 0x45, ip[2] = inner >> 8, ip[3] = inner & 0xff, ip[6] = 0x40, ip[8] = 64, ip[9] = 6;
    ip[12] = 192, ip[13] = 0, ip[14] = 2, ip[15] = 2;
    ip[16] = 198, ip[17] = 51, ip[18] = 100, ip[19] = 2;
    uint16_t c = fold(sum16(ip, 20, 0));
    ip[10] = c >> 8, ip[11] = c & 0xff;
    tcp[0] = 40000 >> 8, tcp[1] = 40000 & 0xff, tcp[2] = 5201 >> 8, tcp[3] = 5201 & 0xff;
    tcp[4] = seq >> 24, tcp[5] = seq >> 16, tcp[6] = seq >> 8, tcp[7] = seq;
    tcp[11] = 1;       /* ack 1 */
    tcp[12] = 5 << 4;  /* data offset 5 */
    tcp[13] = 0x10;    /* ACK only: GRO keeps merging */
    tcp[14] = 0xff, tcp[15] = 0xff;
    uint32_t s = sum16(ip + 12, 8, 0) + 6 + (uint32_t)(data + 20);
    c = fold(sum16(tcp, 20, s));
    tcp[16] = c >> 8, tcp[17] = c & 0xff;
}

static void result(const char *mode, double secs, unsigned long long packets,
                   unsigned long long reads, unsigned long long supers,
                   unsigned long long bytes) {
    printf("{\"mode\": \"%s\", \"seconds\": %.3f, \"packets\": %llu, \"reads\": %llu, "
           "\"super\": %llu, \"bytes\": %llu, \"kpps\": %.1f, \"gbit_s\": %.3f}\n",
           mode, secs, packets, reads, supers, bytes, secs > 0 ? packets / secs / 1e3 : 0.0,
           secs > 0 ? bytes * 8 / secs / 1e9 : 0.0);
}

static int tx_raw(char **av) {
    struct in6_addr src, dst;
    if (inet_pton(AF_INET6, av[0], &src) != 1 || inet_pton(AF_INET6, av[1], &dst) != 1) return 2;
    double secs = atof(av[2]);
    size_t size = atoi(av[3]);
    int fd = socket(AF_INET6, SOCK_RAW, IPPROTO_RAW);
    if (fd < 0) die("socket");
    struct sockaddr_in6 local = {.sin6_family = AF_INET6, .sin6_addr = src};
    if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
    static uint8_t buf[BATCH][2048];
    struct iovec io[BATCH];
    struct mmsghdr v[BATCH];
    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_addr = dst};
    memset(v, 0, sizeof v);
    for (int i = 0; i < BATCH; i++) {
        io[i].iov_base = buf[i], io[i].iov_len = size;
        v[i].msg_hdr.msg_iov = &io[i], v[i].msg_hdr.msg_iovlen = 1;
        v[i].msg_hdr.msg_name = &to, v[i].msg_hdr.msg_namelen = sizeof to;
    }
    uint32_t seq = 1;
    unsigned long long sent = 0, errors = 0;
    double start = now(), end = start + secs, t = start;
    while (t < end) {
        for (int i = 0; i < BATCH; i++, seq += size - PAYLOAD_OFF) build(buf[i], size, &src, &dst, seq);
        int done = 0;
        while (done < BATCH) {
            int k = sendmmsg(fd, v + done, BATCH - done, 0);
            if (k < 0) {
                if (errno == EINTR) continue;
                errors++, k = 1; /* ENOBUFS and friends: that packet is lost */
            } else sent += k;
            done += k;
        }
        t = now();
    }
    result("tx-raw", t - start, sent, sent, errors, sent * size);
    return 0;
}

static int if_index(int fd, const char *name) {
    (void)fd;
    int i = if_nametoindex(name);
    if (!i) die("if_nametoindex");
    return i;
}

static int tx_ring(char **av) {
    const char *ifname = av[0];
    uint8_t mac[6];
    if (sscanf(av[1], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", mac, mac + 1, mac + 2, mac + 3, mac + 4,
               mac + 5) != 6)
        return 2;
    struct in6_addr src, dst;
    if (inet_pton(AF_INET6, av[2], &src) != 1 || inet_pton(AF_INET6, av[3], &dst) != 1) return 2;
    double secs = atof(av[4]);
    size_t size = atoi(av[5]);
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) die("socket");
    int ver = TPACKET_V2, one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof ver) < 0) die("PACKET_VERSION");
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) die("BYPASS");
    struct tpacket_req req = {.tp_block_size = 1 << 16, .tp_frame_size = 2048,
                              .tp_block_nr = 16};
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) die("TX_RING");
    size_t len = (size_t)req.tp_block_size * req.tp_block_nr;
    uint8_t *ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) die("mmap");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6),
                             .sll_ifindex = if_index(fd, ifname)};
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) die("bind");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    uint8_t eth[14];
    memcpy(eth, mac, 6);
    memcpy(eth + 6, ifr.ifr_hwaddr.sa_data, 6);
    eth[12] = 0x86, eth[13] = 0xdd;
    unsigned frames = req.tp_frame_nr, at = 0, queued = 0;
    size_t hdr = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
    uint32_t seq = 1;
    unsigned long long sent = 0, waits = 0;
    double start = now(), end = start + secs, t = start;
    while (t < end) {
        struct tpacket2_hdr *h = (void *)(ring + (size_t)at * req.tp_frame_size);
        if (h->tp_status != TP_STATUS_AVAILABLE) {
            /* ring full: kick the kernel and wait for a free frame */
            if (queued) send(fd, NULL, 0, 0), queued = 0;
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, 10);
            waits++;
            t = now();
            continue;
        }
        uint8_t *p = (uint8_t *)h + hdr;
        memcpy(p, eth, 14);
        build(p + 14, size, &src, &dst, seq);
        seq += size - PAYLOAD_OFF;
        h->tp_len = size + 14;
        __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        at = (at + 1) % frames, sent++;
        if (++queued == BATCH) {
            if (send(fd, NULL, 0, 0) < 0 && errno != ENOBUFS) die("send");
            queued = 0;
            t = now();
        }
    }
    if (queued) send(fd, NULL, 0, 0);
    result("tx-ring", t - start, sent, sent, waits, sent * size);
    return 0;
}

/* Inner IPv4 packet p of n bytes: how many wire packets of the flow it carries. */
static unsigned segments(const uint8_t *ip, size_t n, unsigned gso_size) {
    if (n < 40 || (ip[0] >> 4) != 4) return 1;
    size_t data = n - 40;
    if (gso_size == 0) gso_size = 1500 - 40; /* the probe's MSS: 1500-byte inner packets */
    return data <= gso_size ? 1 : (unsigned)((data + gso_size - 1) / gso_size);
}

static int rx_raw(char **av) {
    struct in6_addr local;
    if (inet_pton(AF_INET6, av[0], &local) != 1) return 2;
    double secs = atof(av[1]);
    int fd = socket(AF_INET6, SOCK_RAW, IPPROTO_IPIP);
    if (fd < 0) die("socket");
    int rcv = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = local};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    struct timeval tv = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static uint8_t buf[BATCH][BIG];
    struct iovec io[BATCH];
    struct mmsghdr v[BATCH];
    memset(v, 0, sizeof v);
    for (int i = 0; i < BATCH; i++) {
        io[i].iov_base = buf[i], io[i].iov_len = BIG;
        v[i].msg_hdr.msg_iov = &io[i], v[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long packets = 0, reads = 0, supers = 0, bytes = 0;
    double start = 0, last = 0, end = now() + secs;
    while (now() < end) {
        int got = recvmmsg(fd, v, BATCH, MSG_WAITFORONE, NULL);
        if (got <= 0) continue;
        if (!start) start = now();
        for (int i = 0; i < got; i++) {
            unsigned s = segments(buf[i], v[i].msg_len, 0);
            packets += s, reads++, supers += s > 1, bytes += v[i].msg_len + 40 * s;
        }
        last = now();
    }
    result("rx-raw", start ? last - start : 0, packets, reads, supers, bytes);
    return 0;
}

static int rx_ring(char **av) {
    double secs = atof(av[1]);
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IPV6));
    if (fd < 0) die("socket");
    int ver = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &ver, sizeof ver) < 0) die("PACKET_VERSION");
    struct tpacket_req3 req = {.tp_block_size = 1 << 18, .tp_block_nr = 32,
                               .tp_frame_size = 2048, .tp_retire_blk_tov = 1};
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) die("RX_RING");
    size_t len = (size_t)req.tp_block_size * req.tp_block_nr;
    uint8_t *ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
    if (ring == MAP_FAILED) die("mmap");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6),
                             .sll_ifindex = if_index(fd, av[0])};
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) die("bind");
    unsigned long long packets = 0, reads = 0, supers = 0, bytes = 0;
    unsigned block = 0;
    double start = 0, last = 0, end = now() + secs;
    while (now() < end) {
        struct tpacket_block_desc *b = (void *)(ring + (size_t)block * req.tp_block_size);
        if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            poll(&pfd, 1, 100);
            continue;
        }
        if (!start) start = now();
        struct tpacket3_hdr *h = (void *)((uint8_t *)b + b->hdr.bh1.offset_to_first_pkt);
        for (unsigned i = 0; i < b->hdr.bh1.num_pkts; i++) {
            const uint8_t *p = (uint8_t *)h + h->tp_mac;
            if (h->tp_snaplen >= 54 && p[20] == 4) {
                unsigned s = segments(p + 54, h->tp_len - 54, 0);
                packets += s, reads++, supers += s > 1, bytes += h->tp_len - 14;
            }
            h = (void *)((uint8_t *)h + h->tp_next_offset);
        }
        __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        block = (block + 1) % req.tp_block_nr;
        last = now();
    }
    struct tpacket_stats_v3 st;
    socklen_t sl = sizeof st;
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl);
    result("rx-ring", start ? last - start : 0, packets, reads, st.tp_drops, bytes);
    return 0;
}

static int rx_vnet(char **av) {
    double secs = atof(av[1]);
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IPV6));
    if (fd < 0) die("socket");
    int one = 1, rcv = 4 << 20;
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) die("VNET_HDR");
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IPV6),
                             .sll_ifindex = if_index(fd, av[0])};
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) die("bind");
    struct timeval tv = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static uint8_t buf[BATCH][BIG];
    struct iovec io[BATCH];
    struct mmsghdr v[BATCH];
    memset(v, 0, sizeof v);
    for (int i = 0; i < BATCH; i++) {
        io[i].iov_base = buf[i], io[i].iov_len = BIG;
        v[i].msg_hdr.msg_iov = &io[i], v[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long packets = 0, reads = 0, supers = 0, bytes = 0, tcpv4 = 0;
    double start = 0, last = 0, end = now() + secs;
    size_t vh = sizeof(struct virtio_net_hdr);
    while (now() < end) {
        int got = recvmmsg(fd, v, BATCH, MSG_WAITFORONE, NULL);
        if (got <= 0) continue;
        if (!start) start = now();
        for (int i = 0; i < got; i++) {
            struct virtio_net_hdr *h = (void *)buf[i];
            const uint8_t *p = buf[i] + vh;
            size_t n = v[i].msg_len - vh;
            if (n < 54 || p[20] != 4) continue;
            unsigned s = segments(p + 54, n - 54, h->gso_type ? h->gso_size : 0);
            tcpv4 += (h->gso_type & 0x7f) == VIRTIO_NET_HDR_GSO_TCPV4;
            packets += s, reads++, supers += s > 1, bytes += n - 14 + 40 * (s - 1);
        }
        last = now();
    }
    result("rx-vnet", start ? last - start : 0, packets, reads, supers, bytes);
    fprintf(stderr, "gso_tcpv4 %llu\n", tcpv4);
    return 0;
}

#ifdef HAVE_XDP
#define XFRAMES 4096
#define XFRAME XSK_UMEM__DEFAULT_FRAME_SIZE

struct xsk {
    struct xsk_umem *umem;
    struct xsk_socket *sock;
    struct xsk_ring_prod fq, tx;
    struct xsk_ring_cons cq, rx;
    uint8_t *area;
    const char *bind; /* "zerocopy" or "copy" */
    const char *attach; /* "native", "skb" or "none" */
};

/* One AF_XDP socket on ifname queue 0: tries zero-copy, then copy; for RX (rx = 1 native,
 * rx = 2 generic), attaches libxdp's default program, native falling back to generic. Every
 * refusal goes to stderr with its errno text. */
static void xsk_open(struct xsk *x, const char *ifname, int rx) {
    x->area = mmap(NULL, (size_t)XFRAMES * XFRAME, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (x->area == MAP_FAILED) die("mmap umem");
    /* fill ring twice the frames: the kernel publishes what it took from it lazily, so a ring
     * of exactly the frames would be "full" while every frame is in use */
    struct xsk_umem_config uc = {.fill_size = 2 * XFRAMES, .comp_size = XFRAMES,
                                 .frame_size = XFRAME, .frame_headroom = 0};
    int err = xsk_umem__create(&x->umem, x->area, (uint64_t)XFRAMES * XFRAME, &x->fq, &x->cq, &uc);
    if (err) errno = -err, die("xsk_umem__create");
    const uint32_t attach[] = {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
    const char *attach_name[] = {"native", "skb"};
    const uint16_t bind[] = {XDP_ZEROCOPY, XDP_COPY};
    const char *bind_name[] = {"zerocopy", "copy"};
    for (int a = rx == 2 ? 1 : 0; a < (rx ? 2 : 1); a++) {
        for (int b = 0; b < 2; b++) {
            struct xsk_socket_config sc = {
                .rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
                .tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS,
                .libxdp_flags = rx ? 0 : XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
                .xdp_flags = rx ? attach[a] : 0,
                .bind_flags = bind[b] | XDP_USE_NEED_WAKEUP,
            };
            err = xsk_socket__create(&x->sock, ifname, 0, x->umem, rx ? &x->rx : NULL,
                                     rx ? NULL : &x->tx, &sc);
            if (!err) {
                x->bind = bind_name[b], x->attach = rx ? attach_name[a] : "none";
                fprintf(stderr, "xsk bind %s attach %s\n", x->bind, x->attach);
                return;
            }
            fprintf(stderr, "xsk refused: attach %s bind %s: %s\n", rx ? attach_name[a] : "none",
                    bind_name[b], strerror(-err));
        }
    }
    errno = -err;
    die("xsk_socket__create");
}

static void xsk_stats(struct xsk *x) {
    struct xdp_statistics st;
    socklen_t sl = sizeof st;
    memset(&st, 0, sizeof st);
    if (getsockopt(xsk_socket__fd(x->sock), SOL_XDP, XDP_STATISTICS, &st, &sl) == 0)
        fprintf(stderr, "xsk stats rx_dropped %llu rx_invalid %llu tx_invalid %llu rx_ring_full "
                "%llu fill_ring_empty %llu tx_ring_empty %llu\n",
                (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
                (unsigned long long)st.tx_invalid_descs, (unsigned long long)st.rx_ring_full,
                (unsigned long long)st.rx_fill_ring_empty_descs,
                (unsigned long long)st.tx_ring_empty_descs);
}

static int tx_xdp(char **av) {
    const char *ifname = av[0];
    uint8_t mac[6];
    if (sscanf(av[1], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", mac, mac + 1, mac + 2, mac + 3, mac + 4,
               mac + 5) != 6)
        return 2;
    struct in6_addr src, dst;
    if (inet_pton(AF_INET6, av[2], &src) != 1 || inet_pton(AF_INET6, av[3], &dst) != 1) return 2;
    double secs = atof(av[4]);
    size_t size = atoi(av[5]);
    unsigned budget = atoi(av[6]);
    struct xsk x;
    memset(&x, 0, sizeof x);
    xsk_open(&x, ifname, 0);
    int fd = xsk_socket__fd(x.sock), ufd = socket(AF_INET, SOCK_DGRAM, 0);
    if (budget && setsockopt(fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof budget) < 0)
        die("XDP_MAX_TX_SKB_BUDGET");
    struct ifreq ifr; /* an XSK takes no interface ioctl */
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(ufd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    close(ufd);
    uint8_t eth[14];
    memcpy(eth, mac, 6);
    memcpy(eth + 6, ifr.ifr_hwaddr.sa_data, 6);
    eth[12] = 0x86, eth[13] = 0xdd;
    static uint64_t free_frames[XFRAMES];
    unsigned nfree = 0;
    for (unsigned i = 0; i < XSK_RING_PROD__DEFAULT_NUM_DESCS; i++)
        free_frames[nfree++] = (uint64_t)i * XFRAME;
    uint32_t seq = 1, idx;
    unsigned long long queued = 0, done = 0, kicks = 0;
    double start = now(), end = start + secs, t = start;
    while (t < end) {
        unsigned n = xsk_ring_cons__peek(&x.cq, XFRAMES, &idx);
        for (unsigned i = 0; i < n; i++) free_frames[nfree++] = *xsk_ring_cons__comp_addr(&x.cq, idx + i);
        if (n) xsk_ring_cons__release(&x.cq, n), done += n;
        unsigned k = nfree < BATCH ? nfree : BATCH;
        if (k && xsk_ring_prod__reserve(&x.tx, k, &idx) == k) {
            for (unsigned i = 0; i < k; i++) {
                uint64_t addr = free_frames[--nfree];
                uint8_t *p = xsk_umem__get_data(x.area, addr);
                memcpy(p, eth, 14);
                build(p + 14, size, &src, &dst, seq);
                seq += size - PAYLOAD_OFF;
                struct xdp_desc *d = xsk_ring_prod__tx_desc(&x.tx, idx + i);
                d->addr = addr, d->len = size + 14;
            }
            xsk_ring_prod__submit(&x.tx, k);
            queued += k;
        }
        /* copy mode sends at most 32 descriptors per kick: kick while any are outstanding */
        if (queued > done) {
            kicks++;
            if (sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN &&
                errno != EBUSY && errno != ENOBUFS && errno != EINTR)
                die("sendto kick");
        }
        t = now();
    }
    xsk_stats(&x);
    fprintf(stderr, "xsk kicks %llu queued %llu completed %llu\n", kicks, queued, done);
    result("tx-xdp", t - start, done, done, 0, done * size);
    xsk_socket__delete(x.sock);
    xsk_umem__delete(x.umem);
    return 0;
}

static int rx_xdp(char **av) {
    double secs = atof(av[1]);
    struct xsk x;
    memset(&x, 0, sizeof x);
    if (strcmp(av[2], "native") && strcmp(av[2], "skb")) return 2;
    xsk_open(&x, av[0], strcmp(av[2], "skb") == 0 ? 2 : 1);
    int fd = xsk_socket__fd(x.sock);
    uint32_t idx;
    if (xsk_ring_prod__reserve(&x.fq, XFRAMES, &idx) != XFRAMES) die("fill ring");
    for (unsigned i = 0; i < XFRAMES; i++) *xsk_ring_prod__fill_addr(&x.fq, idx + i) = (uint64_t)i * XFRAME;
    xsk_ring_prod__submit(&x.fq, XFRAMES);
    unsigned long long packets = 0, reads = 0, other = 0, bytes = 0;
    double start = 0, last = 0, end = now() + secs;
    while (now() < end) {
        unsigned n = xsk_ring_cons__peek(&x.rx, BATCH, &idx);
        if (!n) {
            if (xsk_ring_prod__needs_wakeup(&x.fq)) recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            poll(&pfd, 1, 100);
            continue;
        }
        uint32_t fidx;
        if (xsk_ring_prod__reserve(&x.fq, n, &fidx) != n) die("fill ring"); /* n came back */
        for (unsigned i = 0; i < n; i++) {
            const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x.rx, idx + i);
            const uint8_t *p = xsk_umem__get_data(x.area, d->addr);
            if (d->len >= 54 && p[12] == 0x86 && p[13] == 0xdd && p[20] == 4) {
                if (!start) start = now(); /* not at a stray ND or MLD packet before the run */
                unsigned s = segments(p + 54, d->len - 54, 0);
                packets += s, reads++, bytes += d->len - 14;
            } else other++;
            *xsk_ring_prod__fill_addr(&x.fq, fidx + i) = d->addr & ~(uint64_t)(XFRAME - 1);
        }
        xsk_ring_prod__submit(&x.fq, n);
        xsk_ring_cons__release(&x.rx, n);
        last = now();
    }
    xsk_stats(&x);
    fprintf(stderr, "xsk other packets %llu\n", other);
    result("rx-xdp", start ? last - start : 0, packets, reads, 0, bytes);
    xsk_socket__delete(x.sock);
    xsk_umem__delete(x.umem);
    return 0;
}
#endif

static int feature(unsigned cmd, char **av) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ethtool_value ev = {.cmd = cmd, .data = strcmp(av[1], "on") == 0};
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", av[0]);
    ifr.ifr_data = (void *)&ev;
    if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) die("SIOCETHTOOL");
    printf("{\"feature\": %u, \"state\": \"%s\"}\n", cmd, av[1]);
    return 0;
}

static int gro(char **av) { return feature(ETHTOOL_SGRO, av); }
static int tso(char **av) { return feature(ETHTOOL_STSO, av); }

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct { const char *name; int args; int (*fn)(char **); } modes[] = {
        {"tx-raw", 4, tx_raw}, {"tx-ring", 6, tx_ring}, {"rx-raw", 2, rx_raw},
        {"rx-ring", 2, rx_ring}, {"rx-vnet", 2, rx_vnet}, {"gro", 2, gro}, {"tso", 2, tso},
#ifdef HAVE_XDP
        {"tx-xdp", 7, tx_xdp}, {"rx-xdp", 3, rx_xdp},
#endif
    };
    for (size_t i = 0; argc >= 2 && i < sizeof modes / sizeof *modes; i++)
        if (strcmp(argv[1], modes[i].name) == 0 && argc == 2 + modes[i].args)
            return modes[i].fn(argv + 2);
    fprintf(stderr, "usage: see the comment at the top of probe.c\n");
    return 2;
}
