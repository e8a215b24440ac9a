# PPPoE session frames (reference_pppoe): a bound MS's IPv4 in its session on a PPPoE access
# link, decapsulated uplink and encapsulated downlink; everything else there is punted (ARP).

cdef enum:
    PPPOE_IP_AT = ETH_LEN + PPPOE_LEN


cdef inline int session_ipv4(const uint8_t *f, Py_ssize_t n, uint32_t *session,
                             uint32_t *tot) noexcept nogil:
    cdef uint32_t length
    cdef int reason
    if n < PPPOE_IP_AT:
        return R_TRUNCATED
    if f[ETH_LEN] != PPPOE_VER_TYPE or f[ETH_LEN + 1] or be16(f + 20) != PPP_IPV4:
        return R_ARP
    length = be16(f + ETH_LEN + 4)
    if length < 2:
        return R_BAD_LENGTH
    if ETH_LEN + 6 + length > n:
        return R_TRUNCATED
    reason = ipv4_check(f + PPPOE_IP_AT, length - 2, True, tot)
    session[0] = be16(f + ETH_LEN + 2)
    return reason


cdef inline void put_pppoe_header(uint8_t *out, const uint8_t *dst, const uint8_t *src,
                                  uint32_t session, uint32_t tot) noexcept nogil:
    memcpy(out, dst, 6)
    memcpy(out + 6, src, 6)
    put16(out + 12, ETH_P_PPPOE_SES)
    out[14] = PPPOE_VER_TYPE
    out[15] = 0
    put16(out + 16, session)
    put16(out + 18, tot + 2)
    put16(out + 20, PPP_IPV4)
