/* loadgen.c - the closed-loop load generator of bench/run.
 *
 * Keeps WINDOW test packets outstanding against a reflector on loopback and
 * sends a new one for each reply (recvmmsg/sendmmsg batches), for SECONDS
 * seconds after a short warm-up, and prints one JSON line: replies per
 * second, packets sent, replies, and the packets given up for lost (a
 * window that got no reply within 20 ms is refilled). Test packets are
 * built and signed with libstamp, the same for every reflector measured:
 *   open      unauthenticated base packet (44 octets)
 *   chain     the base and the full RFC 8972 TLV chain: Extra Padding,
 *             Location (with its address requests), Timestamp Information,
 *             Class of Service, Direct Measurement, Access Report,
 *             Follow-Up Telemetry (140 octets)
 *   auth      authenticated base (112 octets) and an HMAC TLV, both signed
 *             with the key (HMAC-SHA-256-128) for every packet
 * With -S N it instead opens N sessions (one packet each, SSIDs 1..65535 on
 * as many source ports as needed) and exits when all were answered.
 *
 * Usage: loadgen -p PORT [-a ADDR] [-m open|chain|auth] [-d SECONDS]
 *                [-w WINDOW] [-k HEXKEY] [-S SESSIONS] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "stamp.h"

#define BATCH 32

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static size_t tlv(uint8_t *p, uint8_t type, const uint8_t *v, uint16_t len)
{
    p[0] = 0x80;
    p[1] = type;
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    if (v) memcpy(p + 4, v, len);
    else memset(p + 4, 0, len);
    return 4 + (size_t)len;
}

typedef struct {
    stamp_mode_t mode;
    stamp_hmac_t *hmac;
    uint8_t tmpl[512];
    size_t len, base;
    long hmac_off;
} gen_t;

static void gen_init(gen_t *g, const char *mode, stamp_hmac_t *h)
{
    memset(g, 0, sizeof *g);
    g->hmac = h;
    g->hmac_off = -1;
    g->mode = strcmp(mode, "auth") == 0 ? STAMP_MODE_AUTH : STAMP_MODE_OPEN;
    g->base = stamp_base_len(g->mode);
    size_t n = g->base;
    if (strcmp(mode, "chain") == 0) {
        uint8_t loc[4 + 3 * 20] = {0};
        size_t k = 4;
        k += tlv(loc + k, 4, NULL, 16); /* Destination IP Address request */
        k += tlv(loc + k, 7, NULL, 16); /* Source IP Address request */
        for (size_t i = 4; i < k; i += 20) loc[i] = 0;
        n += tlv(g->tmpl + n, STAMP_TLV_PADDING, NULL, 16);
        n += tlv(g->tmpl + n, STAMP_TLV_LOCATION, loc, (uint16_t)k);
        n += tlv(g->tmpl + n, STAMP_TLV_TSINFO, NULL, 4);
        const uint8_t cos[4] = {46 << 2, 0, 0, 0};
        n += tlv(g->tmpl + n, STAMP_TLV_COS, cos, 4);
        n += tlv(g->tmpl + n, STAMP_TLV_DM, NULL, 12);
        const uint8_t acc[4] = {0x10, 1, 0, 0};
        n += tlv(g->tmpl + n, STAMP_TLV_ACCESS, acc, 4);
        n += tlv(g->tmpl + n, STAMP_TLV_FOLLOWUP, NULL, 16);
    } else if (g->mode == STAMP_MODE_AUTH) {
        g->hmac_off = (long)n;
        n += tlv(g->tmpl + n, STAMP_TLV_HMAC, NULL, 16);
    }
    g->len = n;
}

static void gen_make(gen_t *g, uint8_t *out, uint32_t seq, uint16_t ssid)
{
    stamp_test_t t;
    memset(&t, 0, sizeof t);
    t.seq = seq;
    t.ssid = ssid;
    t.ee = 0x0001;
    stamp_ts_encode(t.ts, stamp_now(), STAMP_CLOCK_NTP, 0);
    memcpy(out, g->tmpl, g->len);
    stamp_test_encode(out, g->len, g->mode, &t);
    if (g->hmac_off >= 0) stamp_tlv_sign(g->hmac, out, g->base, (size_t)g->hmac_off);
    if (g->mode == STAMP_MODE_AUTH) stamp_auth_sign(g->hmac, out, g->len);
}

static int open_sock(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bind");
        exit(1);
    }
    return fd;
}

static uint8_t txb[BATCH][512], rxb[BATCH][9216];
static struct iovec txv[BATCH], rxv[BATCH];
static struct mmsghdr txm[BATCH], rxm[BATCH];

static int send_n(int fd, gen_t *g, struct sockaddr_in *to, int n, uint32_t *seq, uint16_t ssid0, int ssid_step)
{
    for (int i = 0; i < n; i++) {
        gen_make(g, txb[i], (*seq)++, (uint16_t)(ssid0 + i * ssid_step));
        txv[i] = (struct iovec){.iov_base = txb[i], .iov_len = g->len};
        txm[i].msg_hdr = (struct msghdr){.msg_name = to, .msg_namelen = sizeof *to, .msg_iov = &txv[i], .msg_iovlen = 1};
    }
    int s = sendmmsg(fd, txm, (unsigned)n, 0);
    return s < 0 ? 0 : s;
}

