/* hmac.c - HMAC-SHA-256 truncated to 128 bits (RFC 2104), via OpenSSL libcrypto's SHA-256.
 *
 * The key is turned once, in stamp_hmac_new, into the SHA-256 states after its inner and outer
 * padded blocks; each HMAC then copies those two states (a struct copy, no allocation, no key
 * schedule) and hashes only the message and the inner digest. The low-level SHA256_* calls are
 * deprecated in OpenSSL 3 but kept there (they use the same SHA extensions/assembly as EVP);
 * through EVP_MAC every HMAC re-initialised, duplicated and freed digest contexts (allocations
 * and parameter lookups on the packet path). */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <ctype.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "internal.h"

#define HMAC_BLOCK 64 /* SHA-256 block */

struct stamp_hmac {
    SHA256_CTX inner, outer; /* after (K ^ ipad) and (K ^ opad): derived from the key, cleansed on free */
};

void stamp_hmac_free(stamp_hmac_t *h)
{
    if (!h) return;
    OPENSSL_cleanse(h, sizeof *h);
    free(h);
}

stamp_hmac_t *stamp_hmac_new(const uint8_t *key, size_t keylen)
{
    stamp_hmac_t *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    uint8_t k[HMAC_BLOCK], pad[HMAC_BLOCK];
    memset(k, 0, sizeof k);
    int ok = 1;
    if (keylen > HMAC_BLOCK) { /* RFC 2104 2: a key longer than the block is hashed first */
        SHA256_CTX c;
        ok = SHA256_Init(&c) && SHA256_Update(&c, key, keylen) && SHA256_Final(k, &c);
        OPENSSL_cleanse(&c, sizeof c);
    } else if (keylen) { /* an empty key is legal HMAC: all zeros */
        memcpy(k, key, keylen);
    }
    for (size_t i = 0; i < HMAC_BLOCK; i++) pad[i] = (uint8_t)(k[i] ^ 0x36);
    ok = ok && SHA256_Init(&h->inner) && SHA256_Update(&h->inner, pad, HMAC_BLOCK);
    for (size_t i = 0; i < HMAC_BLOCK; i++) pad[i] = (uint8_t)(k[i] ^ 0x5c);
    ok = ok && SHA256_Init(&h->outer) && SHA256_Update(&h->outer, pad, HMAC_BLOCK);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    if (!ok) {
        stamp_hmac_free(h);
        return NULL;
    }
    return h;
}

int stamp_hmac_compute2(stamp_hmac_t *h, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                        uint8_t out[STAMP_HMAC_LEN])
{
    struct {
        SHA256_CTX c;
        uint8_t d[SHA256_DIGEST_LENGTH];
    } w;
    int ok = 1;
    w.c = h->inner;
    if (alen) ok = SHA256_Update(&w.c, a, alen);
    if (ok && blen) ok = SHA256_Update(&w.c, b, blen);
    ok = ok && SHA256_Final(w.d, &w.c);
    if (ok) {
        w.c = h->outer;
        ok = SHA256_Update(&w.c, w.d, sizeof w.d) && SHA256_Final(w.d, &w.c);
    }
    if (ok) memcpy(out, w.d, STAMP_HMAC_LEN);
    OPENSSL_cleanse(&w, sizeof w);
    return ok ? STAMP_OK : STAMP_ECRYPTO;
}

int stamp_hmac_compute(stamp_hmac_t *h, const uint8_t *data, size_t len, uint8_t out[STAMP_HMAC_LEN])
{
    return stamp_hmac_compute2(h, data, len, NULL, 0, out);
}

int stamp_hmac_verify(stamp_hmac_t *h, const uint8_t *data, size_t len, const uint8_t mac[STAMP_HMAC_LEN])
{
    uint8_t calc[STAMP_HMAC_LEN];
    int rc = stamp_hmac_compute(h, data, len, calc);
    if (rc) return rc;
    return CRYPTO_memcmp(calc, mac, STAMP_HMAC_LEN) == 0 ? STAMP_OK : STAMP_EAUTH;
}

int stamp_auth_sign(stamp_hmac_t *h, uint8_t *buf, size_t len)
{
    if (len < STAMP_AUTH_BASE_LEN) return STAMP_ESHORT;
    return stamp_hmac_compute(h, buf, STAMP_HMAC_COVERED, buf + STAMP_HMAC_COVERED);
}

int stamp_auth_verify(stamp_hmac_t *h, const uint8_t *buf, size_t len)
{
    if (len < STAMP_AUTH_BASE_LEN) return STAMP_ESHORT;
    return stamp_hmac_verify(h, buf, STAMP_HMAC_COVERED, buf + STAMP_HMAC_COVERED);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int stamp_hex_decode(const char *hex, uint8_t *out, size_t outlen)
{
    size_t n = strlen(hex);
    if (n >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
        hex += 2;
        n -= 2;
    }
    if (n == 0 || n % 2 || n / 2 > outlen) return STAMP_EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return STAMP_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(n / 2);
}
