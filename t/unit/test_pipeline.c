/* Unit tests of memsess_pipeline.c's wire: a guarded write encoded as
 * memcached's binary protocol has it, and the answers parsed and applied,
 * untrusted (another magic, a body too long, another request's answer). */
#include <string.h>

#include "apr_general.h"

#include "memsess_pipeline.h"
#include "tap.h"

/* An answer's header: magic 0x81, opcode, status, body, opaque, cas. */
static void answer(unsigned char *b, int op, int status, unsigned body,
                   unsigned opaque, apr_uint64_t cas)
{
    int i;

    memset(b, 0, MEMSESS_PUT_HEADER);
    b[0] = 0x81;
    b[1] = (unsigned char)op;
    b[6] = (unsigned char)(status >> 8);
    b[7] = (unsigned char)status;
    for (i = 0; i < 4; i++) {
        b[8 + i] = (unsigned char)(body >> (24 - 8 * i));
        b[12 + i] = (unsigned char)(opaque >> (24 - 8 * i));
    }
    for (i = 0; i < 8; i++) {
        b[16 + i] = (unsigned char)(cas >> (56 - 8 * i));
    }
}

/* An answer (opcode, status, body length, opaque, cas) parsed and applied
 * to puts[next]: memsess_put_reply_apply()'s result. */
static int reply(memsess_put_t *puts, int next, int op, int status,
                 unsigned body, unsigned opaque, apr_uint64_t cas)
{
    unsigned char b[64];
    memsess_put_reply_t r;

    answer(b, op, status, body, opaque, cas);
    if (memsess_put_reply_parse(b, MEMSESS_PUT_HEADER + body, &r) <= 0) {
        return -2;
    }
    return memsess_put_reply_apply(puts, 3, next, &r);
}

