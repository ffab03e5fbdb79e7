/* bench/lib/timewait.c: leaves N TCP sockets in TIME_WAIT on loopback, the
 * way a busy machine has them (bench/fpm.sh measures what they cost the
 * release helper).  One listener on 127.0.0.1:PORT; each connection comes
 * from its own address and port (127.77.A.B, ports FIRST..FIRST+499), so
 * that neither the ephemeral port range nor anything another process binds
 * is used up; the client closes first and so keeps the TIME_WAIT (60 s).
 *
 *   timewait PORT N [FIRST]     (FIRST: 31100)
 *
 * Prints how many were made and in how many seconds; exits when done.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PER_ADDR 500

int main(int argc, char **argv)
{
    int port, n, first, lfd, on = 1, made = 0, i;
    struct sockaddr_in dst = { 0 };
    struct timespec t0, t1;

    if (argc < 3) {
        fprintf(stderr, "usage: timewait PORT N [FIRST]\n");
        return 2;
    }
    port = atoi(argv[1]);
    n = atoi(argv[2]);
    first = argc > 3 ? atoi(argv[3]) : 31100;
    dst.sin_family = AF_INET;
    dst.sin_port = htons((unsigned short)port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&dst, sizeof(dst)) < 0
        || listen(lfd, 128) < 0) {
        perror("listen");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; made < n && i < n + 1000; i++) {
        struct sockaddr_in src = { 0 };
        int c = socket(AF_INET, SOCK_STREAM, 0), s;

        src.sin_family = AF_INET;
        src.sin_port = htons((unsigned short)(first + i % PER_ADDR));
        /* 127.77.0.1 and up: 127.77.A.B, B never 0 */
        src.sin_addr.s_addr = htonl(0x7f4d0000u + 1 + (unsigned)(i / PER_ADDR)
                                    + (unsigned)(i / PER_ADDR) / 255);
        setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (c < 0 || bind(c, (struct sockaddr *)&src, sizeof(src)) < 0
            || connect(c, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
            if (c >= 0) {
                close(c);
            }
            continue;
        }
        if ((s = accept(lfd, NULL, NULL)) < 0) {
            perror("accept");
            return 1;
        }
        close(c);       /* the client first: it keeps the TIME_WAIT */
        close(s);
        made++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%d %.2f\n", made, (double)(t1.tv_sec - t0.tv_sec)
                              + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return made == n ? 0 : 1;
}
