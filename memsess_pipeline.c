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

/* Guarded writes, many per round trip, in memcached's binary protocol.
 *
 *   request   24-byte header: magic 0x80, opcode (ADD 0x02, SET 0x01,
 *             DELETE 0x04: the key alone, no extras),
 *             key length, extras length 8, data type 0, vbucket 0, body
 *             length (extras + key + value), opaque (the write's index),
 *             cas (a SET's guard; 0 for an ADD); extras: flags, expiry;
 *             the key; the value.  All integers big-endian.
 *   answer    the same header with magic 0x81 and a status where the
 *             vbucket was: 0 stored (cas: the new copy's), 1 not found (a
 *             SET whose copy went), 2 exists (the cas changed, or an ADD
 *             found one), 5 not stored; anything else a refusal.
 *
 * memcached answers requests in the order they came, so the n answers to
 * one batch are read in order and each must carry its request's opaque.
 * APR only. */

#include <string.h>
#include <stdlib.h>

#include "apr_strings.h"
#include "apr_network_io.h"

#include "memsess_pipeline.h"

#define REQ_MAGIC   (0x80)
#define RES_MAGIC   (0x81)
#define OP_SET      (0x01)
#define OP_ADD      (0x02)
#define OP_DELETE   (0x04)
#define ST_STORED   (0x0000)
#define ST_NOTFOUND (0x0001)
#define ST_EXISTS   (0x0002)
#define ST_NOTSTORED (0x0005)
#define RECV_BUF    (16384)

/* ------------------------------------------------------------------ */
/* The wire (pure)                                                    */