int main(void)
{
    unsigned char buf[256], want[256];
    memsess_put_t puts[3];
    memsess_put_reply_t r;
    int n;

    apr_initialize();
    memset(puts, 0, sizeof(puts));
    puts[0].key = "memc.sess.key.abc";
    puts[0].keylen = 17;
    puts[0].value = "n|i:1;";
    puts[0].vlen = 6;
    puts[0].flags = 0x12345678;
    puts[0].exp = 1800000000;
    puts[1] = puts[0];
    puts[1].cas = 0x0102030405060708ULL;
    puts[2] = puts[0];
    puts[2].vlen = 0;

    ok(memsess_put_size(&puts[0]) == 24 + 8 + 17 + 6, "a write's size: header, extras, key, value");
    memsess_put_encode(buf, &puts[0], 7);
    memset(want, 0, sizeof(want));
    want[0] = 0x80; want[1] = 0x02; want[3] = 17; want[4] = 8;
    want[11] = 8 + 17 + 6; want[15] = 7;
    want[24] = 0x12; want[25] = 0x34; want[26] = 0x56; want[27] = 0x78;
    want[28] = 0x6b; want[29] = 0x49; want[30] = 0xd2; want[31] = 0x00;
    memcpy(want + 32, "memc.sess.key.abcn|i:1;", 23);
    ok(!memcmp(buf, want, 24 + 8 + 23), "no cas: an ADD, opaque, flags and expiry big-endian, key, value");
    memsess_put_encode(buf, &puts[1], 8);
    ok(buf[1] == 0x01 && buf[16] == 1 && buf[23] == 8 && buf[15] == 8,
       "a cas: a SET carrying it (opaque 8)");
    memsess_put_encode(buf, &puts[2], 0);
    ok(memsess_put_size(&puts[2]) == 24 + 8 + 17 && buf[11] == 8 + 17,
       "an empty value: the body is extras and key");

    answer(buf, 0x02, 0, 0, 0, 99);
    ok(memsess_put_reply_parse(buf, 0, &r) == 0, "nothing yet: more needed");
    ok(memsess_put_reply_parse(buf, 23, &r) == 0, "a header cut short: more needed");
    ok(memsess_put_reply_parse(buf, 24, &r) == 24 && r.opaque == 0 && r.cas == 99
       && r.status == 0 && r.opcode == 0x02, "a whole answer: its length, opaque, cas");
    buf[0] = 0x80;
    ok(memsess_put_reply_parse(buf, 24, &r) == -1, "a request's magic: no answer");
    ok(memsess_put_reply_parse(buf, 1, &r) == -1, "known from the first byte");
    answer(buf, 0x02, 2, 20, 1, 0);
    ok(memsess_put_reply_parse(buf, 30, &r) == 0, "an error text not all there: more needed");
    ok(memsess_put_reply_parse(buf, 44, &r) == 44 && r.status == 2, "an error with its text");
    answer(buf, 0x02, 2, MEMSESS_PUT_BODY_MAX + 1, 1, 0);
    ok(memsess_put_reply_parse(buf, 24, &r) == -1, "a body over the bound: refused at once");
    answer(buf, 0x02, 0, 4, 0, 1);
    buf[3] = 10;
    ok(memsess_put_reply_parse(buf, 24, &r) == -1, "a key longer than the body: refused");

    /* applied to the writes sent */
    ok(reply(puts, 0, 0x02, 0, 0, 0, 1234) == 0 && puts[0].result == MEMSESS_PUT_STORED
       && puts[0].new_cas == 1234, "stored: the new copy's cas");
    ok(reply(puts, 1, 0x02, 0, 0, 0, 1234) == -1, "the answer to another request (opaque 0 for 1)");
    ok(reply(puts, 1, 0x02, 0, 0, 1, 5) == -1, "an ADD's answer to a SET");
    ok(reply(puts, 1, 0x01, 2, 0, 1, 0) == 0 && puts[1].result == MEMSESS_PUT_NEWER,
       "exists: the target changed since its cas was read, it wins");
    ok(reply(puts, 1, 0x01, 1, 0, 1, 0) == 0 && puts[1].result == MEMSESS_PUT_NEWER,
       "not found: the target's copy went meanwhile, nothing written");
    ok(reply(puts, 2, 0x02, 5, 0, 2, 0) == 0 && puts[2].result == MEMSESS_PUT_NEWER,
       "not stored: newer");
    ok(reply(puts, 2, 0x02, 0x82, 0, 2, 0) == 0 && puts[2].result == MEMSESS_PUT_REFUSED
       && puts[2].status == 0x82, "out of memory: refused, with its status");
    ok(reply(puts, 2, 0x02, 0, 0, 2, 0) == -1, "stored without a cas: no answer to trust");
    ok(reply(puts, 2, 0x02, 0, 3, 2, 9) == -1, "stored with a body: no answer to trust");
    ok(reply(puts, 3, 0x02, 0, 0, 3, 1) == -1, "past the last write");

    /* deletes */
    puts[2].del = 1;
    ok(memsess_put_size(&puts[2]) == 24 + 17, "a delete's size: header and key");
    memsess_put_encode(buf, &puts[2], 5);
    ok(buf[1] == 0x04 && buf[4] == 0 && buf[11] == 17 && buf[15] == 5
       && !memcmp(buf + 24, "memc.sess.key.abc", 17), "a delete: opcode 0x04, no extras, the key");
    ok(reply(puts, 2, 0x04, 0, 0, 2, 0) == 0 && puts[2].result == MEMSESS_PUT_STORED,
       "deleted (no cas needed)");
    ok(reply(puts, 2, 0x04, 1, 0, 2, 0) == 0 && puts[2].result == MEMSESS_PUT_NEWER,
       "a delete of nothing: not found");
    ok(reply(puts, 2, 0x02, 0, 0, 2, 9) == -1, "an ADD's answer to a delete");
    n = done_testing();
    apr_terminate();
    return n;
}
