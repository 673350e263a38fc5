/* sock.c - UDP sockets with TTL, PKTINFO, TOS and kernel receive timestamps. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef SOF_TIMESTAMPING_OPT_RX_FILTER
#define SOF_TIMESTAMPING_OPT_RX_FILTER (1 << 17) /* linux/net_tstamp.h of newer kernels */
#endif

int stamp_addr_parse(stamp_addr_t *a, const char *host, unsigned port)
{
    struct addrinfo hints, *res = NULL;
    char pbuf[16];
    if (!host || !*host || port > 65535) return STAMP_EINVAL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(pbuf, sizeof pbuf, "%u", port);
    /* strip the brackets of "[::1]" */
    char hbuf[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof hbuf) {
        memcpy(hbuf, host + 1, hl - 2);
        hbuf[hl - 2] = 0;
        host = hbuf;
    }
    if (getaddrinfo(host, pbuf, &hints, &res) != 0 || !res) return STAMP_EADDR;
    memset(a, 0, sizeof *a);
    memcpy(&a->addr, res->ai_addr, res->ai_addrlen);
    a->len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return STAMP_OK;
}

static int is_mapped(const struct sockaddr_in6 *s6)
{
    return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
}

int stamp_addr_format(const stamp_addr_t *a, char *host, size_t hostlen, unsigned *port)
{
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->addr;
        if (!inet_ntop(AF_INET, &s->sin_addr, host, (socklen_t)hostlen)) return -errno;
        if (port) *port = ntohs(s->sin_port);
        return STAMP_OK;
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->addr;
        const void *src = &s->sin6_addr;
        int fam = AF_INET6;
        if (is_mapped(s)) {
            src = &s->sin6_addr.s6_addr[12];
            fam = AF_INET;
        }
        if (!inet_ntop(fam, src, host, (socklen_t)hostlen)) return -errno;
        if (port) *port = ntohs(s->sin6_port);
        return STAMP_OK;
    }
    return STAMP_EINVAL;
}

int stamp_addr_equal(const stamp_addr_t *a, const stamp_addr_t *b)
{
    if (a->addr.ss_family != b->addr.ss_family) return 0;
    if (a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
        return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
    }
    return 0;
}

/* Turn an IPv4 address into its IPv4-mapped IPv6 form (for dual-stack sockets). */
STAMP_HIDDEN void stamp_addr_to_mapped(stamp_addr_t *a)
{
    if (a->addr.ss_family != AF_INET) return;
    struct sockaddr_in s4;
    memcpy(&s4, &a->addr, sizeof s4);
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = s4.sin_port;
    s6.sin6_addr.s6_addr[10] = 0xff;
    s6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&s6.sin6_addr.s6_addr[12], &s4.sin_addr, 4);
    memset(a, 0, sizeof *a);
    memcpy(&a->addr, &s6, sizeof s6);
    a->len = sizeof s6;
}

uint64_t stamp_sock_drops(int fd)
{
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t l = sizeof mi;
    memset(mi, 0, sizeof mi);
    if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &l) != 0 || l < (SK_MEMINFO_DROPS + 1) * sizeof mi[0]) return 0;
    return mi[SK_MEMINFO_DROPS];
}

int stamp_sock_local(int fd, stamp_addr_t *a)
{
    memset(a, 0, sizeof *a);
    a->len = sizeof a->addr;
    if (getsockname(fd, (struct sockaddr *)&a->addr, &a->len) != 0) return -errno;
    return STAMP_OK;
}

static void setint(int fd, int level, int opt, int v)
{
    (void)setsockopt(fd, level, opt, &v, sizeof v);
}

