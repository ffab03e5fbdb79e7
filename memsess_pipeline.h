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

/* memsess_pipeline.h: many guarded writes to one memcached server in one
 * round trip (memsess_pipeline.c).  memcached's binary protocol: every
 * write (an ADD, a SET carrying the cas it must still match, or a DELETE)
 * is sent at once, then their answers are read, in order, each with the
 * new copy's cas.  The sync engine's bulk copies go this way; one write at a time
 * through libmemcached costs a round trip each.  Encoding a write and
 * parsing an answer are pure (unit-tested, fuzzed); an answer is untrusted
 * input: anything but the answer expected next ends the batch with an
 * error. */

#ifndef MEMSESS_PIPELINE_H
#define MEMSESS_PIPELINE_H

#include "memsess_common.h"

#define MEMSESS_PUT_HEADER   (24)    /* the binary protocol's header */
#define MEMSESS_PUT_EXTRAS   (8)     /* flags, expiry */
#define MEMSESS_PUT_BODY_MAX (1024)  /* an answer's body (an error text) */

typedef enum {
    MEMSESS_PUT_STORED = 1,   /* written (new_cas is the copy's), or
                               * deleted */
    MEMSESS_PUT_NEWER,        /* not written: the server's copy changed
                               * since its cas was read, or it has one now
                               * where it had none (what is there wins);
                               * a delete: there was none */
    MEMSESS_PUT_REFUSED       /* the server refused it (status): too big,
                               * out of memory */
} memsess_put_result_e;

/* One write: key <- value, only if the server's copy still has cas (0:
 * only if the server has none); or, del set, key deleted (whatever its
 * copy: value, flags, exp and cas unused). */
typedef struct {
    int                  del;
    const char          *key;
    apr_size_t           keylen;
    const char          *value;
    apr_size_t           vlen;
    apr_uint32_t         flags;
    apr_uint32_t         exp;       /* as memcached takes it */
    apr_uint64_t         cas;
    /* the answer */
    memsess_put_result_e result;
    apr_uint16_t         status;
    apr_uint64_t         new_cas;
} memsess_put_t;

/* Bytes put takes on the wire. */
apr_size_t memsess_put_size(const memsess_put_t *put);

/* Encodes put as request `opaque` into buf (memsess_put_size() bytes). */
void memsess_put_encode(unsigned char *buf, const memsess_put_t *put,
                        apr_uint32_t opaque);

/* One answer's header, as parsed. */
typedef struct {
    unsigned char opcode;
    apr_uint16_t  status;
    apr_uint32_t  opaque;
    apr_uint64_t  cas;
    apr_uint32_t  body;
} memsess_put_reply_t;

/* Parses the answer at the start of buf: its whole length (header and
 * body) once all of it is in buf, 0 while more is needed, -1 when it is
 * no answer of the binary protocol (another magic, a body over
 * MEMSESS_PUT_BODY_MAX or shorter than its own extras and key). */
int memsess_put_reply_parse(const unsigned char *buf, apr_size_t len,
                            memsess_put_reply_t *r);

/* The answer to puts[next] (of n): its result filled in.  0, or -1 when
 * it answers another request (its opaque or opcode) or carries a body a
 * write's success never has. */
int memsess_put_reply_apply(memsess_put_t *puts, int n, int next,
                            const memsess_put_reply_t *r);

/* A connection of its own to one server. */
typedef struct memsess_pipeline memsess_pipeline_t;

/* Connects (timeout: to connect, and for each read or write after). */
apr_status_t memsess_pipeline_open(apr_pool_t *p, const char *host,
                                   apr_port_t port,
                                   apr_interval_time_t timeout,
                                   memsess_pipeline_t **out, char *err,
                                   apr_size_t errlen);

/* Sends the n writes and reads their n answers: each put's result filled
 * in.  APR_SUCCESS, or an error in err (the connection is then of no more
 * use: close it). */
apr_status_t memsess_pipeline_put(memsess_pipeline_t *pl, memsess_put_t *puts,
                                  int n, char *err, apr_size_t errlen);

void memsess_pipeline_close(memsess_pipeline_t *pl);

#endif /* MEMSESS_PIPELINE_H */
