/* fuzz.h - shared helpers of the libFuzzer targets (not part of libstamp). */
#ifndef STAMP_FUZZ_H
#define STAMP_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stamp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant that does not hold is a crash: libFuzzer saves the input. */
#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

static inline uint16_t fz_rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t fz_rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void fz_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* The key every target uses (32 octets, as a deployment would). */
#define FUZZ_KEY ((const uint8_t *)"stamp-fuzz-key-0123456789abcdef!")
#define FUZZ_KEYLEN 32

/* A copy of `data` in a heap buffer of exactly `size` octets, so that ASan
 * sees any read past the datagram (libFuzzer's own buffer is exact too, but
 * the targets modify their copy). */
static inline uint8_t *fz_dup(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p) abort();
    if (size) memcpy(p, data, size);
    return p;
}

/* Sign what a Session-Sender with the key would sign: the HMAC TLV (the
 * first TLV of type 8 with a 16-octet value after `base`) and, in
 * authenticated mode, the base packet. So the fuzzer reaches the code
 * behind the checks as well as the checks. */
static inline void fz_sign(stamp_hmac_t *h, uint8_t *pkt, size_t len, size_t base, int auth)
{
    if (len < base) return;
    size_t pos = base;
    stamp_tlv_t t;
    while (stamp_tlv_next(pkt, len, &pos, &t) == 1) {
        if (t.type == STAMP_TLV_HMAC && t.len == STAMP_HMAC_LEN) {
            stamp_tlv_sign(h, pkt, base, t.off);
            break;
        }
    }
    if (auth) stamp_auth_sign(h, pkt, len);
}

#endif
