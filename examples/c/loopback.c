/* loopback.c - libstamp from C: a Session-Reflector and a Session-Sender on
 * loopback in one process, measuring a few packets and printing their RTTs.
 *
 * Part 1 uses the socket engines (stamp_reflector_*, stamp_sender_*).
 * Part 2 drives the I/O-free sender machine (stamp_sm_*) with a plain UDP
 * socket of its own, against the same reflector.
 *
 * Build against the installed library:
 *     cc -std=c11 -o loopback loopback.c $(pkg-config --cflags --libs stamp)
 * Run: ./loopback [COUNT]   (default 5; exit status 0 when every packet came back)
 */
#define _POSIX_C_SOURCE 200809L
#include <stamp.h>

#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what, int code)
{
    fprintf(stderr, "loopback: %s: %s\n", what, stamp_strerror(code));
    return 1;
}

/* Step the reflector (non-blocking) until nothing is ready. */
static void serve(stamp_reflector_t *r)
{
    while (stamp_reflector_step(r, 0) > 0) {
    }
}

static void print_result(const char *who, const stamp_result_t *x)
{
    if (x->status == STAMP_RES_OK)
        printf("%s seq=%u rtt=%.3f ms ttl=%d\n", who, (unsigned)x->seq, (double)x->rtt / 1e6, x->sender_ttl);
    else
        printf("%s seq=%u lost\n", who, (unsigned)x->seq);
}

int main(int argc, char **argv)
{
    unsigned count = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 5;
    if (count == 0 || count > 1000) count = 5;
    printf("libstamp %s\n", STAMP_VERSION);

    /* ---- a reflector on 127.0.0.1, any free port ---- */
    stamp_reflector_cfg_t rc;
    memset(&rc, 0, sizeof rc);
    rc.mode = STAMP_MODE_OPEN;
    rc.clock = STAMP_CLOCK_NTP;
    rc.session_timeout = 300;
    rc.sock.addr = "127.0.0.1";
    rc.sock.port = 0;
    rc.sock.family = AF_UNSPEC;
    rc.sock.ttl = 255;
    rc.sock.tos = -1;
    rc.tlv.process = 1;
    stamp_reflector_t *r = NULL;
    int rv = stamp_reflector_new(&rc, &r);
    if (rv) return fail("reflector", rv);
    stamp_addr_t ra;
    char host[64];
    unsigned port = 0;
    stamp_reflector_local(r, &ra);
    stamp_addr_format(&ra, host, sizeof host, &port);
    printf("reflector on %s port %u\n", host, port);

    /* ---- part 1: the socket engine ---- */
    stamp_sender_cfg_t sc;
    memset(&sc, 0, sizeof sc);
    sc.remote_addr = "127.0.0.1";
    sc.remote_port = port;
    sc.sock.addr = "127.0.0.1";
    sc.sock.family = AF_UNSPEC;
    sc.sock.ttl = 255;
    sc.sock.tos = -1;
    sc.count = count;
    sc.interval = 10 * 1000000LL; /* 10 ms */
    sc.timeout = 1000 * 1000000LL; /* 1 s */
    sc.mode = STAMP_MODE_OPEN;
    sc.clock = STAMP_CLOCK_NTP;
    stamp_sender_t *s = NULL;
    rv = stamp_sender_new(&sc, &s);
    if (rv) return fail("sender", rv);
    unsigned ok1 = 0;
    stamp_result_t res[64];
    for (int guard = 0; !stamp_sender_done(s) && guard < 100000; guard++) {
        serve(r);
        int n = stamp_sender_step(s, 1, res, 64); /* wait at most 1 ms: the reflector shares this thread */
        if (n < 0) return fail("sender step", n);
        for (int i = 0; i < n; i++) {
            print_result("engine ", &res[i]);
            ok1 += res[i].status == STAMP_RES_OK;
        }
    }
    stamp_sender_free(s);

    /* ---- part 2: the I/O-free machine over our own socket ---- */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return fail("socket", -1);
    if (connect(fd, (const struct sockaddr *)&ra.addr, ra.len) != 0) return fail("connect", -1);
    stamp_sm_t *m = NULL;
    rv = stamp_sm_new(&sc, &m); /* remote_addr and sock are not used by the machine */
    if (rv) return fail("machine", rv);
    unsigned ok2 = 0;
    uint8_t out[STAMP_MAX_PKT], in[STAMP_MAX_PKT];
    for (int guard = 0; !stamp_sm_done(m) && guard < 100000; guard++) {
        uint32_t seq;
        int len;
        while ((len = stamp_sm_build(m, stamp_mono(), stamp_now(), out, sizeof out, &seq)) > 0)
            if (send(fd, out, (size_t)len, 0) != len) stamp_sm_tx_error(m);
        serve(r);
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, 1) > 0) {
            ssize_t n = recv(fd, in, sizeof in, 0);
            stamp_result_t x;
            /* meta NULL: t4 is "now" (a driver with kernel timestamps passes them in meta) */
            if (n > 0 && stamp_sm_reply(m, in, (size_t)n, NULL, &x) == 1) {
                print_result("machine", &x);
                ok2 += x.status == STAMP_RES_OK;
            }
        }
        int k = stamp_sm_expire(m, stamp_mono(), res, 64);
        for (int i = 0; i < k; i++) print_result("machine", &res[i]);
    }
    stamp_sm_free(m);
    close(fd);

    stamp_reflector_counters_t c;
    stamp_reflector_counters(r, &c);
    printf("engine: %u/%u answered; machine: %u/%u answered; reflector: %llu received, %llu reflected\n", ok1,
           count, ok2, count, (unsigned long long)c.rx, (unsigned long long)c.reflected);
    stamp_reflector_free(r);
    return ok1 == count && ok2 == count ? 0 : 1;
}