int stamp_sock_open(const stamp_sock_opts_t *o, stamp_addr_t *bound)
{
    stamp_addr_t local;
    int family = o->family;
    const char *host = o->addr;
    if (!host || !*host) host = family == AF_INET ? "0.0.0.0" : "::";
    int rc = stamp_addr_parse(&local, host, o->port);
    if (rc) return rc;
    family = local.addr.ss_family;
    if (o->ttl < 1 || o->ttl > 255) return STAMP_EINVAL;

    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)&local.addr;
        /* dual-stack on the wildcard; IPv4-mapped traffic carries the IP-level options below */
        setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) ? 0 : 1);
        setint(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1);
        setint(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
        setint(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, 1);
        setint(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, o->ttl);
        if (o->tos >= 0) setint(fd, IPPROTO_IPV6, IPV6_TCLASS, o->tos);
    }
    setint(fd, IPPROTO_IP, IP_RECVTTL, 1);
    setint(fd, IPPROTO_IP, IP_PKTINFO, 1);
    setint(fd, IPPROTO_IP, IP_RECVTOS, 1);
    setint(fd, IPPROTO_IP, IP_TTL, o->ttl);
    if (o->tos >= 0) setint(fd, IPPROTO_IP, IP_TOS, o->tos);
    setint(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1);
    /* report software transmit timestamps, numbered, without the packet; requested per datagram.
       OPT_RX_FILTER: without it every received datagram also carries an SCM_TIMESTAMPING copy of
       the SCM_TIMESTAMPNS time (64 octets more per datagram to build and skip); kernels that do not
       know the flag refuse it, and get the same request without it */
    int tsf = SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
    int tsf_rx = tsf | SOF_TIMESTAMPING_OPT_RX_FILTER;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &tsf_rx, sizeof tsf_rx) != 0)
        setint(fd, SOL_SOCKET, SO_TIMESTAMPING, tsf);
    if (o->rcvbuf > 0) setint(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf);
    if (o->reuseport) setint(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (bind(fd, (struct sockaddr *)&local.addr, local.len) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (bound && stamp_sock_local(fd, bound) != 0) memcpy(bound, &local, sizeof local);
    return fd;
}

#define CTRL_LEN 256

/* A socket address of `family` from raw address octets (4 or 16) and a port; IPv4 on an
 * IPv6 socket becomes IPv4-mapped. Returns 0, or -1 for IPv6 octets on an IPv4 socket. */
int stamp_addr_from_octets(stamp_addr_t *out, const uint8_t *oct, int n, unsigned port, int family)
{
    memset(out, 0, sizeof *out);
    if (family == AF_INET6) {
        struct sockaddr_in6 s6;
        memset(&s6, 0, sizeof s6);
        s6.sin6_family = AF_INET6;
        s6.sin6_port = htons((uint16_t)port);
        if (n == 4) {
            s6.sin6_addr.s6_addr[10] = 0xff;
            s6.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&s6.sin6_addr.s6_addr[12], oct, 4);
        } else {
            memcpy(&s6.sin6_addr, oct, 16);
        }
        memcpy(&out->addr, &s6, sizeof s6);
        out->len = sizeof s6;
        return 0;
    }
    if (n != 4) return -1;
    struct sockaddr_in s4;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    s4.sin_port = htons((uint16_t)port);
    memcpy(&s4.sin_addr, oct, 4);
    memcpy(&out->addr, &s4, sizeof s4);
    out->len = sizeof s4;
    return 0;
}

static int cmsg_int(const unsigned char *d)
{
    int v;
    memcpy(&v, d, sizeof v);
    return v;
}

static void parse_cmsgs(struct msghdr *mh, int sockfam, unsigned localport, stamp_rxmeta_t *m)
{
    m->ttl = -1;
    m->tos = -1;
    m->ifindex = 0;
    m->rx_kernel = 0;
    memset(&m->dst, 0, sizeof m->dst);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        const unsigned char *d = CMSG_DATA(c);
        size_t dl = c->cmsg_len - CMSG_LEN(0);
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS && dl >= sizeof(struct timespec)) {
            struct timespec ts;
            memcpy(&ts, d, sizeof ts);
            m->rx_time = (stamp_ns_t)ts.tv_sec * STAMP_NS_PER_SEC + ts.tv_nsec;
            m->rx_kernel = 1;
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL && dl >= sizeof(int)) {
            m->ttl = cmsg_int(d);
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS && dl >= 1) {
            m->tos = d[0];
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && dl >= sizeof(struct in_pktinfo)) {
            struct in_pktinfo pi;
            memcpy(&pi, d, sizeof pi);
            m->ifindex = pi.ipi_ifindex;
            stamp_addr_from_octets(&m->dst, (const uint8_t *)&pi.ipi_addr, 4, localport, sockfam);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT && dl >= sizeof(int)) {
            m->ttl = cmsg_int(d);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS && dl >= sizeof(int)) {
            m->tos = cmsg_int(d);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
                   dl >= sizeof(struct in6_pktinfo)) {
            struct in6_pktinfo pi;
            memcpy(&pi, d, sizeof pi);
            m->ifindex = (int)pi.ipi6_ifindex;
            stamp_addr_from_octets(&m->dst, (const uint8_t *)&pi.ipi6_addr, 16, localport, AF_INET6);
        }
    }
}

