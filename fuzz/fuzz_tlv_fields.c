/* libFuzzer target: the registry's table-driven field codec
 * (stamp_field_get/stamp_field_set) for every field of every TLV type, and
 * the sub-TLV definitions. Input: one octet choosing the type, one octet of
 * value length slack, then value octets and a new value for each field.
 *
 * Invariants: get(set(v, x)) = x masked to the field's width; set(v, get(v))
 * leaves v unchanged; set changes no bit outside the field; nothing is read
 * or written outside the value (ASan, exact-size heap copy); fields that do
 * not fit read as 0 and are never written; timestamps decode(encode(t)) = t. */
#include "fuzz.h"

static uint64_t bits(const uint8_t *v, unsigned from, unsigned n)
{
    uint64_t x = 0;
    for (unsigned b = from; b < from + n; b++) x = (x << 1) | ((v[b / 8] >> (7 - b % 8)) & 1u);
    return x;
}

static void check_field(const stamp_tlv_field_t *f, const uint8_t *v0, size_t len, uint64_t y)
{
    uint8_t *v = fz_dup(v0, len);
    size_t need = (size_t)(f->bitpos + f->width + 7) / 8;
    switch (f->kind) {
    case STAMP_F_UINT: {
        CHECK(f->width >= 1 && f->width <= 64);
        uint64_t mask = f->width == 64 ? ~(uint64_t)0 : (((uint64_t)1 << f->width) - 1);
        uint64_t x = stamp_field_get(v, len, f);
        if (need > len) {
            CHECK(x == 0);
            stamp_field_set(v, len, f, y);
            CHECK(memcmp(v, v0, len) == 0); /* does not fit: never written */
            break;
        }
        CHECK(x == bits(v, f->bitpos, f->width)); /* an independent reading */
        stamp_field_set(v, len, f, x);
        CHECK(memcmp(v, v0, len) == 0);
        stamp_field_set(v, len, f, y);
        CHECK(stamp_field_get(v, len, f) == (y & mask));
        for (size_t b = 0; b < len * 8; b++) /* no bit outside the field changed */
            if (b < f->bitpos || b >= (size_t)(f->bitpos + f->width))
                CHECK(((v[b / 8] ^ v0[b / 8]) >> (7 - b % 8) & 1u) == 0);
        break;
    }
    case STAMP_F_TS: {
        CHECK(f->bitpos % 8 == 0 && f->width == 64);
        CHECK(stamp_field_get(v, len, f) == 0); /* not a UINT: the generic getter refuses */
        size_t off = f->bitpos / 8;
        if (off + 8 > len) break;
        stamp_ns_t t, t2;
        uint8_t enc[8];
        stamp_ts_decode(v + off, STAMP_CLOCK_PTP, 0, &t);
        stamp_ts_encode(enc, t, STAMP_CLOCK_PTP, 0);
        CHECK(stamp_ts_decode(enc, STAMP_CLOCK_PTP, 0, &t2) == STAMP_OK && t2 == t);
        break;
    }
    case STAMP_F_ADDR:
        CHECK(f->bitpos % 8 == 0);
        CHECK(stamp_field_get(v, len, f) == 0);
        break;
    case STAMP_F_BYTES:
        CHECK(f->bitpos % 8 == 0);
        CHECK(stamp_field_get(v, len, f) == 0);
        break;
    default:
        CHECK(!"unknown field kind");
    }
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n;
    const stamp_tlv_def_t *reg = stamp_tlv_registry(&n);
    const stamp_tlv_def_t *d = &reg[data[0] % n];
    CHECK(stamp_tlv_lookup(d->type) == d);
    CHECK(d->min_len <= d->max_len);
    CHECK(d->default_len == 0 || stamp_tlv_len_ok(d, d->default_len) || d->type == STAMP_TLV_PADDING);
    CHECK(d->fields != NULL && d->subs != NULL && d->name && d->key);
    CHECK(d->type == STAMP_TLV_HMAC || d->reflect != NULL);
    /* the value: the rest of the input, cut to a length chosen by octet 1 */
    const uint8_t *v = data + 2;
    size_t len = size - 2;
    if (data[1] < 0xf0 && data[1] < len) len = data[1];
    const uint8_t *yv = data + 2 + len; /* new field values from what is left */
    size_t ylen = size - 2 - len;
    int k = 0;
    for (const stamp_tlv_field_t *f = d->fields; f->name; f++, k++) {
        uint64_t y = 0;
        for (size_t i = 0; i < 8 && ylen; i++) y = (y << 8) | yv[(k * 8 + i) % ylen];
        check_field(f, v, len, y);
    }
    /* sub-TLV definitions: names, kinds and widths are sane, types unique */
    for (const stamp_subtlv_def_t *s = d->subs; s->type; s++) {
        CHECK(s->name && *s->name);
        CHECK(s->kind == STAMP_F_ADDR || s->kind == STAMP_F_UINT || s->kind == STAMP_F_BYTES);
        if (s->kind == STAMP_F_ADDR) CHECK(s->width == 0 || s->width == 4 || s->width == 16);
        for (const stamp_subtlv_def_t *s2 = s + 1; s2->type; s2++) CHECK(s2->type != s->type);
    }
    if (d->sub_off != 0xffff) CHECK(d->sub_off <= d->max_len);
    return 0;
}
