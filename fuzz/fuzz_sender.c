/* libFuzzer target: the I/O-free sender machine (stamp_sm_*), the sender's
 * whole protocol without sockets or clocks: building test packets on a
 * virtual clock, matching replies (sequence window, SSID, source, base HMAC,
 * HMAC TLV, duplicates, late replies, short TWAMP-Light replies), declaring
 * losses, stopping and aborting.
 *
 * Input: octet 0 picks the configuration (open or authenticated, SSID,
 * Poisson, a peer to check); then a program of operations: advance the
 * clock and send what is due, feed a reply (the fuzzer's octets, optionally
 * aimed at a packet in flight, signed with the key, from a foreign source),
 * expire, stop, abort.
 *
 * Invariants: every packet built ends exactly once (answered, lost or
 * aborted), and only packets that were built; after an abort every packet
 * has ended; the counters equal the results (sent, received, lost, aborted)
 * and outstanding = sent - ended; an answered reply is the datagram fed,
 * carries the sequence number reported and that packet's T1, verifies in
 * authenticated mode, is at least STAMP_LIGHT_REPLY_MIN octets in open mode and
 * the whole base packet in authenticated mode, and never has more usable TLVs than TLVs; deadlines
 * never lie in the past of a machine that has nothing due. */
#include <arpa/inet.h>

#include "fuzz.h"

#define MAXSEQ 4096

static uint8_t state[MAXSEQ]; /* 0 unknown, 1 out, 2 ended */
static stamp_ns_t t1s[MAXSEQ];
static uint64_t built, ended, n_ok, n_lost, n_abort;