static unsigned addr_port_of(const stamp_addr_t *a)
{
    if (a->addr.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&a->addr)->sin_port);
    if (a->addr.ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port);
    return 0;
}

int stamp_sock_recv(int fd, const stamp_addr_t *local, uint8_t *const *bufs, size_t cap, size_t *lens,
                    stamp_rxmeta_t *meta, int n)
{
    struct mmsghdr mm[STAMP_BATCH];
    struct iovec iov[STAMP_BATCH];
    union {
        char buf[CTRL_LEN];
        struct cmsghdr align;
    } ctrl[STAMP_BATCH];
    if (n > STAMP_BATCH) n = STAMP_BATCH;
    if (n <= 0) return 0;
    memset(mm, 0, sizeof(mm[0]) * (size_t)n);
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = cap;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &meta[i].src.addr;
        mm[i].msg_hdr.msg_namelen = sizeof meta[i].src.addr;
        mm[i].msg_hdr.msg_control = ctrl[i].buf;
        mm[i].msg_hdr.msg_controllen = CTRL_LEN;
    }
    int r = recvmmsg(fd, mm, (unsigned)n, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -errno;
    }
    stamp_ns_t now = stamp_now();
    int fam = local->addr.ss_family;
    unsigned lport = addr_port_of(local);
    for (int i = 0; i < r; i++) {
        meta[i].src.len = mm[i].msg_hdr.msg_namelen;
        meta[i].rx_time = now;
        parse_cmsgs(&mm[i].msg_hdr, fam, lport, &meta[i]);
        lens[i] = mm[i].msg_len; /* with MSG_TRUNC: the real datagram length */
    }
    return r;
}

int stamp_sock_send(int fd, stamp_txmsg_t *m, int n)
{
    struct mmsghdr mm[STAMP_BATCH];
    struct iovec iov[STAMP_BATCH];
    union {
        char buf[CTRL_LEN];
        struct cmsghdr align;
    } ctrl[STAMP_BATCH];
    int sent = 0;
    while (n > 0) {
        int k = n > STAMP_BATCH ? STAMP_BATCH : n;
        memset(mm, 0, sizeof(mm[0]) * (size_t)k);
        for (int i = 0; i < k; i++) {
            const stamp_txmsg_t *t = &m[i];
            struct msghdr *h = &mm[i].msg_hdr;
            iov[i].iov_base = (void *)t->buf;
            iov[i].iov_len = t->len;
            h->msg_iov = &iov[i];
            h->msg_iovlen = 1;
            h->msg_name = (void *)&t->to->addr;
            h->msg_namelen = t->to->len;
            size_t used = 0;
            memset(ctrl[i].buf, 0, sizeof ctrl[i].buf);
            h->msg_control = ctrl[i].buf;
            h->msg_controllen = sizeof ctrl[i].buf;
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            int to6 = t->to->addr.ss_family == AF_INET6;
            int mapped = to6 && is_mapped((const struct sockaddr_in6 *)&t->to->addr);
            if (t->from && t->from->addr.ss_family == AF_INET && !to6) {
                struct in_pktinfo pi;
                memset(&pi, 0, sizeof pi);
                pi.ipi_spec_dst = ((const struct sockaddr_in *)&t->from->addr)->sin_addr;
                pi.ipi_ifindex = t->ifindex;
                c->cmsg_level = IPPROTO_IP;
                c->cmsg_type = IP_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof pi);
                memcpy(CMSG_DATA(c), &pi, sizeof pi);
                used += CMSG_SPACE(sizeof pi);
                c = CMSG_NXTHDR(h, c);
            } else if (t->from && t->from->addr.ss_family == AF_INET6 && to6) {
                struct in6_pktinfo pi;
                memset(&pi, 0, sizeof pi);
                pi.ipi6_addr = ((const struct sockaddr_in6 *)&t->from->addr)->sin6_addr;
                pi.ipi6_ifindex = (unsigned)t->ifindex;
                c->cmsg_level = IPPROTO_IPV6;
                c->cmsg_type = IPV6_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof pi);
                memcpy(CMSG_DATA(c), &pi, sizeof pi);
                used += CMSG_SPACE(sizeof pi);
                c = CMSG_NXTHDR(h, c);
            }
            if (t->tos >= 0 && c) {
                int v = t->tos;
                c->cmsg_level = (to6 && !mapped) ? IPPROTO_IPV6 : IPPROTO_IP;
                c->cmsg_type = (to6 && !mapped) ? IPV6_TCLASS : IP_TOS;
                c->cmsg_len = CMSG_LEN(sizeof v);
                memcpy(CMSG_DATA(c), &v, sizeof v);
                used += CMSG_SPACE(sizeof v);
                c = CMSG_NXTHDR(h, c);
            }
            if (t->want_txts && c) {
                int v = SOF_TIMESTAMPING_TX_SOFTWARE;
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SO_TIMESTAMPING;
                c->cmsg_len = CMSG_LEN(sizeof v);
                memcpy(CMSG_DATA(c), &v, sizeof v);
                used += CMSG_SPACE(sizeof v);
            }
            m[i].ok = 0;
            h->msg_controllen = used;
            if (!used) h->msg_control = NULL;
        }
        int r = sendmmsg(fd, mm, (unsigned)k, 0);
        if (r <= 0) {
            if (sent == 0 && k == n && r < 0 && errno != EAGAIN && n == 1) return -errno;
            r = 1; /* skip the failing message, go on with the rest */
        } else {
            for (int i = 0; i < r; i++) m[i].ok = 1;
            sent += r;
        }
        m += r;
        n -= r;
    }
    return sent;
}

