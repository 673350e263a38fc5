/* rtable.c - the reflector's compact session and source tables (see rtable.h). */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/random.h>

#include "rtable.h"

static uint64_t seed_once(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) s = (uint64_t)stamp_mono();
    return s | 1u;
}

/* A keyed mix of up to 40 octets (flooding one bucket needs the secret seed). */
static uint32_t mix(uint64_t seed, const uint8_t *p, size_t n, uint64_t extra)
{
    uint64_t h = seed ^ (extra * 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h ^= w;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

int rt_addr_key(const stamp_addr_t *a, uint8_t out[16], uint16_t *port)
{
    memset(out, 0, 16);
    *port = 0;
    if (a->len && a->addr.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->addr;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &s->sin_addr, 4);
        *port = ntohs(s->sin_port);
        return 1;
    }
    if (a->len && a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->addr;
        memcpy(out, &s->sin6_addr, 16);
        *port = ntohs(s->sin6_port);
        return 1;
    }
    return 0;
}

/* ---- index ---- */

static int ix_init(rt_index_t *x, uint32_t cap)
{
    uint32_t n = 64;
    while (n < cap * 2u && n < (1u << 31)) n <<= 1;
    x->slot = calloc(n, sizeof *x->slot);
    x->hash = calloc(n, sizeof *x->hash);
    x->mask = n - 1;
    x->seed = seed_once();
    return x->slot && x->hash ? 0 : STAMP_ENOMEM;
}

static void ix_free(rt_index_t *x)
{
    free(x->slot);
    free(x->hash);
    x->slot = x->hash = NULL;
}

static void ix_insert(rt_index_t *x, uint32_t h, uint32_t e)
{
    uint32_t i = h & x->mask;
    while (x->slot[i]) i = (i + 1) & x->mask;
    x->slot[i] = e + 1;
    x->hash[i] = h;
}

static void ix_remove(rt_index_t *x, uint32_t h, uint32_t e)
{
    uint32_t i = h & x->mask;
    while (x->slot[i] && x->slot[i] != e + 1) i = (i + 1) & x->mask;
    if (!x->slot[i]) return;
    /* backward-shift: pull later entries of the probe run into the hole */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & x->mask;
        if (!x->slot[j]) break;
        uint32_t k = x->hash[j] & x->mask; /* home of the entry at j */
        int movable = (i <= j) ? (k <= i || k > j) : (k <= i && k > j);
        if (movable) {
            x->slot[i] = x->slot[j];
            x->hash[i] = x->hash[j];
            i = j;
        }
    }
    x->slot[i] = 0;
    x->hash[i] = 0;
}

/* ---- LRU list (generic over the two entry types via their link fields) ---- */

#define LRU_UNLINK(t, i)                                                                                    \
    do {                                                                                                    \
        uint32_t p_ = (t)->e[i].prev, n_ = (t)->e[i].next;                                                  \
        if (p_ != RT_NONE) (t)->e[p_].next = n_; else (t)->lru.head = n_;                                   \
        if (n_ != RT_NONE) (t)->e[n_].prev = p_; else (t)->lru.tail = p_;                                   \
        (t)->e[i].prev = (t)->e[i].next = RT_NONE;                                                          \
    } while (0)

#define LRU_APPEND(t, i)                                                                                    \
    do {                                                                                                    \
        (t)->e[i].prev = (t)->lru.tail;                                                                     \
        (t)->e[i].next = RT_NONE;                                                                           \
        if ((t)->lru.tail != RT_NONE) (t)->e[(t)->lru.tail].next = (i); else (t)->lru.head = (i);           \
        (t)->lru.tail = (i);                                                                                \
    } while (0)

/* ---- sessions ---- */

int rt_sessions_init(rt_sessions_t *t, uint32_t cap)
{
    memset(t, 0, sizeof *t);
    if (cap == 0) return STAMP_EINVAL;
    /* calloc'd pages are only touched as sessions arrive: RSS follows live sessions */
    t->e = calloc(cap, sizeof *t->e);
    t->cap = cap;
    t->free_head = RT_NONE;
    t->lru.head = t->lru.tail = RT_NONE;
    if (!t->e) return STAMP_ENOMEM;
    return ix_init(&t->ix, cap);
}

void rt_sessions_free(rt_sessions_t *t)
{
    free(t->e);
    t->e = NULL;
    ix_free(&t->ix);
}

static uint32_t sess_hash(uint64_t seed, const uint8_t src[16], uint16_t sport, const uint8_t dst[16], uint16_t dport,
                          uint16_t ssid)
{
    uint8_t k[32];
    memcpy(k, src, 16);
    memcpy(k + 16, dst, 16);
    return mix(seed, k, 32, ((uint64_t)sport << 32) | ((uint64_t)dport << 16) | ssid);
}

void rt_session_remove(rt_sessions_t *t, uint32_t i)
{
    rt_session_t *s = &t->e[i];
    ix_remove(&t->ix, sess_hash(t->ix.seed, s->src, s->sport, s->dst, s->dport, s->ssid), i);
    LRU_UNLINK(t, i);
    s->gen = 0;
    s->next = t->free_head;
    t->free_head = i;
    t->used--;
}

