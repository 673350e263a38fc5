/* wire.c - RFC 8762 base packets (with the RFC 8972 SSID), both modes. */
#include "internal.h"

/* Offsets (from the start of the UDP payload). */
enum { SU_SEQ = 0, SU_TS = 4, SU_EE = 12, SU_SSID = 14 };
enum { SA_SEQ = 0, SA_TS = 16, SA_EE = 24, SA_SSID = 26, SA_HMAC = 96 };
enum { RU_SEQ = 0, RU_TS = 4, RU_EE = 12, RU_SSID = 14, RU_RXTS = 16, RU_SSEQ = 24, RU_STS = 28,
       RU_SEE = 36, RU_TTL = 40 };
enum { RA_SEQ = 0, RA_TS = 16, RA_EE = 24, RA_SSID = 26, RA_RXTS = 32, RA_SSEQ = 48, RA_STS = 64,
       RA_SEE = 72, RA_TTL = 80, RA_HMAC = 96 };

size_t stamp_base_len(stamp_mode_t mode)
{
    return mode == STAMP_MODE_AUTH ? STAMP_AUTH_BASE_LEN : STAMP_BASE_LEN;
}

int stamp_test_encode(uint8_t *buf, size_t len, stamp_mode_t mode, const stamp_test_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    memset(buf, 0, n);
    if (mode == STAMP_MODE_AUTH) {
        wr32(buf + SA_SEQ, p->seq);
        memcpy(buf + SA_TS, p->ts, 8);
        wr16(buf + SA_EE, p->ee);
        wr16(buf + SA_SSID, p->ssid);
        memcpy(buf + SA_HMAC, p->hmac, STAMP_HMAC_LEN);
    } else {
        wr32(buf + SU_SEQ, p->seq);
        memcpy(buf + SU_TS, p->ts, 8);
        wr16(buf + SU_EE, p->ee);
        wr16(buf + SU_SSID, p->ssid);
    }
    return (int)n;
}

int stamp_test_decode(const uint8_t *buf, size_t len, stamp_mode_t mode, stamp_test_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    memset(p, 0, sizeof *p);
    if (mode == STAMP_MODE_AUTH) {
        p->seq = rd32(buf + SA_SEQ);
        memcpy(p->ts, buf + SA_TS, 8);
        p->ee = rd16(buf + SA_EE);
        p->ssid = rd16(buf + SA_SSID);
        memcpy(p->hmac, buf + SA_HMAC, STAMP_HMAC_LEN);
    } else {
        p->seq = rd32(buf + SU_SEQ);
        memcpy(p->ts, buf + SU_TS, 8);
        p->ee = rd16(buf + SU_EE);
        p->ssid = rd16(buf + SU_SSID);
    }
    return (int)n;
}

int stamp_reflected_encode(uint8_t *buf, size_t len, stamp_mode_t mode, const stamp_reflected_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    memset(buf, 0, n);
    if (mode == STAMP_MODE_AUTH) {
        wr32(buf + RA_SEQ, p->seq);
        memcpy(buf + RA_TS, p->ts, 8);
        wr16(buf + RA_EE, p->ee);
        wr16(buf + RA_SSID, p->ssid);
        memcpy(buf + RA_RXTS, p->rx_ts, 8);
        wr32(buf + RA_SSEQ, p->sender_seq);
        memcpy(buf + RA_STS, p->sender_ts, 8);
        wr16(buf + RA_SEE, p->sender_ee);
        buf[RA_TTL] = p->sender_ttl;
        memcpy(buf + RA_HMAC, p->hmac, STAMP_HMAC_LEN);
    } else {
        wr32(buf + RU_SEQ, p->seq);
        memcpy(buf + RU_TS, p->ts, 8);
        wr16(buf + RU_EE, p->ee);
        wr16(buf + RU_SSID, p->ssid);
        memcpy(buf + RU_RXTS, p->rx_ts, 8);
        wr32(buf + RU_SSEQ, p->sender_seq);
        memcpy(buf + RU_STS, p->sender_ts, 8);
        wr16(buf + RU_SEE, p->sender_ee);
        buf[RU_TTL] = p->sender_ttl;
    }
    return (int)n;
}

int stamp_reflected_decode(const uint8_t *buf, size_t len, stamp_mode_t mode, stamp_reflected_t *p)
{
    size_t n = stamp_base_len(mode);
    if (len < n) return STAMP_ESHORT;
    memset(p, 0, sizeof *p);
    if (mode == STAMP_MODE_AUTH) {
        p->seq = rd32(buf + RA_SEQ);
        memcpy(p->ts, buf + RA_TS, 8);
        p->ee = rd16(buf + RA_EE);
        p->ssid = rd16(buf + RA_SSID);
        memcpy(p->rx_ts, buf + RA_RXTS, 8);
        p->sender_seq = rd32(buf + RA_SSEQ);
        memcpy(p->sender_ts, buf + RA_STS, 8);
        p->sender_ee = rd16(buf + RA_SEE);
        p->sender_ttl = buf[RA_TTL];
        memcpy(p->hmac, buf + RA_HMAC, STAMP_HMAC_LEN);
    } else {
        p->seq = rd32(buf + RU_SEQ);
        memcpy(p->ts, buf + RU_TS, 8);
        p->ee = rd16(buf + RU_EE);
        p->ssid = rd16(buf + RU_SSID);
        memcpy(p->rx_ts, buf + RU_RXTS, 8);
        p->sender_seq = rd32(buf + RU_SSEQ);
        memcpy(p->sender_ts, buf + RU_STS, 8);
        p->sender_ee = rd16(buf + RU_SEE);
        p->sender_ttl = buf[RU_TTL];
    }
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
