/* Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

/* Whether the checker itself was late: a probe that timed out while the
 * machine's CPUs were contended is no evidence against the server.
 *
 * A probe waits for a memcached answer with a poll() bounded by the
 * timeout (100 ms by default).  On a web server whose cores are saturated
 * (PHP, a CPU burner, an ASan build) the answer can be late for reasons
 * that have nothing to do with the server: the probe's thread waits for a
 * CPU, and so does a memcached on the same machine.  Two counters of the
 * kernel say how much of a probe's wait was such waiting, each read twice
 * (as the probe starts and as it ends) and compared:
 *
 *   /proc/pressure/cpu            "some total=": microseconds during which
 *                                 at least one runnable task of the machine
 *                                 waited for a CPU (PSI, Linux 4.20+);
 *   /proc/thread-self/schedstat   the probe thread's own run-queue wait
 *                                 (second field, nanoseconds).
 *
 * A window in which either grew by a quarter of its length or more was a
 * late one.  Measured here (2 cores): idle, PSI grows by ~0.1 % of the
 * time; `stress-ng --cpu 2` (a burner per core), ~2 %; `--cpu 4`, 100 %.
 * A frozen memcached on an idle or merely busy machine is therefore still
 * judged by the plain timeout; only a timeout in a window of real
 * contention is confirmed (memsess_check.c) before it counts.
 *
 * Either file may be missing (an older kernel, psi=0, a container):
 * the counter is then unknown (-1) and judges nothing; with neither, no
 * window is late and the checker behaves as before.
 *
 * The parsers and the judgement are pure; memsess_late_sample() reads the
 * two files through descriptors each thread keeps open (pread at offset
 * 0, so a sample costs two system calls), closed when the thread ends. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr_lib.h"
#include "apr_strings.h"

#include "memsess_lateness.h"

/* A decimal counter of at most 18 digits, ended by a blank, a newline or
 * the end of the text. */
static int counter(const char *s, apr_size_t len, apr_int64_t *out)
{
    apr_int64_t n = 0;
    apr_size_t i;

    for (i = 0; i < len && apr_isdigit(s[i]); i++) {
        if (i == 18) {
            return 0;
        }
        n = n * 10 + (s[i] - '0');
    }
    if (i == 0 || (i < len && s[i] != ' ' && s[i] != '\n')) {
        return 0;
    }
    *out = n;
    return 1;
}

int memsess_late_parse_psi(const char *buf, apr_size_t len, apr_int64_t *total)
{
    static const char line[] = "some ", field[] = " total=";
    apr_size_t i, end;

    /* the "some" line is the first; fields "avg10=... total=N" */
    if (len < sizeof(line) - 1 || memcmp(buf, line, sizeof(line) - 1)) {
        return 0;
    }
    for (end = 0; end < len && buf[end] != '\n'; end++) {
    }
    for (i = 0; i + sizeof(field) - 1 <= end; i++) {
        if (!memcmp(buf + i, field, sizeof(field) - 1)) {
            i += sizeof(field) - 1;
            return counter(buf + i, end - i, total);
        }
    }
    return 0;
}

int memsess_late_parse_schedstat(const char *buf, apr_size_t len,
                                 apr_int64_t *wait_us)
{
    apr_size_t i = 0;
    apr_int64_t ns;

    /* "<on cpu ns> <waited ns> <timeslices>" */
    while (i < len && apr_isdigit(buf[i])) {
        i++;
    }
    if (i == 0 || i >= len || buf[i] != ' ') {
        return 0;
    }
    i++;
    if (!counter(buf + i, len - i, &ns)) {
        return 0;
    }
    *wait_us = ns / 1000;
    return 1;
}

static int grew_by_a_quarter(apr_int64_t before, apr_int64_t after,
                             apr_interval_time_t window)
{
    /* a counter that is unknown at either end, or went back, says nothing */
    return before >= 0 && after >= before
           && after - before >= ((apr_int64_t)window + 3) / 4;
}

int memsess_late_judge(const memsess_late_sample_t *before,
                       const memsess_late_sample_t *after, char *why,
                       apr_size_t whylen)
{
    apr_interval_time_t window = after->at - before->at;

    if (window <= 0) {
        return 0;
    }
    if (grew_by_a_quarter(before->stall_us, after->stall_us, window)) {
        apr_snprintf(why, whylen, "tasks waited for a CPU %" APR_INT64_T_FMT
                     "ms of its %" APR_TIME_T_FMT "ms",
                     (after->stall_us - before->stall_us) / 1000,
                     apr_time_as_msec(window));
        return 1;
    }
    if (grew_by_a_quarter(before->wait_us, after->wait_us, window)) {
        apr_snprintf(why, whylen, "the probe waited for a CPU %"
                     APR_INT64_T_FMT "ms of its %" APR_TIME_T_FMT "ms",
                     (after->wait_us - before->wait_us) / 1000,
                     apr_time_as_msec(window));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Reading the counters                                               */

/* A thread's two descriptors, opened on its first sample; -2: not tried,
 * -1: cannot be read here. */
typedef struct {
    int psi;
    int sched;
} late_fds_t;

static pthread_key_t fds_key;
static pthread_once_t fds_once = PTHREAD_ONCE_INIT;

static void fds_close(void *data)
{
    late_fds_t *f = data;

    if (f->psi >= 0) {
        close(f->psi);
    }
    if (f->sched >= 0) {
        close(f->sched);
    }
    free(f);
}

static void fds_key_make(void)
{
    pthread_key_create(&fds_key, fds_close);
}

static late_fds_t *fds(void)
{
    late_fds_t *f;

    pthread_once(&fds_once, fds_key_make);
    if ((f = pthread_getspecific(fds_key))) {
        return f;
    }
    if (!(f = malloc(sizeof(*f)))) {
        return NULL;
    }
    f->psi = open("/proc/pressure/cpu", O_RDONLY | O_CLOEXEC);
    /* thread-self: this thread's, as long as the descriptor lives */
    f->sched = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (pthread_setspecific(fds_key, f) != 0) {
        fds_close(f);
        return NULL;
    }
    return f;
}

static int read_at_zero(int fd, char *buf, apr_size_t size)
{
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    do {
        n = pread(fd, buf, size - 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        return -1;
    }
    buf[n] = '\0';
    return (int)n;
}

void memsess_late_sample(memsess_late_sample_t *s)
{
    late_fds_t *f = fds();
    char buf[256];
    int n;

    s->at = apr_time_now();
    s->stall_us = s->wait_us = -1;
    if (!f) {
        return;
    }
    if ((n = read_at_zero(f->psi, buf, sizeof(buf))) <= 0
        || !memsess_late_parse_psi(buf, (apr_size_t)n, &s->stall_us)) {
        s->stall_us = -1;
    }
    if ((n = read_at_zero(f->sched, buf, sizeof(buf))) <= 0
        || !memsess_late_parse_schedstat(buf, (apr_size_t)n, &s->wait_us)) {
        s->wait_us = -1;
    }
}

const char *memsess_late_sources(void)
{
    memsess_late_sample_t s;

    memsess_late_sample(&s);
    return s.stall_us >= 0 && s.wait_us >= 0
           ? "CPU pressure (/proc/pressure/cpu) and the probe thread's "
             "run-queue wait (/proc/thread-self/schedstat)"
           : s.stall_us >= 0 ? "CPU pressure (/proc/pressure/cpu)"
           : s.wait_us >= 0 ? "the probe thread's run-queue wait "
                              "(/proc/thread-self/schedstat)"
           : NULL;
}
