/* refl_ref.c - the minimal reference reflector of bench/run: what any STAMP
 * reflector must at least do, done as cheaply as Linux allows, so that the
 * ratio stamp / reference measures the cost of stamp itself.
 *
 * IPv4, one socket, recvmmsg/sendmmsg in batches of 32, reading the same
 * control messages as stamp's reflector (IP_PKTINFO, IP_TTL, IP_TOS, kernel
 * receive time SO_TIMESTAMPNS) and answering from the address the packet was
 * sent to (IP_PKTINFO on send). Each reply is the request in the RFC 8762
 * unauthenticated reflected layout (sequence number copied, receive and
 * transmit timestamps, sender fields, TTL), the octets after the base
 * returned as received, same length. No TLV processing, no HMAC, no state.
 *
 * With -t FILE it also records the kernel receive time of every test packet
 * with its sequence number (for the sender's schedule error) and writes
 * "seq ns" lines to FILE when stopped (SIGINT/SIGTERM).
 *
 * Usage: refl_ref [-a ADDR] -p PORT [-t FILE] [-n MAXRECORDS]
 * Prints "ready PORT" once listening and "received N replied N" on exit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAXPKT 9216
#define BASE 44
#define NTP_OFFSET 2208988800ULL

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void ntp(uint8_t *p, const struct timespec *t)
{
    put32(p, (uint32_t)((uint64_t)t->tv_sec + NTP_OFFSET));
    put32(p + 4, (uint32_t)(((uint64_t)t->tv_nsec << 32) / 1000000000ULL));
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1", *tsfile = NULL;
    int port = 0, opt;
    size_t maxrec = 4000000;
    while ((opt = getopt(argc, argv, "a:p:t:n:")) != -1) {
        if (opt == 'a') addr = optarg;
        else if (opt == 'p') port = atoi(optarg);
        else if (opt == 't') tsfile = optarg;
        else if (opt == 'n') maxrec = (size_t)atol(optarg);
        else {
            fprintf(stderr, "usage: refl_ref [-a ADDR] -p PORT [-t FILE] [-n MAXRECORDS]\n");
            return 2;
        }
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return perror("socket"), 1;
    int one = 1, big = 8 << 20;
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) return fprintf(stderr, "bad address %s\n", addr), 2;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) return perror("bind"), 1;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);

    uint32_t *rseq = NULL;
    int64_t *rns = NULL;
    size_t nrec = 0;
    if (tsfile) {
        rseq = malloc(maxrec * sizeof *rseq);
        rns = malloc(maxrec * sizeof *rns);
        if (!rseq || !rns) return fprintf(stderr, "out of memory\n"), 1;
    }

    static uint8_t buf[BATCH][MAXPKT];
    static uint8_t ctl[BATCH][256], sctl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
    static struct sockaddr_in from[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr rx[BATCH], tx[BATCH];
    uint64_t received = 0, replied = 0;
    printf("ready %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    while (!stop) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) continue;
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = MAXPKT};
            rx[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i],
                                            .msg_iovlen = 1, .msg_control = ctl[i], .msg_controllen = sizeof ctl[i]};
        }
        int n = recvmmsg(fd, rx, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) continue;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int ntx = 0;
        for (int i = 0; i < n; i++) {
            size_t len = rx[i].msg_len;
            struct timespec rxt = now;
            struct in_pktinfo pi;
            int ttl = 0, have_pi = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&rx[i].msg_hdr); c; c = CMSG_NXTHDR(&rx[i].msg_hdr, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS)
                    memcpy(&rxt, CMSG_DATA(c), sizeof rxt);
                else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL)
                    memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
                else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS)
                    (void)CMSG_DATA(c)[0];
                else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                    memcpy(&pi, CMSG_DATA(c), sizeof pi);
                    have_pi = 1;
                }
            }
            received++;
            if (len < BASE) continue;
            uint8_t *b = buf[i];
            if (rseq && nrec < maxrec) {
                rseq[nrec] = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
                rns[nrec++] = (int64_t)rxt.tv_sec * 1000000000LL + rxt.tv_nsec;
            }
            /* test -> reflected, in place: sender fields first (they overlap the request's MBZ) */
            uint8_t sts[8], see[2];
            memcpy(sts, b + 4, 8);
            memcpy(see, b + 12, 2);
            memcpy(b + 24, b, 4);     /* Session-Sender Sequence Number */
            memcpy(b + 28, sts, 8);   /* Session-Sender Timestamp */
            memcpy(b + 36, see, 2);   /* Session-Sender Error Estimate */
            b[38] = b[39] = 0;
            b[40] = (uint8_t)ttl;     /* Session-Sender TTL */
            b[41] = b[42] = b[43] = 0;
            ntp(b + 16, &rxt);        /* Receive Timestamp */
            b[12] = 0x00, b[13] = 0x01; /* Error Estimate: unsynchronized, multiplier 1 */
            iov[i].iov_len = len;
            struct msghdr *h = &tx[ntx].msg_hdr;
            *h = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i], .msg_iovlen = 1};
            if (have_pi) {
                h->msg_control = sctl[ntx];
                h->msg_controllen = sizeof sctl[ntx];
                struct cmsghdr *c = CMSG_FIRSTHDR(h);
                c->cmsg_level = IPPROTO_IP;
                c->cmsg_type = IP_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof pi);
                struct in_pktinfo spi = {.ipi_ifindex = 0, .ipi_spec_dst = pi.ipi_addr};
                memcpy(CMSG_DATA(c), &spi, sizeof spi);
            }
            ntx++;
        }
        clock_gettime(CLOCK_REALTIME, &now); /* transmit time, as late as possible */
        for (int k = 0; k < ntx; k++) ntp((uint8_t *)tx[k].msg_hdr.msg_iov->iov_base + 4, &now);
        for (int k = 0; k < ntx;) {
            int s = sendmmsg(fd, tx + k, (unsigned)(ntx - k), 0);
            if (s <= 0) {
                if (s < 0 && errno == EINTR) continue;
                k++; /* drop the one that failed */
                continue;
            }
            replied += (uint64_t)s;
            k += s;
        }
    }
    if (tsfile) {
        FILE *f = fopen(tsfile, "w");
        if (!f) return perror(tsfile), 1;
        for (size_t i = 0; i < nrec; i++) fprintf(f, "%u %lld\n", rseq[i], (long long)rns[i]);
        fclose(f);
    }
    printf("received %llu replied %llu\n", (unsigned long long)received, (unsigned long long)replied);
    return 0;
}