void rt_session_touch(rt_sessions_t *t, uint32_t i, stamp_ns_t mono)
{
    t->e[i].last_seen = mono;
    if (t->lru.tail != i) {
        LRU_UNLINK(t, i);
        LRU_APPEND(t, i);
    }
}

uint32_t rt_session_oldest_idle(const rt_sessions_t *t, stamp_ns_t mono, stamp_ns_t idle)
{
    uint32_t h = t->lru.head;
    if (h == RT_NONE) return RT_NONE;
    return mono - t->e[h].last_seen > idle ? h : RT_NONE;
}

uint32_t rt_session_get(rt_sessions_t *t, const uint8_t src[16], uint16_t sport, const uint8_t dst[16],
                        uint16_t dport, uint16_t ssid, stamp_ns_t mono, int *created, uint32_t *evicted)
{
    *created = 0;
    *evicted = RT_NONE;
    uint32_t h = sess_hash(t->ix.seed, src, sport, dst, dport, ssid);
    for (uint32_t i = h & t->ix.mask; t->ix.slot[i]; i = (i + 1) & t->ix.mask) {
        if (t->ix.hash[i] != h) continue;
        uint32_t e = t->ix.slot[i] - 1;
        rt_session_t *s = &t->e[e];
        if (s->sport == sport && s->dport == dport && s->ssid == ssid && memcmp(s->src, src, 16) == 0 &&
            memcmp(s->dst, dst, 16) == 0) {
            s->last_seen = mono;
            if (t->lru.tail != e) {
                LRU_UNLINK(t, e);
                LRU_APPEND(t, e);
            }
            return e;
        }
    }
    if (t->used >= t->cap) { /* full: the session idle longest makes room */
        /* one sending a Type 12 burst is not idle (it is refreshed only as each reply leaves): it goes to
           the back, up to 16 of them, before the idle one goes */
        for (int k = 0; k < 16 && t->e[t->lru.head].burst && t->lru.head != t->lru.tail; k++) {
            uint32_t b = t->lru.head;
            LRU_UNLINK(t, b);
            LRU_APPEND(t, b);
        }
        *evicted = t->lru.head;
        rt_session_remove(t, t->lru.head);
    }
    uint32_t e;
    if (t->free_head != RT_NONE) {
        e = t->free_head;
        t->free_head = t->e[e].next;
    } else {
        e = t->hiwater++;
    }
    rt_session_t *s = &t->e[e];
    memset(s, 0, sizeof *s);
    memcpy(s->src, src, 16);
    memcpy(s->dst, dst, 16);
    s->sport = sport;
    s->dport = dport;
    s->ssid = ssid;
    s->last_seen = mono;
    if (++t->gen == 0) t->gen = 1;
    s->gen = t->gen;
    ix_insert(&t->ix, h, e);
    LRU_APPEND(t, e);
    t->used++;
    *created = 1;
    return e;
}

/* ---- sources ---- */

int rt_sources_init(rt_sources_t *t, uint32_t cap)
{
    memset(t, 0, sizeof *t);
    if (cap == 0) return STAMP_EINVAL;
    t->e = calloc(cap, sizeof *t->e);
    t->cap = cap;
    t->lru.head = t->lru.tail = RT_NONE;
    if (!t->e) return STAMP_ENOMEM;
    return ix_init(&t->ix, cap);
}

void rt_sources_free(rt_sources_t *t)
{
    free(t->e);
    t->e = NULL;
    ix_free(&t->ix);
}

int rt_source_admit(rt_sources_t *t, const uint8_t addr[16], stamp_ns_t mono, stamp_ns_t emission,
                    stamp_ns_t tolerance)
{
    uint32_t h = mix(t->ix.seed, addr, 16, 0x5a);
    uint32_t e = RT_NONE;
    for (uint32_t i = h & t->ix.mask; t->ix.slot[i]; i = (i + 1) & t->ix.mask) {
        uint32_t c = t->ix.slot[i] - 1;
        if (t->ix.hash[i] == h && memcmp(t->e[c].addr, addr, 16) == 0) {
            e = c;
            break;
        }
    }
    if (e == RT_NONE) {
        if (t->used >= t->cap) { /* full: forget the source seen least recently */
            e = t->lru.head;
            ix_remove(&t->ix, mix(t->ix.seed, t->e[e].addr, 16, 0x5a), e);
            LRU_UNLINK(t, e);
        } else {
            e = t->used++;
        }
        memcpy(t->e[e].addr, addr, 16);
        t->e[e].tat = mono;
        ix_insert(&t->ix, h, e);
        LRU_APPEND(t, e);
    } else if (t->lru.tail != e) {
        LRU_UNLINK(t, e);
        LRU_APPEND(t, e);
    }
    rt_source_t *s = &t->e[e];
    stamp_ns_t tat = s->tat > mono ? s->tat : mono;
    if (tat - mono > tolerance) return 0; /* over the rate: the bucket is empty */
    s->tat = tat + emission;
    return 1;
}
