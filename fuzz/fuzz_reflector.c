/* libFuzzer target: the reflector's TLV walk on arbitrary octets (as after
 * the base packet), with every policy switch on. Build: cmake -DSTAMP_FUZZ=ON
 * -DCMAKE_C_COMPILER=clang; run: ./build-fuzz/fuzz_reflector -max_total_time=60 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "stamp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static stamp_hmac_t *hmac;
    static uint8_t pkt[STAMP_MAX_PKT];
    if (!hmac) hmac = stamp_hmac_new((const uint8_t *)"fuzz-key-fuzz-key", 17);
    if (size + STAMP_BASE_LEN > sizeof pkt || size < 1) return 0;
    memset(pkt, 0, STAMP_BASE_LEN);
    memcpy(pkt + STAMP_BASE_LEN, data + 1, size - 1);
    size_t len = STAMP_BASE_LEN + size - 1;

    stamp_rxmeta_t m;
    memset(&m, 0, sizeof m);
    stamp_addr_parse(&m.src, data[0] & 1 ? "::1" : "127.0.0.1", 8621);
    stamp_addr_parse(&m.dst, data[0] & 1 ? "::1" : "127.0.0.1", 8620);
    m.ttl = 64;
    m.tos = data[0];
    stamp_tlv_policy_t pol;
    memset(&pol, 0, sizeof pol);
    pol.process = 1;
    pol.verify_hmac = data[0] & 2;
    pol.cos_refuse = data[0] & 4;
    pol.has_member_link = data[0] & 8;
    pol.member_link = 9;
    pol.refl_max_count = 4;
    pol.refl_max_size = 2000;
    pol.n_allow_return = 1;
    pol.allow_return[0].family = AF_INET;
    pol.allow_return[0].plen = 8;
    pol.allow_return[0].addr[0] = 127;
    stamp_tlv_ctx_t c;
    memset(&c, 0, sizeof c);
    c.meta = &m;
    c.pol = &pol;
    c.tos = -1;
    c.has_prev = 1;
    int hoff;
    stamp_tlv_reflect(&c, hmac, pkt, STAMP_BASE_LEN, len, &hoff);
    if (hoff >= 0) stamp_tlv_sign(hmac, pkt, STAMP_BASE_LEN, (size_t)hoff);
    return 0;
}
