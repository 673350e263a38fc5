/* libFuzzer target: the Session-Sender's processing of replies (matching
 * by sequence number, SSID and source checks, base HMAC and HMAC TLV
 * verification, duplicates, late replies, losses) on arbitrary datagrams.
 * It drives the real engine over loopback: a sender (open or authenticated,
 * with Direct Measurement and HMAC TLVs) sends to a socket of the harness,
 * which answers with the fuzzer's octets. Input: octet 0 picks the sender
 * and what the harness does to the reply (aim its sender sequence number
 * at a packet in flight, sign it with the key, send it twice), the rest is
 * the reply.
 *
 * Invariants: every packet is reported at most once (answered or lost),
 * and only packets that were sent; received + lost never exceed sent; each
 * reported reply is the datagram sent, with the sequence number it
 * claims; a reply is never read past its length (ASan). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"

#define SEEN_BITS (1u << 22)

typedef struct {
    stamp_sender_t *s;
    stamp_mode_t mode;
    uint8_t *seen; /* 2 bits per sequence number: reported OK / LOST */
    uint64_t ok, lost;
} sender_t;

static int peer = -1;
static stamp_addr_t peer_addr;
static sender_t snd[2];
static stamp_hmac_t *hmac;

static void open_sender(sender_t *x, stamp_mode_t mode)
{
    static const uint8_t tlvs[] = {0x80, STAMP_TLV_DM, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0x80, STAMP_TLV_HMAC, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 0, 0, 0, 0};
    char host[64];
    unsigned port;
    if (x->s) stamp_sender_free(x->s);
    CHECK(stamp_addr_format(&peer_addr, host, sizeof host, &port) == 0);
    stamp_sender_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.remote_addr = host;
    cfg.remote_port = port;
    cfg.sock.addr = "127.0.0.1";
    cfg.sock.ttl = 64;
    cfg.sock.tos = -1;
    cfg.count = 0;
    cfg.interval = 1;                  /* one packet per step */
    cfg.timeout = 2 * STAMP_NS_PER_SEC; /* and some are declared lost while the fuzzer runs */
    cfg.ssid = 77;
    cfg.mode = mode;
    cfg.key = FUZZ_KEY;
    cfg.keylen = FUZZ_KEYLEN;
    cfg.tlvs = tlvs;
    cfg.tlvs_len = sizeof tlvs;
    int rc = stamp_sender_new(&cfg, &x->s);
    if (rc) fprintf(stderr, "stamp_sender_new: %s\n", stamp_strerror(rc));
    CHECK(rc == 0);
    x->mode = mode;
    if (!x->seen) x->seen = calloc(SEEN_BITS / 4, 1);
    CHECK(x->seen);
    memset(x->seen, 0, SEEN_BITS / 4);
    x->ok = x->lost = 0;
}

static void init(void)
{
    hmac = stamp_hmac_new(FUZZ_KEY, FUZZ_KEYLEN);
    peer = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(peer >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(peer, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t al = sizeof a;
    CHECK(getsockname(peer, (struct sockaddr *)&a, &al) == 0);
    char port[8];
    snprintf(port, sizeof port, "%u", ntohs(a.sin_port));
    CHECK(stamp_addr_parse(&peer_addr, "127.0.0.1", ntohs(a.sin_port)) == 0);
    open_sender(&snd[0], STAMP_MODE_OPEN);
    open_sender(&snd[1], STAMP_MODE_AUTH);
}

/* Account for the results of one step. */
static void results(sender_t *x, const stamp_result_t *res, int n, const uint8_t *reply, size_t rlen)
{
    stamp_sender_counters_t c;
    stamp_sender_counters(x->s, &c);
    for (int i = 0; i < n; i++) {
        const stamp_result_t *r = &res[i];
        CHECK(r->status == STAMP_RES_OK || r->status == STAMP_RES_LOST);
        CHECK(r->seq < c.sent); /* only what was sent (fewer than 2^32 per sender here) */
        uint32_t bit = r->seq % SEEN_BITS;
        CHECK(((x->seen[bit / 4] >> (2 * (bit % 4))) & 3u) == 0); /* reported once */
        x->seen[bit / 4] |= (uint8_t)((r->status == STAMP_RES_OK ? 1u : 2u) << (2 * (bit % 4)));
        if (r->status == STAMP_RES_OK) {
            x->ok++;
            CHECK(r->pkt && r->pkt_len == rlen && memcmp(r->pkt, reply, rlen) == 0);
            CHECK(r->pkt_len >= stamp_base_len(x->mode));
            stamp_reflected_t p;
            CHECK(stamp_reflected_decode(r->pkt, r->pkt_len, x->mode, &p) > 0);
            CHECK(p.sender_seq == r->seq);
            CHECK(p.ssid == 0 || p.ssid == 77);
            if (x->mode == STAMP_MODE_AUTH) CHECK(stamp_auth_verify(hmac, r->pkt, r->pkt_len) == STAMP_OK);
            CHECK(r->tlv_hmac >= -1 && r->tlv_hmac <= 1);
        } else {
            x->lost++;
        }
    }
    CHECK(x->ok == c.received);
    CHECK(c.received + c.lost <= c.sent);
    CHECK(x->lost <= c.lost);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static stamp_result_t res[64];
    static uint8_t junk[STAMP_MAX_PKT];
    if (peer < 0) init();
    if (size < 2 || size > 4096) return 0;
    const unsigned sw = data[0];
    sender_t *x = &snd[sw & 1];
    stamp_sender_counters_t c;
    stamp_sender_counters(x->s, &c);
    if (c.sent >= SEEN_BITS - 64) open_sender(x, x->mode);

    /* the sender sends one test packet; the harness takes it off the wire */
    int n = stamp_sender_step(x->s, 0, res, 64);
    CHECK(n >= 0);
    results(x, res, n, NULL, 0);
    while (recv(peer, junk, sizeof junk, 0) > 0) {
    }
    stamp_sender_counters(x->s, &c);

    uint8_t *reply = fz_dup(data + 1, size - 1);
    size_t rlen = size - 1;
    size_t base = stamp_base_len(x->mode);
    size_t sso = x->mode == STAMP_MODE_AUTH ? 48 : 24; /* Session-Sender Sequence Number */
    if ((sw & 2) && rlen >= sso + 4 && c.sent) { /* aim at one of the last packets sent */
        uint32_t seq = (uint32_t)(c.sent - 1 - (data[1] % (c.sent < 8 ? c.sent : 8)));
        reply[sso] = (uint8_t)(seq >> 24);
        reply[sso + 1] = (uint8_t)(seq >> 16);
        reply[sso + 2] = (uint8_t)(seq >> 8);
        reply[sso + 3] = (uint8_t)seq;
    }
    if (sw & 4) fz_sign(hmac, reply, rlen, base, x->mode == STAMP_MODE_AUTH);
    struct sockaddr_storage to;
    stamp_addr_t local;
    stamp_sender_local(x->s, &local);
    memcpy(&to, &local.addr, sizeof to);
    int copies = (sw & 8) ? 2 : 1;
    for (int k = 0; k < copies; k++)
        CHECK(sendto(peer, reply, rlen, 0, (struct sockaddr *)&to, local.len) == (ssize_t)rlen);
    for (int k = 0; k < copies; k++) {
        n = stamp_sender_step(x->s, 0, res, 64);
        CHECK(n >= 0);
        results(x, res, n, reply, rlen);
    }
    while (recv(peer, junk, sizeof junk, 0) > 0) {
    }
    free(reply);
    return 0;
}