static void account(stamp_sm_t *m, const stamp_result_t *r, int n, stamp_mode_t mode)
{
    for (int i = 0; i < n; i++) {
        CHECK(r[i].status == STAMP_RES_OK || r[i].status == STAMP_RES_LOST || r[i].status == STAMP_RES_ABORTED);
        CHECK(r[i].seq < built && r[i].seq < MAXSEQ); /* only what was built */
        CHECK(state[r[i].seq] == 1);                  /* ends exactly once */
        state[r[i].seq] = 2;
        ended++;
        CHECK(r[i].t1 == t1s[r[i].seq]);
        if (r[i].status == STAMP_RES_OK) n_ok++;
        else if (r[i].status == STAMP_RES_LOST) n_lost++;
        else n_abort++;
        (void)mode;
    }
    stamp_sender_counters_t c;
    stamp_sm_counters(m, &c);
    CHECK(c.sent == built);
    CHECK(c.received == n_ok && c.lost == n_lost && c.aborted == n_abort);
    CHECK(stamp_sm_outstanding(m) == built - ended);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static stamp_hmac_t *hmac;
    static uint8_t pkt[STAMP_MAX_PKT], out[STAMP_MAX_PKT];
    static stamp_result_t res[64];
    static const uint8_t tlvs[] = {0x80, STAMP_TLV_DM, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0x80, STAMP_TLV_HMAC, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 0, 0, 0, 0, 0};
    if (!hmac) hmac = stamp_hmac_new(FUZZ_KEY, FUZZ_KEYLEN);
    if (size < 1) return 0;
    const unsigned sw = data[0];
    stamp_sender_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = (sw & 1) ? STAMP_MODE_AUTH : STAMP_MODE_OPEN;
    cfg.ssid = (sw & 2) ? 77 : 0;
    cfg.drop_ssid_zero = (sw & 4) ? 1 : 0;
    cfg.poisson = (sw & 8) ? 1 : 0;
    cfg.seed = 42;
    cfg.count = (sw & 0x10) ? 16 : 0;
    cfg.interval = 1000; /* 1 µs */
    cfg.timeout = 50000; /* 50 µs */
    cfg.key = FUZZ_KEY;
    cfg.keylen = FUZZ_KEYLEN;
    cfg.tlvs = tlvs;
    cfg.tlvs_len = (sw & 0x20) ? sizeof tlvs : 16; /* with or without the HMAC TLV */
    cfg.packet_len = (sw & 0x40) ? 200 : 0;
    stamp_sm_t *m;
    int rc = stamp_sm_new(&cfg, &m);
    CHECK(rc == 0);
    const size_t base = stamp_base_len(cfg.mode);
    stamp_addr_t peer, other;
    stamp_addr_parse(&peer, "127.0.0.1", 862);
    stamp_addr_parse(&other, "127.0.0.9", 862);
    if (sw & 0x80) stamp_sm_set_peer(m, &peer);
    memset(state, 0, sizeof state);
    built = ended = n_ok = n_lost = n_abort = 0;

    stamp_ns_t now = 1000000000, utc = (stamp_ns_t)1764201600 * STAMP_NS_PER_SEC;
    size_t i = 1;
    while (i < size) {
        unsigned op = data[i++];
        switch (op % 6) {
        case 0: /* time passes: send everything due */
        case 1: {
            now += (stamp_ns_t)(op / 6) * 500;
            int k = 0;
            int len;
            uint32_t seq;
            while (built < MAXSEQ - 1 && (len = stamp_sm_build(m, now, utc + now, out, sizeof out, &seq)) > 0) {
                CHECK((size_t)len == stamp_sm_packet_len(m));
                CHECK(seq == built);
                stamp_test_t t;
                CHECK(stamp_test_decode(out, (size_t)len, cfg.mode, &t) == (int)base && t.seq == seq);
                if (cfg.mode == STAMP_MODE_AUTH) CHECK(stamp_auth_verify(hmac, out, (size_t)len) == STAMP_OK);
                state[seq] = 1;
                t1s[seq] = utc + now;
                built++;
                if (++k > 64) break;
                if (op & 0x80) stamp_sm_tx_error(m);
            }
            account(m, res, 0, cfg.mode);
            stamp_ns_t d = stamp_sm_next_deadline(m);
            if (!stamp_sm_due(m, now) && d != INT64_MIN) CHECK(d > now || stamp_sm_outstanding(m) > 0 || d == INT64_MAX);
            break;
        }
        case 2: { /* a reply */
            if (i + 2 > size) goto done;
            size_t len = (size_t)data[i + 1] * 2; /* octet 1: half the length */
            unsigned how = data[i];
            i += 2;
            if (len > size - i) len = size - i;
            memcpy(pkt, data + i, len);
            i += len;
            size_t sso = cfg.mode == STAMP_MODE_AUTH ? 48 : 24;
            if ((how & 1) && built && len >= sso + 4) { /* aim at a recent packet */
                uint32_t s = (uint32_t)(built - 1 - (how >> 4) % (built < 16 ? built : 16));
                pkt[sso] = (uint8_t)(s >> 24), pkt[sso + 1] = (uint8_t)(s >> 16);
                pkt[sso + 2] = (uint8_t)(s >> 8), pkt[sso + 3] = (uint8_t)s;
            }
            if ((how & 2) && len >= 16 && cfg.mode == STAMP_MODE_OPEN) { pkt[14] = 0; pkt[15] = (how & 8) ? 0 : 77; }
            if (how & 4) fz_sign(hmac, pkt, len, base, cfg.mode == STAMP_MODE_AUTH);
            uint8_t *b = fz_dup(pkt, len); /* exact size */
            stamp_rxmeta_t meta;
            memset(&meta, 0, sizeof meta);
            meta.src = (how & 8) ? other : peer;
            meta.ttl = 64;
            meta.tos = -1;
            meta.rx_time = utc + now;
            int r = stamp_sm_reply(m, b, len, (how & 0x40) ? NULL : &meta, &res[0]);
            CHECK(r == 0 || r == 1);
            if (r == 1) {
                CHECK(res[0].status == STAMP_RES_OK);
                CHECK(res[0].pkt == b && res[0].pkt_len == len);
                /* the acceptance rule: in open mode a TWAMP-Light reply of at least
                 * STAMP_LIGHT_REPLY_MIN octets (through the Sender Timestamp), in
                 * authenticated mode the whole base packet (the HMAC covers it) */
                if (cfg.mode == STAMP_MODE_OPEN) CHECK(len >= STAMP_LIGHT_REPLY_MIN);
                else CHECK(len >= base);
                if (len >= base) {
                    stamp_reflected_t p;
                    CHECK(stamp_reflected_decode(b, len, cfg.mode, &p) > 0 && p.sender_seq == res[0].seq);
                    if (cfg.mode == STAMP_MODE_AUTH) CHECK(stamp_auth_verify(hmac, b, len) == STAMP_OK);
                    if (cfg.ssid && cfg.drop_ssid_zero) CHECK(p.ssid == cfg.ssid);
                    if (cfg.ssid && p.ssid) CHECK(p.ssid == cfg.ssid);
                }
                if ((sw & 0x80) && !(how & 0x40)) CHECK(!(how & 8)); /* never from a foreign source */
                CHECK(res[0].tlv_usable >= 0 && res[0].tlv_usable <= res[0].tlv_count);
                CHECK(res[0].tlv_hmac >= -1 && res[0].tlv_hmac <= 1);
                account(m, res, 1, cfg.mode);
            } else {
                account(m, res, 0, cfg.mode);
            }
            free(b);
            break;
        }
        case 3: { /* losses */
            int n = stamp_sm_expire(m, now, res, 64);
            CHECK(n >= 0 && n <= 64);
            for (int k = 0; k < n; k++) CHECK(res[k].status != STAMP_RES_OK);
            account(m, res, n, cfg.mode);
            break;
        }
        case 4: /* stop sending */
            stamp_sm_stop(m, 0);
            CHECK(stamp_sm_stopped(m) >= 1);
            break;
        case 5: /* abort */
            if (op & 0x80) {
                stamp_sm_stop(m, 1);
                CHECK(stamp_sm_stopped(m) == 2);
            }
            break;
        }
    }
done:
    /* the end of a run: abort and collect, then every packet built has ended exactly once */
    stamp_sm_stop(m, 1);
    for (int guard = 0; guard < MAXSEQ; guard++) {
        int n = stamp_sm_expire(m, now, res, 64);
        CHECK(n >= 0);
        account(m, res, n, cfg.mode);
        if (n == 0) break;
    }
    CHECK(ended == built);
    CHECK(stamp_sm_outstanding(m) == 0);
    CHECK(stamp_sm_done(m));
    CHECK(stamp_sm_next_deadline(m) == INT64_MAX);
    stamp_sm_free(m);
    return 0;
}
