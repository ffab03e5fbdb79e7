/* Unit tests of memsess_release.c's matching: which socket peers are
 * exactly a given server (address, port, family). */
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "apr_general.h"

#include <linux/inet_diag.h>

#include "memsess_peer.h"
#include "memsess_release_helper.h"
#include "tap.h"

static memsess_peer_t v4(const char *ip, int port)
{
    struct sockaddr_in in;
    memsess_peer_t p;

    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &in.sin_addr);
    ok(memsess_peer_from_sockaddr(&p, &in, sizeof(in)), "%s:%d parses",
       ip, port);
    return p;
}

static memsess_peer_t v6(const char *ip, int port, unsigned scope)
{
    struct sockaddr_in6 in6;
    memsess_peer_t p;

    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons((unsigned short)port);
    in6.sin6_scope_id = scope;
    inet_pton(AF_INET6, ip, &in6.sin6_addr);
    ok(memsess_peer_from_sockaddr(&p, &in6, sizeof(in6)), "[%s]:%d parses",
       ip, port);
    return p;
}

int main(void)
{
    memsess_peer_t down[3], p, none;
    struct sockaddr_un un;
    struct sockaddr_in in;

    apr_initialize();
    down[0] = v4("127.0.0.1", 11211);
    down[1] = v6("::1", 11212, 0);
    down[2] = v6("fe80::1", 11211, 2);

    p = v4("127.0.0.1", 11211);
    ok(memsess_peer_find(&p, down, 3) == 0, "the same IPv4 address and port");
    p = v4("127.0.0.1", 11212);
    ok(memsess_peer_find(&p, down, 3) == -1,
       "another port on the same host is not the server");
    p = v4("127.0.0.2", 11211);
    ok(memsess_peer_find(&p, down, 3) == -1,
       "another address with the same port is not the server");
    p = v4("0.0.0.0", 0);
    ok(memsess_peer_find(&p, down, 3) == -1, "0.0.0.0:0 is nothing");

    p = v6("::1", 11212, 0);
    ok(memsess_peer_find(&p, down, 3) == 1, "the same IPv6 address and port");
    p = v6("::1", 11211, 0);
    ok(memsess_peer_find(&p, down, 3) == -1, "IPv6, another port");
    p = v6("::2", 11212, 0);
    ok(memsess_peer_find(&p, down, 3) == -1, "IPv6, another address");
    p = v6("::ffff:127.0.0.1", 11211, 0);
    ok(p.family == AF_INET && memsess_peer_find(&p, down, 3) == 0,
       "::ffff:127.0.0.1 (a dual-stack socket) is 127.0.0.1");
    p = v6("::ffff:127.0.0.1", 11212, 0);
    ok(memsess_peer_find(&p, down, 3) == -1,
       "::ffff:127.0.0.1 on another port is not");
    p = v6("::127.0.0.1", 11211, 0);
    ok(p.family == AF_INET6 && memsess_peer_find(&p, down, 3) == -1,
       "::127.0.0.1 (IPv4-compatible, not mapped) is not 127.0.0.1");
    p = v6("::", 0, 0);
    ok(memsess_peer_find(&p, down, 3) == -1, "[::]:0 is nothing");

    p = v6("fe80::1", 11211, 2);
    ok(memsess_peer_find(&p, down, 3) == 2, "link-local, same scope");
    p = v6("fe80::1", 11211, 3);
    ok(memsess_peer_find(&p, down, 3) == -1,
       "link-local on another interface is another host");
    p = v6("fe80::1", 11211, 0);
    ok(memsess_peer_find(&p, down, 3) == 2, "link-local, scope not given");

    /* what getpeername gives for other sockets */
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, "/tmp/x");
    ok(!memsess_peer_from_sockaddr(&p, &un, sizeof(un)) && p.family == 0,
       "a unix socket is no peer");
    ok(memsess_peer_find(&p, down, 3) == -1, "and matches nothing");
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    ok(!memsess_peer_from_sockaddr(&p, &in, sizeof(in) - 1),
       "a truncated sockaddr_in is refused");
    ok(!memsess_peer_from_sockaddr(&p, &in, 1), "so is a 1-byte one");
    ok(!memsess_peer_from_sockaddr(&p, NULL, 16), "and NULL");
    memset(&none, 0, sizeof(none));
    ok(memsess_peer_find(&p, &none, 1) == -1,
       "an empty peer never equals an empty entry");
    ok(memsess_peer_find(&down[0], down, 0) == -1, "an empty set has nothing");

    apr_terminate();
    /* /proc/net/tcp: where a socket still connecting goes */
    {
        static const char head[] = "  sl  local_address rem_address   st "
            "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        static const char v4[] = "   3: 0100007F:9C40 0100007F:2B67 02 "
            "00000000:00000000 01:00000064 00000000  1000        0 81231 1 "
            "0000000000000000 100 0 0 10 0\n";
        static const char v6[] = "   0: 00000000000000000000000001000000:"
            "D2F0 00000000000000000000000001000000:2B67 02 00000000:00000000 "
            "00:00000000 00000000  1000        0 4242 1 0000000000000000\n";
        static const char mapped[] = "   1: 0000000000000000FFFF00000100007F:"
            "D2F0 0000000000000000FFFF00000200007F:2B68 01 00000000:00000000 "
            "00:00000000 00000000  1000        0 99 1 0000000000000000\n";
        memsess_peer_t r, want;
        struct sockaddr_in sin;
        struct sockaddr_in6 sin6;
        apr_uint64_t inode;
        int state;

        ok(!memsess_proc_tcp_line(head, sizeof(head) - 1, &r, &state, &inode),
           "/proc/net/tcp: the header is no socket");
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(11111);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        memsess_peer_from_sockaddr(&want, &sin, sizeof(sin));
        ok(memsess_proc_tcp_line(v4, sizeof(v4) - 1, &r, &state, &inode)
           && memsess_peer_equal(&r, &want) && state == 2 && inode == 81231,
           "an IPv4 socket connecting to 127.0.0.1:11111 (SYN_SENT), its inode");
        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(11111);
        sin6.sin6_addr = in6addr_loopback;
        memsess_peer_from_sockaddr(&want, &sin6, sizeof(sin6));
        ok(memsess_proc_tcp_line(v6, sizeof(v6) - 1, &r, &state, &inode)
           && memsess_peer_equal(&r, &want) && inode == 4242,
           "an IPv6 one to [::1]:11111");
        sin.sin_port = htons(11112);
        sin.sin_addr.s_addr = htonl(0x7f000002);
        memsess_peer_from_sockaddr(&want, &sin, sizeof(sin));
        ok(memsess_proc_tcp_line(mapped, sizeof(mapped) - 1, &r, &state,
                                 &inode)
           && memsess_peer_equal(&r, &want) && state == 1,
           "an IPv4-mapped one is IPv4 (127.0.0.2:11112)");
        ok(!memsess_proc_tcp_line(v4, 30, &r, &state, &inode),
           "a cut line is refused, never read past");
        ok(!memsess_proc_tcp_line("", 0, &r, &state, &inode), "an empty one too");
    }
    {
        /* the release helper's requests and its kernel filter */
        apr_uint64_t keep[4];
        int nkeep;
        struct inet_diag_bc_op op;
        struct inet_diag_hostcond cond;
        unsigned char fb[64];
        struct sockaddr_in sin4;
        memsess_peer_t p4;
        apr_size_t flen;

#define RH(text, n) (nkeep = 4, memsess_rh_parse(text, strlen(text), n, keep, &nkeep))
        ok(RH("release 2", 3) == 2 && nkeep == 0, "a release of slot 2");
        ok(RH("release 2\n", 3) == 2, "with its newline");
        ok(RH("release 1 keep 77 4294967296", 3) == 1 && nkeep == 2
           && keep[0] == 77 && keep[1] == 4294967296ULL,
           "with the checker's own sockets (inodes) to keep");
        ok(RH("release 3", 3) == -1, "a slot beyond the pools is refused");
        ok(RH("release -1", 3) == -1 && RH("release ", 3) == -1
           && RH("release 1x", 3) == -1 && RH("Release 1", 3) == -1,
           "no number, a sign, a letter, another word: refused");
        ok(RH("release 1 keep", 3) == -1 && RH("release 1 keep 5 ", 3) == -1
           && RH("release 1  keep 5", 3) == -1,
           "an empty keep list, a trailing blank, two blanks: refused");
        ok(RH("release 1 keep 1 2 3 4 5", 3) == -1,
           "more inodes than room: refused");
        ok(RH("release 127.0.0.1:11211", 3) == -1,
           "an address is never taken: only a slot of the pools");
        ok(RH("release 00001", 3) == -1, "five digits of slot: refused");
#undef RH

        memset(&sin4, 0, sizeof(sin4));
        sin4.sin_family = AF_INET;
        sin4.sin_port = htons(11211);
        sin4.sin_addr.s_addr = htonl(0x7f000001);
        memsess_peer_from_sockaddr(&p4, &sin4, sizeof(sin4));
        flen = memsess_rh_filter(&p4, fb, sizeof(fb));
        memcpy(&op, fb, sizeof(op));
        memcpy(&cond, fb + sizeof(op), sizeof(cond));
        ok(flen == sizeof(op) + sizeof(cond) + 4
           && op.code == INET_DIAG_BC_D_COND && op.yes == flen
           && op.no == flen + 4 && cond.family == AF_INET
           && cond.prefix_len == 32 && cond.port == 11211
           && !memcmp(fb + sizeof(op) + sizeof(cond), &sin4.sin_addr, 4),
           "the kernel filter: destination 127.0.0.1, all 32 bits, port 11211; "
           "accepted at its end, refused past it");
        ok(memsess_rh_filter(&p4, fb, 10) == 0, "no room: no filter");
    }
    return done_testing();
}
