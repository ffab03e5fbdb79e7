/* Unit tests of memsess_job.c: the record through which one instance of a
 * group runs a rejoin sync for all.  What is read back is untrusted: a bad
 * record is refused (and then replaced, never followed), and an instance
 * publishes a server with another's sync only when that sync is done, not
 * lapsed, and was of the same lists. */
#include "apr_general.h"
#include "apr_strings.h"

#include "memsess_job.h"
#include "memsess_verdicts.h"
#include "tap.h"

#define NOW  1800000000
#define SELF "web1.example:80"

static const char *parse(const char *text, memsess_job_t *job)
{
    return memsess_job_parse(text, strlen(text), NOW, job);
}

static void refused(const char *text, const char *why)
{
    memsess_job_t job;
    const char *err = parse(text, &job);

    ok(err != NULL, "refused: %s (%s)", why, err ? err : "accepted");
}

int main(void)
{
    memsess_job_t job, back;
    char buf[MEMSESS_JOB_RECORD_MAX], key[MEMSESS_VERDICT_KEY_MAX + 1];
    const char *err;
    apr_size_t len;

    apr_initialize();

    memsess_record_key(key, sizeof(key), "shop", "job", "127.0.0.1:11211");
    is_str(key, "memsess:v1:shop:job:127.0.0.1:11211", "the job key of a server");

    err = parse("memsess-job 1 web2.example:80 syncing 1800000000 "
                "1800000003 0123456789abcdef 0\n", &job);
    ok(!err, "a syncing record is read (%s)", err ? err : "ok");
    is_str(job.holder, "web2.example:80", "its holder");
    ok(!job.done && job.since == NOW && job.expires == NOW + 3
       && job.lists == APR_UINT64_C(0x0123456789abcdef), "its fields");
    len = memsess_job_format(buf, sizeof(buf), &job);
    ok(len == strlen(buf) && !memsess_job_parse(buf, len, NOW, &back)
       && !strcmp(back.holder, job.holder) && back.done == job.done
       && back.since == job.since && back.expires == job.expires
       && back.lists == job.lists, "formatted, it reads back the same");
    job.done = 1;
    len = memsess_job_format(buf, sizeof(buf), &job);
    ok(!memsess_job_parse(buf, len, NOW, &back) && back.done,
       "a done record too");

    refused("", "empty");
    refused("memsess-verdicts 1\n", "a verdict record");
    refused("memsess-job 2 web2 syncing 1800000000 1800000003 0123456789abcdef 0\n",
            "another version");
    refused("memsess-job 1 web2 waiting 1800000000 1800000003 0123456789abcdef 0\n",
            "an unknown state");
    refused("memsess-job 1 web 2 syncing 1800000000 1800000003 0123456789abcdef 0\n",
            "a space in the holder");
    refused("memsess-job 1 we\x01 syncing 1800000000 1800000003 0123456789abcdef 0\n",
            "a control character in the holder");
    refused("memsess-job 1 web2 syncing 1800000003 1800000000 0123456789abcdef 0\n",
            "expires before it began");
    refused("memsess-job 1 web2 syncing 1900000000 1900000003 0123456789abcdef 0\n",
            "from the future");
    refused("memsess-job 1 web2 syncing 1800000000 1800000003 0123456789ABCDEF 0\n",
            "upper-case lists (not as we write them)");
    refused("memsess-job 1 web2 syncing 01800000000 1800000003 0123456789abcdef 0\n",
            "a leading zero");
    refused("memsess-job 1 web2 syncing 1800000000 1800000003 0123456789abcdef 0",
            "no newline");
    refused("memsess-job 1 web2 syncing 1800000000 1800000003 0123456789abcdef\n",
            "no flip time");
    refused("memsess-job 1 web2 done 1800000000 1800000003 0123456789abcdef "
            "1900000000000\n", "a flip time from the future");
    ok(!parse("memsess-job 1 web2 done 1800000000 1800000003 0123456789abcdef "
              "1800000000250\n", &job) && job.done && job.flip_ms == 1800000000250LL,
       "a done record with its flip time");
    refused("memsess-job 1 web2 syncing 1800000000 1800000003 0123456789abcdef 0\nx",
            "something after the line");
    refused("memsess-job 1 web2 syncing 1800000000 1800000003 0123456789abcde 0\n",
            "15 hex digits");

    /* what comes next */
    parse("memsess-job 1 web2.example:80 syncing 1800000000 1800000003 "
          "0123456789abcdef 0\n", &job);
    ok(memsess_job_next(NULL, 0, SELF, 7, NOW, 0, 0, 0, 3000) == MEMSESS_JOB_TAKE,
       "no record: take the job");
    ok(memsess_job_next(NULL, 1, SELF, 7, NOW, 0, 0, 0, 3000) == MEMSESS_JOB_REPLACE,
       "an unreadable record: replace it");
    ok(memsess_job_next(&job, 1, SELF, 7, NOW, 0, 0, 0, 3000) == MEMSESS_JOB_WAIT,
       "another instance syncs: wait");
    ok(memsess_job_next(&job, 1, SELF, 7, NOW, 0, 0, 3000, 3000)
       == MEMSESS_JOB_REPLACE, "its record not renewed for its time to "
       "live, by our clock (it died or was cut off): take it over");
    ok(memsess_job_next(&job, 1, SELF, 7, NOW, 0, 0, 2999, 3000)
       == MEMSESS_JOB_WAIT, "renewed within its time to live: waited for");
    ok(memsess_job_next(&job, 1, SELF, 7, NOW + 4, 0, 0, 0, 3000)
       == MEMSESS_JOB_WAIT, "its expires past by our clock (ours 4 s "
       "ahead), yet just renewed: waited for, never taken over by the "
       "clocks");
    ok(memsess_job_next(&job, 1, SELF, 7, NOW - 4, 0, 0, 3000, 3000)
       == MEMSESS_JOB_REPLACE, "its expires ahead by our clock (ours "
       "behind), yet not renewed for its time to live: taken over");
    ok(memsess_job_next(&job, 1, "web2.example:80", 7, NOW, 0, 0, 0, 3000)
       == MEMSESS_JOB_REPLACE, "our own, from a previous checker: take it over");
    job.done = 1;
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW, 0, 0, 0, 3000) == MEMSESS_JOB_FOLLOW,
       "done for the same lists: publish with it");
    ok(memsess_job_next(&job, 1, SELF, 7, NOW, 0, 0, 0, 3000) == MEMSESS_JOB_FOLLOW,
       "done for other lists: followed all the same (never a second sync "
       "of a published server)");
    ok(memsess_job_next(&job, 1, "web2.example:80", job.lists, NOW, job.since,
                        0, 0, 3000) == MEMSESS_JOB_FOLLOW,
       "done by a previous checker of ours: adopted, not synced again (the "
       "server is published)");
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW + 4, job.since, 0, 0, 3000)
       == MEMSESS_JOB_FOLLOW, "done, its holder stopped since: followed "
       "(done is done)");
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW + 4, 0, 0, 0, 3000)
       == MEMSESS_JOB_REPLACE, "done long ago: sync again");
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW, job.since + 1, 0, 0, 3000)
       == MEMSESS_JOB_REPLACE, "done, but begun before this outage (or "
       "change) began: another one's, never followed");
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW, job.since, 0, 0, 3000)
       == MEMSESS_JOB_FOLLOW, "done, begun since this outage began: "
       "followed");
    job.flip_ms = job.since * 1000 + 900;
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW, 0, job.flip_ms + 40, 0, 3000)
       == MEMSESS_JOB_REPLACE, "done, but published before the server went "
       "out here again (a flap 40 ms after its flip): synced again, not "
       "followed");
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW, 0, job.flip_ms, 0, 3000)
       == MEMSESS_JOB_REPLACE, "a flip no later than the server went out "
       "here: synced again");
    ok(memsess_job_next(&job, 1, SELF, job.lists, NOW, 0, job.flip_ms - 300, 0, 3000)
       == MEMSESS_JOB_FOLLOW, "published after the server went out here: "
       "followed");
    job.done = 0;
    ok(memsess_job_next(&job, 1, SELF, 7, NOW, job.since + 1, 0, 0, 3000)
       == MEMSESS_JOB_WAIT, "still syncing, begun before: waited for (it "
       "fails, or lapses, if the server went down under it)");
    /* a follower's flip time, in its clock (ms; the flip 250 ms ahead) */
    ok(memsess_flip_follow(10250, 0, 150, 0, 10030, 250) == 10190,
       "follow: never seen not done: the middle of what the clocks allow "
       "and what was seen (never after it was seen done plus the delay)");
    ok(memsess_flip_follow(10250, 0, 20, 0, 10130, 250) == 10250,
       "follow: came to a job done 100 ms before, the clocks measured to "
       "20 ms: at the holder's flip, not seen plus the delay (130 ms late: "
       "the soak, seed 31337077)");
    ok(memsess_flip_follow(10250, 0, 150, 0, 12000, 250) == 10250,
       "follow: seen done long after: the clocks' middle (past: at once)");
    ok(memsess_flip_follow(14250, 0, 0, 0, 10020, 250) == 10270,
       "follow: a holder 4 s ahead whose skew is not known yet: never "
       "before it could have flipped, never published at once (it was, "
       "165 ms early, in the soak)");
    ok(memsess_flip_follow(10250, 0, 150, 10000, 10020, 250) == 10260,
       "follow: seen turning done within 20 ms: within 10 ms of the flip, "
       "not the clocks' 150");
    ok(memsess_flip_follow(5250, 0, -1, 0, 10020, 250) == 10270,
       "follow: a holder whose clock is not known (5 s behind): at the "
       "latest the record allows, not at once (230 ms early in the soak)");
    ok(memsess_flip_follow(5250, 0, -1, 10000, 10020, 250) == 10270,
       "follow: not known, seen turning done: the same");
    ok(memsess_flip_follow(10250, 0, 5, 9900, 10100, 250) == 10250,
       "follow: clocks measured closer than the reads: the clocks");
    ok(memsess_flip_follow(13250, 3000, 150, 10000, 10020, 250) == 10260,
       "follow: a holder 3 s ahead, measured: the same");
    ok(memsess_flip_follow(13250, 0, 150, 10000, 10020, 250) == 10270,
       "follow: a holder stepped 3 s ahead since measured: what was seen");
    ok(memsess_flip_follow(10250, 0, 150, 10030, 10020, 250) == 10185,
       "follow: reads out of order (a step back between): the clocks, "
       "within what was seen");
    return done_testing();
}