static void put16(unsigned char *p, apr_uint32_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, apr_uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

static void put64(unsigned char *p, apr_uint64_t v)
{
    put32(p, (apr_uint32_t)(v >> 32));
    put32(p + 4, (apr_uint32_t)v);
}

static apr_uint32_t get16(const unsigned char *p)
{
    return ((apr_uint32_t)p[0] << 8) | p[1];
}

static apr_uint32_t get32(const unsigned char *p)
{
    return (get16(p) << 16) | get16(p + 2);
}

static apr_uint64_t get64(const unsigned char *p)
{
    return ((apr_uint64_t)get32(p) << 32) | get32(p + 4);
}

static unsigned char opcode(const memsess_put_t *put)
{
    return put->del ? OP_DELETE : put->cas ? OP_SET : OP_ADD;
}

apr_size_t memsess_put_size(const memsess_put_t *put)
{
    return put->del ? MEMSESS_PUT_HEADER + put->keylen
                    : MEMSESS_PUT_HEADER + MEMSESS_PUT_EXTRAS + put->keylen
                      + put->vlen;
}

void memsess_put_encode(unsigned char *buf, const memsess_put_t *put,
                        apr_uint32_t opaque)
{
    unsigned char *p = buf;

    memset(p, 0, MEMSESS_PUT_HEADER);
    p[0] = REQ_MAGIC;
    p[1] = opcode(put);
    put16(p + 2, (apr_uint32_t)put->keylen);
    if (put->del) {
        put32(p + 8, (apr_uint32_t)put->keylen);
        put32(p + 12, opaque);
        memcpy(p + MEMSESS_PUT_HEADER, put->key, put->keylen);
        return;
    }
    p[4] = MEMSESS_PUT_EXTRAS;
    put32(p + 8, (apr_uint32_t)(MEMSESS_PUT_EXTRAS + put->keylen
                                + put->vlen));
    put32(p + 12, opaque);
    put64(p + 16, put->cas);
    p += MEMSESS_PUT_HEADER;
    put32(p, put->flags);
    put32(p + 4, put->exp);
    p += MEMSESS_PUT_EXTRAS;
    memcpy(p, put->key, put->keylen);
    if (put->vlen) {
        memcpy(p + put->keylen, put->value, put->vlen);
    }
}

int memsess_put_reply_parse(const unsigned char *buf, apr_size_t len,
                            memsess_put_reply_t *r)
{
    apr_uint32_t keylen, extlen;

    if (len < MEMSESS_PUT_HEADER) {
        return len && buf[0] != RES_MAGIC ? -1 : 0;
    }
    if (buf[0] != RES_MAGIC) {
        return -1;
    }
    r->opcode = buf[1];
    keylen = get16(buf + 2);
    extlen = buf[4];
    r->status = (apr_uint16_t)get16(buf + 6);
    r->body = get32(buf + 8);
    r->opaque = get32(buf + 12);
    r->cas = get64(buf + 16);
    if (r->body > MEMSESS_PUT_BODY_MAX || keylen + extlen > r->body) {
        return -1;
    }
    if (len < MEMSESS_PUT_HEADER + (apr_size_t)r->body) {
        return 0;
    }
    return (int)(MEMSESS_PUT_HEADER + r->body);
}

int memsess_put_reply_apply(memsess_put_t *puts, int n, int next,
                            const memsess_put_reply_t *r)
{
    memsess_put_t *put;

    if (next < 0 || next >= n || r->opaque != (apr_uint32_t)next) {
        return -1;
    }
    put = &puts[next];
    if (r->opcode != opcode(put)) {
        return -1;
    }
    put->status = r->status;
    put->new_cas = 0;
    switch (r->status) {
    case ST_STORED:
        if (r->body || (!r->cas && !put->del)) {
            return -1;   /* a write's success has no body, and a cas */
        }
        put->result = MEMSESS_PUT_STORED;
        put->new_cas = r->cas;
        break;
    case ST_NOTFOUND:
    case ST_EXISTS:
    case ST_NOTSTORED:
        put->result = MEMSESS_PUT_NEWER;
        break;
    default:
        put->result = MEMSESS_PUT_REFUSED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* A connection                                                       */

struct memsess_pipeline {
    apr_pool_t    *pool;
    apr_socket_t  *sock;
    const char    *name;       /* "host:port", for messages */
    unsigned char *out;        /* one batch, encoded */
    apr_size_t     out_size;
    unsigned char  in[RECV_BUF];
};

static apr_status_t failed(const memsess_pipeline_t *pl, const char *what,
                           apr_status_t rv, char *err, apr_size_t errlen)
{
    char reason[120];

    apr_strerror(rv, reason, sizeof(reason));
    apr_snprintf(err, errlen, "%s %s: %s", what, pl->name, reason);
    return rv;
}

apr_status_t memsess_pipeline_open(apr_pool_t *p, const char *host,
                                   apr_port_t port,
                                   apr_interval_time_t timeout,
                                   memsess_pipeline_t **out, char *err,
                                   apr_size_t errlen)
{
    apr_pool_t *sub;
    memsess_pipeline_t *pl;
    apr_sockaddr_t *sa;
    apr_status_t rv;

    *out = NULL;
    if ((rv = apr_pool_create(&sub, p)) != APR_SUCCESS) {
        apr_cpystrn(err, "out of memory", errlen);
        return rv;
    }
    pl = apr_pcalloc(sub, sizeof(*pl));
    pl->pool = sub;
    pl->name = apr_psprintf(sub, strchr(host, ':') ? "[%s]:%u" : "%s:%u",
                            host, (unsigned)port);
    if ((rv = apr_sockaddr_info_get(&sa, host, APR_UNSPEC, port, 0, sub))
            != APR_SUCCESS
        || (rv = apr_socket_create(&pl->sock, sa->family, SOCK_STREAM,
                                   APR_PROTO_TCP, sub)) != APR_SUCCESS
        || (rv = apr_socket_opt_set(pl->sock, APR_TCP_NODELAY, 1))
            != APR_SUCCESS
        || (rv = apr_socket_timeout_set(pl->sock, timeout)) != APR_SUCCESS
        || (rv = apr_socket_connect(pl->sock, sa)) != APR_SUCCESS) {
        failed(pl, "cannot connect to", rv, err, errlen);
        apr_pool_destroy(sub);
        return rv;
    }
    *out = pl;
    return APR_SUCCESS;
}

static apr_status_t send_all(memsess_pipeline_t *pl, apr_size_t len,
                             char *err, apr_size_t errlen)
{
    apr_size_t done = 0;

    while (done < len) {
        apr_size_t n = len - done;
        apr_status_t rv = apr_socket_send(pl->sock, (char *)pl->out + done,
                                          &n);

        done += n;
        if (rv != APR_SUCCESS) {
            return failed(pl, "cannot write to", rv, err, errlen);
        }
    }
    return APR_SUCCESS;
}

apr_status_t memsess_pipeline_put(memsess_pipeline_t *pl, memsess_put_t *puts,
                                  int n, char *err, apr_size_t errlen)
{
    apr_size_t len = 0, have = 0, at;
    apr_status_t rv;
    int k, next = 0;

    for (k = 0; k < n; k++) {
        len += memsess_put_size(&puts[k]);
    }
    if (len > pl->out_size) {
        unsigned char *bigger = realloc(pl->out, len);

        if (!bigger) {
            apr_cpystrn(err, "out of memory", errlen);
            return APR_ENOMEM;
        }
        pl->out = bigger;
        pl->out_size = len;
    }
    for (k = 0, at = 0; k < n; k++) {
        memsess_put_encode(pl->out + at, &puts[k], (apr_uint32_t)k);
        at += memsess_put_size(&puts[k]);
    }
    if ((rv = send_all(pl, len, err, errlen)) != APR_SUCCESS) {
        return rv;
    }
    while (next < n) {
        memsess_put_reply_t r;
        apr_size_t got;
        int used;

        while ((used = memsess_put_reply_parse(pl->in, have, &r)) > 0) {
            if (memsess_put_reply_apply(puts, n, next, &r) < 0) {
                apr_snprintf(err, errlen, "%s answered a write with another "
                             "request's answer (opaque %u, opcode 0x%02x)",
                             pl->name, (unsigned)r.opaque,
                             (unsigned)r.opcode);
                return APR_EGENERAL;
            }
            next++;
            have -= (apr_size_t)used;
            memmove(pl->in, pl->in + used, have);
            if (next == n) {
                break;
            }
        }
        if (used < 0) {
            apr_snprintf(err, errlen, "%s answered a write with no answer "
                         "of the binary protocol", pl->name);
            return APR_EGENERAL;
        }
        if (next == n) {
            break;
        }
        got = sizeof(pl->in) - have;
        rv = apr_socket_recv(pl->sock, (char *)pl->in + have, &got);
        if (rv == APR_EOF || (rv == APR_SUCCESS && !got)) {
            apr_snprintf(err, errlen, "%s closed the connection after %d "
                         "of %d answers", pl->name, next, n);
            return APR_EOF;
        }
        if (rv != APR_SUCCESS) {
            return failed(pl, "cannot read from", rv, err, errlen);
        }
        have += got;
    }
    if (have) {
        apr_snprintf(err, errlen, "%s answered more than it was asked",
                     pl->name);
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

void memsess_pipeline_close(memsess_pipeline_t *pl)
{
    if (pl) {
        apr_socket_close(pl->sock);
        free(pl->out);
        apr_pool_destroy(pl->pool);
    }
}
