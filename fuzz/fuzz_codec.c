/* libFuzzer target: base packet decoders, timestamps and the TLV iterator. */
#include <string.h>

#include "stamp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stamp_test_t t;
    stamp_reflected_t r;
    for (int mode = 0; mode < 2; mode++) {
        if (stamp_test_decode(data, size, (stamp_mode_t)mode, &t) > 0) {
            stamp_ns_t ns;
            stamp_ts_decode(t.ts, STAMP_CLOCK_NTP, 0, &ns);
            stamp_ts_decode(t.ts, STAMP_CLOCK_PTP, 37, &ns);
        }
        stamp_reflected_decode(data, size, (stamp_mode_t)mode, &r);
    }
    size_t pos = 0;
    stamp_tlv_t tl;
    while (stamp_tlv_next(data, size, &pos, &tl) == 1) {
        const stamp_tlv_def_t *d = stamp_tlv_lookup(tl.type);
        if (!d) continue;
        for (const stamp_tlv_field_t *f = d->fields; f->name; f++)
            (void)stamp_field_get(data + tl.off + STAMP_TLV_HDR, tl.len, f);
    }
    return 0;
}