static int recv_all(int fd)
{
    for (int i = 0; i < BATCH; i++) {
        rxv[i] = (struct iovec){.iov_base = rxb[i], .iov_len = sizeof rxb[i]};
        rxm[i].msg_hdr = (struct msghdr){.msg_iov = &rxv[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, rxm, BATCH, MSG_DONTWAIT, NULL);
    return n < 0 ? 0 : n;
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *mode = "open", *key = "000102030405060708090a0b0c0d0e0f";
    int port = 0, window = 64, opt;
    double secs = 2;
    long sessions = 0, spread = 0;
    int flows = 1;
    while ((opt = getopt(argc, argv, "a:p:m:d:w:k:S:V:F:")) != -1) {
        if (opt == 'a') addr = optarg;
        else if (opt == 'p') port = atoi(optarg);
        else if (opt == 'm') mode = optarg;
        else if (opt == 'd') secs = atof(optarg);
        else if (opt == 'w') window = atoi(optarg);
        else if (opt == 'k') key = optarg;
        else if (opt == 'S') sessions = atol(optarg);
        else if (opt == 'V') spread = atol(optarg);
        else if (opt == 'F') flows = atoi(optarg);
        else {
            fprintf(stderr, "usage: loadgen -p PORT [-a ADDR] [-m open|chain|auth] [-d SECONDS] [-w WINDOW] [-k HEXKEY] [-S SESSIONS] [-V SSIDS] [-F FLOWS]\n");
            return 2;
        }
    }
    uint8_t k[STAMP_KEY_MAX];
    int kl = stamp_hex_decode(key, k, sizeof k);
    if (kl <= 0) return fprintf(stderr, "bad key\n"), 2;
    gen_t g;
    gen_init(&g, mode, stamp_hmac_new(k, (size_t)kl));
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &to.sin_addr) != 1) return fprintf(stderr, "bad address\n"), 2;
    uint32_t seq = 0;

    if (sessions > 0) { /* open SESSIONS sessions, one packet each */
        long done = 0, lost = 0;
        double t0 = mono();
        while (done + lost < sessions) {
            int fd = open_sock();
            long here = sessions - done - lost < 65535 ? sessions - done - lost : 65535;
            long sent = 0, got = 0;
            double last = mono();
            while (got < here) {
                while (sent < here && sent - got < window) {
                    int n = (int)(here - sent < BATCH ? here - sent : BATCH);
                    if (n > window - (int)(sent - got)) n = window - (int)(sent - got);
                    int s = send_n(fd, &g, &to, n, &seq, (uint16_t)(1 + sent), 1);
                    if (s <= 0) break;
                    sent += s;
                }
                struct pollfd p = {.fd = fd, .events = POLLIN};
                if (poll(&p, 1, 20) > 0) {
                    got += recv_all(fd);
                    last = mono();
                } else if (mono() - last > 0.5) { /* the rest is lost */
                    if (sent < here) { got = sent; continue; }
                    break;
                }
            }
            done += got;
            lost += here - got;
            /* keep the socket open: the session's source port stays reserved */
        }
        printf("{\"sessions\":%ld,\"answered\":%ld,\"lost\":%ld,\"seconds\":%.3f}\n", sessions, done, lost, mono() - t0);
        return lost ? 1 : 0;
    }

    /* -F N: N sockets (source ports), each with window/N packets outstanding: N flows that the
     * kernel's SO_REUSEPORT hash can spread over a reflector's --workers */
    if (flows < 1 || flows > 64) return fprintf(stderr, "bad -F (1..64)\n"), 2;
    int fds[64];
    long outstanding[64];
    double last[64];
    int per = window / flows > 0 ? window / flows : 1;
    for (int f = 0; f < flows; f++) fds[f] = open_sock(), outstanding[f] = 0;
    unsigned long long sent = 0, replies = 0, given_up = 0, m_replies = 0, m_sent = 0;
    double t0 = mono(), warm = t0 + 0.3, end = warm + secs, mstart = 0;
    for (int f = 0; f < flows; f++) last[f] = t0;
    int measuring = 0;
    struct pollfd p[64];
    for (;;) {
        double now = mono();
        if (!measuring && now >= warm) {
            measuring = 1;
            mstart = now;
            m_replies = replies;
            m_sent = sent;
        }
        if (now >= end) break;
        for (int f = 0; f < flows; f++) {
            while (outstanding[f] < per) {
                int n = per - (int)outstanding[f] < BATCH ? per - (int)outstanding[f] : BATCH;
                /* -V N: the load cycles over SSIDs 1..N (N sessions of the reflector, each looked up in turn) */
                uint16_t ssid = spread > 0 ? (uint16_t)(1 + (long)(sent % (unsigned long long)spread)) : 1;
                if (spread > 0 && ssid + n - 1 > spread) n = (int)(spread - ssid + 1);
                int s = send_n(fds[f], &g, &to, n, &seq, ssid, spread > 0);
                if (s <= 0) break;
                outstanding[f] += s;
                sent += (unsigned long long)s;
            }
            p[f] = (struct pollfd){.fd = fds[f], .events = POLLIN};
        }
        poll(p, (nfds_t)flows, 5);
        for (int f = 0; f < flows; f++) {
            if (p[f].revents & POLLIN) {
                int n;
                while ((n = recv_all(fds[f])) > 0) {
                    replies += (unsigned long long)n;
                    outstanding[f] -= n;
                    if (outstanding[f] < 0) outstanding[f] = 0;
                    if (n < BATCH) break;
                }
                last[f] = mono();
            } else if (mono() - last[f] > 0.02) {
                given_up += (unsigned long long)outstanding[f];
                outstanding[f] = 0;
                last[f] = mono();
            }
        }
    }
    double el = mono() - mstart;
    printf("{\"mode\":\"%s\",\"flows\":%d,\"window\":%d,\"seconds\":%.3f,\"sent\":%llu,\"replies\":%llu,\"rate\":%.0f,\"given_up\":%llu}\n",
           mode, flows, window, el, sent - m_sent, replies - m_replies, (double)(replies - m_replies) / el, given_up);
    return 0;
}
