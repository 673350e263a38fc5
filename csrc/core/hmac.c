/* hmac.c - HMAC-SHA-256 truncated to 128 bits, via OpenSSL libcrypto. */
#include <ctype.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "internal.h"

struct stamp_hmac {
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx; /* keyed once; re-initialised per packet without allocating */
};

void stamp_hmac_free(stamp_hmac_t *h)
{
    if (!h) return;
    EVP_MAC_CTX_free(h->ctx); /* libcrypto cleanses the key material */
    EVP_MAC_free(h->mac);
    OPENSSL_cleanse(h, sizeof *h);
    free(h);
}

stamp_hmac_t *stamp_hmac_new(const uint8_t *key, size_t keylen)
{
    stamp_hmac_t *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end()};
    h->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!h->mac) goto fail;
    h->ctx = EVP_MAC_CTX_new(h->mac);
    if (!h->ctx) goto fail;
    /* an empty key is legal HMAC; pass a valid pointer anyway */
    static const uint8_t zero = 0;
    if (!EVP_MAC_init(h->ctx, keylen ? key : &zero, keylen, params)) goto fail;
    return h;
fail:
    stamp_hmac_free(h);
    return NULL;
}

int stamp_hmac_compute2(stamp_hmac_t *h, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                        uint8_t out[STAMP_HMAC_LEN])
{
    uint8_t full[EVP_MAX_MD_SIZE];
    size_t outl = 0;
    if (!EVP_MAC_init(h->ctx, NULL, 0, NULL)) return STAMP_ECRYPTO;
    if (alen && !EVP_MAC_update(h->ctx, a, alen)) return STAMP_ECRYPTO;
    if (blen && !EVP_MAC_update(h->ctx, b, blen)) return STAMP_ECRYPTO;
    if (!EVP_MAC_final(h->ctx, full, &outl, sizeof full) || outl < STAMP_HMAC_LEN) return STAMP_ECRYPTO;
    memcpy(out, full, STAMP_HMAC_LEN);
    OPENSSL_cleanse(full, sizeof full);
    return STAMP_OK;
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
