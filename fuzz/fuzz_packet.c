/* libFuzzer target: the RFC 8762 base packets in both modes and directions
 * (test and reflected, open and authenticated), their timestamps and Error
 * Estimates, and the base-packet HMAC.
 *
 * Invariants: decode reads only the base length and fails below it;
 * encode(decode(x)) = x except for the MBZ octets, which encode zeroes;
 * decode(encode(decode(x))) = decode(x); timestamps decode(encode(t)) = t;
 * pack(unpack(ee)) = ee for a non-zero multiplier; a signed packet verifies
 * and a flipped octet of the covered part does not. */
#include "fuzz.h"

/* Octet ranges that are not MBZ, per layout (RFC 8762 4.2.1/4.2.2/4.3.1/4.3.2, RFC 8972 3). */
typedef struct {
    int from, to; /* [from, to) */
} span_t;

static const span_t TEST_OPEN[] = {{0, 16}, {-1, -1}};
static const span_t TEST_AUTH[] = {{0, 4}, {16, 28}, {96, 112}, {-1, -1}};
static const span_t REFL_OPEN[] = {{0, 38}, {40, 41}, {-1, -1}};
static const span_t REFL_AUTH[] = {{0, 4},   {16, 28}, {32, 40}, {48, 52},
                                   {64, 74}, {80, 81}, {96, 112}, {-1, -1}};

static void check_layout(const uint8_t *in, const uint8_t *enc, size_t n, const span_t *keep)
{
    uint8_t want[STAMP_AUTH_BASE_LEN];
    memset(want, 0, sizeof want);
    for (const span_t *s = keep; s->from >= 0; s++) memcpy(want + s->from, in + s->from, (size_t)(s->to - s->from));
    CHECK(memcmp(want, enc, n) == 0);
}

static void check_ts(const uint8_t ts[8], int tai)
{
    stamp_ns_t t, t2;
    uint8_t enc[8];
    /* NTP: the fraction is finer than a nanosecond, so ns -> wire -> ns is exact */
    CHECK(stamp_ts_decode(ts, STAMP_CLOCK_NTP, 0, &t) == STAMP_OK);
    stamp_ts_encode(enc, t, STAMP_CLOCK_NTP, 0);
    CHECK(fz_rd32(enc) == fz_rd32(ts) || fz_rd32(enc) == fz_rd32(ts) + 1u); /* carry of a rounded fraction */
    CHECK(stamp_ts_decode(enc, STAMP_CLOCK_NTP, 0, &t2) == STAMP_OK);
    /* (but for the one carry that crosses the era window: 0x7fffffff.ffffffff rounds to 0x80000000, era 0) */
    if (!(fz_rd32(ts) == 0x7fffffffu && fz_rd32(enc) == 0x80000000u)) CHECK(t2 == t);
    /* PTP: exact both ways when the nanoseconds field is valid */
    int rc = stamp_ts_decode(ts, STAMP_CLOCK_PTP, tai, &t);
    CHECK(rc == (fz_rd32(ts + 4) < 1000000000u ? STAMP_OK : STAMP_EINVAL));
    stamp_ts_encode(enc, t, STAMP_CLOCK_PTP, tai);
    if (rc == STAMP_OK) CHECK(memcmp(enc, ts, 8) == 0);
    CHECK(stamp_ts_decode(enc, STAMP_CLOCK_PTP, tai, &t2) == STAMP_OK);
    CHECK(t2 == t);
}

static void check_ee(uint16_t v)
{
    stamp_ee_t ee;
    stamp_ee_unpack(v, &ee);
    uint16_t p = stamp_ee_pack(&ee);
    CHECK((v & 0xff) ? p == v : p == (v | 1u));
    double ns = stamp_ee_ns(&ee);
    CHECK(ns >= 0);
    stamp_ee_t back;
    stamp_ee_from_ns(&back, ns);
    CHECK(stamp_ee_ns(&back) >= ns * (1 - 1e-12)); /* covers what it stands for */
}

static stamp_hmac_t *hmac;

static void one(const uint8_t *data, size_t size, stamp_mode_t mode)
{
    size_t n = stamp_base_len(mode);
    uint8_t enc[STAMP_AUTH_BASE_LEN + 8];
    stamp_test_t t, t2;
    int rc = stamp_test_decode(data, size, mode, &t);
    CHECK(size < n ? rc == STAMP_ESHORT : rc == (int)n);
    if (rc > 0) {
        memset(enc, 0xa5, sizeof enc);
        CHECK(stamp_test_encode(enc, n - 1, mode, &t) == STAMP_ESHORT);
        CHECK(stamp_test_encode(enc, sizeof enc, mode, &t) == (int)n);
        CHECK(enc[n] == 0xa5); /* exactly the base length */
        check_layout(data, enc, n, mode == STAMP_MODE_AUTH ? TEST_AUTH : TEST_OPEN);
        CHECK(stamp_test_decode(enc, n, mode, &t2) == (int)n);
        CHECK(memcmp(&t, &t2, sizeof t) == 0);
        check_ts(t.ts, 37);
        check_ee(t.ee);
    }
    stamp_reflected_t r, r2;
    rc = stamp_reflected_decode(data, size, mode, &r);
    CHECK(size < n ? rc == STAMP_ESHORT : rc == (int)n);
    if (rc > 0) {
        memset(enc, 0xa5, sizeof enc);
        CHECK(stamp_reflected_encode(enc, n - 1, mode, &r) == STAMP_ESHORT);
        CHECK(stamp_reflected_encode(enc, sizeof enc, mode, &r) == (int)n);
        CHECK(enc[n] == 0xa5);
        check_layout(data, enc, n, mode == STAMP_MODE_AUTH ? REFL_AUTH : REFL_OPEN);
        CHECK(stamp_reflected_decode(enc, n, mode, &r2) == (int)n);
        CHECK(memcmp(&r, &r2, sizeof r) == 0);
        check_ts(r.rx_ts, 0);
        check_ts(r.sender_ts, -5);
        check_ee(r.sender_ee);
    }
    if (mode == STAMP_MODE_AUTH) {
        /* the base HMAC: whatever arrives is checked without reading past it */
        int v = stamp_auth_verify(hmac, data, size);
        CHECK(v == STAMP_OK || v == STAMP_EAUTH || (size < n && v != STAMP_OK));
        if (size >= n) {
            uint8_t *p = fz_dup(data, size);
            CHECK(stamp_auth_sign(hmac, p, size) == STAMP_OK);
            CHECK(stamp_auth_verify(hmac, p, size) == STAMP_OK);
            CHECK(memcmp(p, data, STAMP_HMAC_COVERED) == 0); /* signing writes only the HMAC */
            p[data[0] % STAMP_HMAC_COVERED] ^= 0x01;
            CHECK(stamp_auth_verify(hmac, p, size) == STAMP_EAUTH);
            free(p);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!hmac) hmac = stamp_hmac_new(FUZZ_KEY, FUZZ_KEYLEN);
    CHECK(hmac);
    one(data, size, STAMP_MODE_OPEN);
    one(data, size, STAMP_MODE_AUTH);
    return 0;
}
