/* wire.c - RFC 8762 base packets (with the RFC 8972 SSID), both modes. */
#include "internal.h"

/* Field offsets from the start of the UDP payload, per mode (RFC 8762 4.2/4.3, RFC 8972 3). */
typedef struct {
    uint8_t seq, ts, ee, ssid, hmac;
} test_layout_t;

typedef struct {
    uint8_t seq, ts, ee, ssid, rx_ts, sender_seq, sender_ts, sender_ee, sender_ttl, hmac;
} reflected_layout_t;

static const test_layout_t TEST[2] = {
    [STAMP_MODE_OPEN] = {0, 4, 12, 14, 0},
    [STAMP_MODE_AUTH] = {0, 16, 24, 26, 96},
};

static const reflected_layout_t REFLECTED[2] = {
    [STAMP_MODE_OPEN] = {0, 4, 12, 14, 16, 24, 28, 36, 40, 0},
    [STAMP_MODE_AUTH] = {0, 16, 24, 26, 32, 48, 64, 72, 80, 96},
};

size_t stamp_base_len(stamp_mode_t mode)
{
    return mode == STAMP_MODE_AUTH ? STAMP_AUTH_BASE_LEN : STAMP_BASE_LEN;
}

int stamp_test_encode(uint8_t *buf, size_t len, stamp_mode_t mode, const stamp_test_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    const test_layout_t *o = &TEST[mode == STAMP_MODE_AUTH];
    memset(buf, 0, n); /* every MBZ octet */
    wr32(buf + o->seq, p->seq);
    memcpy(buf + o->ts, p->ts, 8);
    wr16(buf + o->ee, p->ee);
    wr16(buf + o->ssid, p->ssid);
    if (mode == STAMP_MODE_AUTH) memcpy(buf + o->hmac, p->hmac, STAMP_HMAC_LEN);
    return (int)n;
}

int stamp_test_decode(const uint8_t *buf, size_t len, stamp_mode_t mode, stamp_test_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    const test_layout_t *o = &TEST[mode == STAMP_MODE_AUTH];
    memset(p, 0, sizeof *p); /* MBZ content is ignored */
    p->seq = rd32(buf + o->seq);
    memcpy(p->ts, buf + o->ts, 8);
    p->ee = rd16(buf + o->ee);
    p->ssid = rd16(buf + o->ssid);
    if (mode == STAMP_MODE_AUTH) memcpy(p->hmac, buf + o->hmac, STAMP_HMAC_LEN);
    return (int)n;
}

int stamp_reflected_encode(uint8_t *buf, size_t len, stamp_mode_t mode, const stamp_reflected_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    const reflected_layout_t *o = &REFLECTED[mode == STAMP_MODE_AUTH];
    memset(buf, 0, n);
    wr32(buf + o->seq, p->seq);
    memcpy(buf + o->ts, p->ts, 8);
    wr16(buf + o->ee, p->ee);
    wr16(buf + o->ssid, p->ssid);
    memcpy(buf + o->rx_ts, p->rx_ts, 8);
    wr32(buf + o->sender_seq, p->sender_seq);
    memcpy(buf + o->sender_ts, p->sender_ts, 8);
    wr16(buf + o->sender_ee, p->sender_ee);
    buf[o->sender_ttl] = p->sender_ttl;
    if (mode == STAMP_MODE_AUTH) memcpy(buf + o->hmac, p->hmac, STAMP_HMAC_LEN);
    return (int)n;
}

int stamp_reflected_decode(const uint8_t *buf, size_t len, stamp_mode_t mode, stamp_reflected_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    const reflected_layout_t *o = &REFLECTED[mode == STAMP_MODE_AUTH];
    memset(p, 0, sizeof *p);
    p->seq = rd32(buf + o->seq);
    memcpy(p->ts, buf + o->ts, 8);
    p->ee = rd16(buf + o->ee);
    p->ssid = rd16(buf + o->ssid);
    memcpy(p->rx_ts, buf + o->rx_ts, 8);
    p->sender_seq = rd32(buf + o->sender_seq);
    memcpy(p->sender_ts, buf + o->sender_ts, 8);
    p->sender_ee = rd16(buf + o->sender_ee);
    p->sender_ttl = buf[o->sender_ttl];
    if (mode == STAMP_MODE_AUTH) memcpy(p->hmac, buf + o->hmac, STAMP_HMAC_LEN);
    return (int)n;
}

const char *stamp_strerror(int code)
{
    switch (code) {
    case STAMP_OK: return "ok";
    case STAMP_ESHORT: return "buffer too short";
    case STAMP_EINVAL: return "invalid argument";
    case STAMP_EAUTH: return "HMAC verification failed";
    case STAMP_ENOMEM: return "out of memory";
    case STAMP_EADDR: return "cannot parse or resolve address";
    case STAMP_ECRYPTO: return "libcrypto failure";
    case STAMP_ECLOSED: return "object is closed";
    default: break;
    }
    if (code < 0 && code > -4096) return strerror(-code);
    return "unknown error";
}
