/* libFuzzer target: the TLV walk (stamp_tlv_next) over a TLV area and over
 * the sub-TLV area of every registered type that has one, as the reflector,
 * the sender and the binding walk them.
 *
 * Invariants: every TLV returned lies inside the buffer; the walk advances
 * and ends; a complete walk covers the buffer exactly; -1 only when the next
 * header or value runs past the end; the walker's verdict agrees with an
 * independent reading of the length fields; the registry's length rule
 * agrees with its min/max/step. */
#include "fuzz.h"

/* Walk buf[from..len) and check it; returns the number of complete TLVs. */
static int walk(const uint8_t *buf, size_t len, size_t from, int depth)
{
    size_t pos = from, expect = from;
    stamp_tlv_t t;
    int r, n = 0;
    while ((r = stamp_tlv_next(buf, len, &pos, &t)) == 1) {
        CHECK(t.off == expect);
        CHECK(t.off + STAMP_TLV_HDR + t.len <= len);
        CHECK(pos == t.off + STAMP_TLV_HDR + t.len);
        CHECK(t.flags == buf[t.off] && t.type == buf[t.off + 1] && t.len == fz_rd16(buf + t.off + 2));
        expect = pos;
        n++;
        CHECK(n <= (int)(len / STAMP_TLV_HDR) + 1);
        const stamp_tlv_def_t *d = stamp_tlv_lookup(t.type);
        if (t.type >= 1 && t.type <= 12) CHECK(d && d->type == t.type);
        if (!d) continue;
        CHECK(stamp_tlv_by_key(d->key) == d);
        int ok = t.len >= d->min_len && t.len <= d->max_len && (!d->len_step || (t.len - d->min_len) % d->len_step == 0);
        CHECK(stamp_tlv_len_ok(d, t.len) == ok);
        /* sub-TLVs: walked inside the value only, exactly as the parent's walk */
        if (depth == 0 && ok && d->sub_off != 0xffff && d->sub_off <= t.len) {
            uint8_t *v = fz_dup(buf + t.off + STAMP_TLV_HDR, t.len); /* exact size: ASan sees any overread */
            walk(v, t.len, d->sub_off, 1);
            free(v);
        }
    }
    if (r == 0) {
        CHECK(pos == expect && (expect >= len));
    } else {
        CHECK(r == -1);
        CHECK(t.off == expect && expect < len);
        CHECK(len - expect < STAMP_TLV_HDR || (size_t)fz_rd16(buf + expect + 2) > len - expect - STAMP_TLV_HDR);
        CHECK(pos == expect); /* not advanced */
        stamp_tlv_t again;
        CHECK(stamp_tlv_next(buf, len, &pos, &again) == -1); /* and stays there */
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = fz_dup(data, size);
    walk(p, size, 0, 0);
    /* as after an open and an authenticated base packet */
    if (size > STAMP_BASE_LEN) walk(p, size, STAMP_BASE_LEN, 0);
    if (size > STAMP_AUTH_BASE_LEN) walk(p, size, STAMP_AUTH_BASE_LEN, 0);
    CHECK(memcmp(p, data, size) == 0); /* the walk never writes */
    free(p);
    return 0;
}