#define TXTS_BATCH 64

int stamp_sock_txts(int fd, uint32_t *ids, stamp_ns_t *times, int max)
{
    /* the error queue in batches: one recvmmsg for up to 64 timestamps, not one recvmsg each */
    struct mmsghdr mm[TXTS_BATCH];
    struct iovec iov[TXTS_BATCH];
    union {
        char buf[CTRL_LEN];
        struct cmsghdr align;
    } ctrl[TXTS_BATCH];
    char data[64]; /* OPT_TSONLY: no payload comes back; shared, never read */
    int n = 0;
    while (n < max) {
        int k = max - n < TXTS_BATCH ? max - n : TXTS_BATCH;
        memset(mm, 0, sizeof(mm[0]) * (size_t)k);
        for (int i = 0; i < k; i++) {
            iov[i].iov_base = data;
            iov[i].iov_len = sizeof data;
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
            mm[i].msg_hdr.msg_control = ctrl[i].buf;
            mm[i].msg_hdr.msg_controllen = sizeof ctrl[i].buf;
        }
        int r = recvmmsg(fd, mm, (unsigned)k, MSG_ERRQUEUE | MSG_DONTWAIT, NULL);
        if (r <= 0) break;
        for (int i = 0; i < r; i++) {
            struct msghdr *mh = &mm[i].msg_hdr;
            int have_ts = 0, have_id = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                size_t dl = c->cmsg_len - CMSG_LEN(0);
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING &&
                    dl >= sizeof(struct scm_timestamping)) {
                    struct scm_timestamping ts;
                    memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    times[n] = (stamp_ns_t)ts.ts[0].tv_sec * STAMP_NS_PER_SEC + ts.ts[0].tv_nsec;
                    have_ts = times[n] != 0;
                } else if (((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
                            (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR)) &&
                           dl >= sizeof(struct sock_extended_err)) {
                    struct sock_extended_err e;
                    memcpy(&e, CMSG_DATA(c), sizeof e);
                    if (e.ee_origin == SO_EE_ORIGIN_TIMESTAMPING) {
                        ids[n] = e.ee_data;
                        have_id = 1;
                    }
                }
            }
            if (have_ts && have_id) n++;
        }
        if (r < k) break;
    }
    return n;
}

int stamp_wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0) return -errno;
    return r > 0 ? 1 : 0;
}
