/* Unit tests of memsess_credentials.c: the password file, the user name,
 * the INI quoting for php-fpm. */
#include <stdlib.h>
#include <unistd.h>

#include "apr_general.h"
#include "apr_strings.h"
#include "apr_file_io.h"

#include "memsess_credentials.h"
#include "tap.h"

static apr_pool_t *p;
static char dir[] = "/tmp/memsess-unit-XXXXXX";

static const char *parse(const char *buf, apr_size_t len, apr_size_t *pwlen)
{
    *pwlen = 0;
    return memsess_password_parse(buf, len, pwlen);
}

static void accepts(const char *what, const char *buf, apr_size_t len,
                    apr_size_t want)
{
    apr_size_t pwlen;
    const char *err = parse(buf, len, &pwlen);

    ok(!err && pwlen == want, "accepts %s: %lu bytes (%s, got %lu)", what,
       (unsigned long)want, err ? err : "ok", (unsigned long)pwlen);
}

static void refuses(const char *what, const char *buf, apr_size_t len,
                    const char *words)
{
    apr_size_t pwlen;
    const char *err = parse(buf, len, &pwlen);

    ok(err && strstr(err, words), "refuses %s: '%s' (got: %s)", what, words,
       err ? err : "accepted");
}

static const char *write_file(const char *name, const char *content,
                              apr_size_t len)
{
    const char *path = apr_pstrcat(p, dir, "/", name, NULL);
    apr_file_t *f;

    apr_file_open(&f, path, APR_FOPEN_WRITE | APR_FOPEN_CREATE
                            | APR_FOPEN_TRUNCATE, APR_FPROT_UREAD
                            | APR_FPROT_UWRITE, p);
    apr_file_write_full(f, content, len, NULL);
    apr_file_close(f);
    return path;
}

/* Reads name's credentials from a file holding content; the error. */
static const char *read_with(const char *user, const char *content,
                             memsess_credentials_t **c)
{
    const char *path = write_file("pw", content, strlen(content));

    *c = NULL;
    return memsess_credentials_read(p, user, path, c);
}

int main(void)
{
    char big[MEMSESS_PASSWORD_MAX + 10];
    memsess_credentials_t *c, *c2;
    const char *err, *path;
    apr_pool_t *sub;
    char *secret;

    apr_initialize();
    apr_pool_create(&p, NULL);
    if (!mkdtemp(dir)) {
        return 2;
    }

    /* --- the password file's bytes ---------------------------------- */
    accepts("one line with its newline", "s3cret\n", 7, 6);
    accepts("one line without a newline", "s3cret", 6, 6);
    accepts("a CRLF line", "s3cret\r\n", 8, 6);
    accepts("spaces and tabs kept", " a b\tc \n", 8, 7);
    accepts("every printable character", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
            32, 32);
    accepts("bytes beyond ASCII", "p\xc3\xa4ss\xff\n", 7, 6);
    refuses("an empty file", "", 0, "is empty");
    refuses("a file of one newline", "\n", 1, "empty line");
    refuses("a file of one CRLF", "\r\n", 2, "empty line");
    refuses("two lines", "one\ntwo\n", 8, "more than one line");
    refuses("a blank second line", "one\n\n", 5, "more than one line");
    refuses("a second line without newline", "one\ntwo", 7,
            "more than one line");
    refuses("a lone CR inside", "on\re", 4, "more than one line");
    refuses("a NUL byte", "ab\0cd", 5, "control character");
    refuses("an escape", "ab\x1b[31m", 7, "control character");
    refuses("a DEL", "ab\x7f", 3, "control character");
    refuses("\"none\", which mod_php reads as empty", "NoNe\n", 5,
            "reads as an empty value");
    accepts("\"none\" inside a longer password", "nonesuch\n", 9, 8);
    memset(big, 'x', sizeof(big));
    accepts("the longest password", big, MEMSESS_PASSWORD_MAX,
            MEMSESS_PASSWORD_MAX);
    refuses("a password one byte too long", big, MEMSESS_PASSWORD_MAX + 1,
            "longer than 1024 bytes");
    {
        apr_size_t pwlen;
        const char *e = parse("TOPSECRET\nx", 11, &pwlen);

        ok(e && !strstr(e, "TOPSECRET"), "a message quotes no byte of the "
           "file (%s)", e ? e : "accepted");
    }

    /* --- user names -------------------------------------------------- */
    ok(!memsess_username_check(p, "memsess"), "user name: accepts memsess");
    ok(!memsess_username_check(p, "web@example.com"),
       "user name: accepts web@example.com");
    err = memsess_username_check(p, "");
    ok(err && strstr(err, "empty"), "user name: refuses an empty one");
    err = memsess_username_check(p, "None");
    ok(err && strstr(err, "empty value"), "user name: refuses none");
    err = memsess_username_check(p, "a\nb");
    ok(err && strstr(err, "control character"),
       "user name: refuses a newline");
    big[MEMSESS_USERNAME_MAX + 1] = '\0';
    err = memsess_username_check(p, big);
    ok(err && strstr(err, "longer than 255"),
       "user name: refuses 256 bytes (%s)", err ? err : "accepted");
    big[MEMSESS_USERNAME_MAX] = '\0';
    ok(!memsess_username_check(p, big), "user name: accepts 255 bytes");

    /* --- INI quoting for php-fpm ------------------------------------- */
    is_str(memsess_ini_quote(p, "plain"), "\"plain\"", "ini: plain");
    is_str(memsess_ini_quote(p, ""), "\"\"", "ini: empty");
    is_str(memsess_ini_quote(p, "a\"b"), "\"a\\\"b\"", "ini: a double quote");
    is_str(memsess_ini_quote(p, "a\\b"), "\"a\\\\b\"", "ini: a backslash");
    is_str(memsess_ini_quote(p, "a${HOME}b"), "\"a\\${HOME}b\"",
           "ini: no variable expansion");
    is_str(memsess_ini_quote(p, "a'b;c#d=e"), "\"a'b;c#d=e\"",
           "ini: comment and assignment characters stay inside the quotes");
    is_str(memsess_ini_quote(p, "x\\"), "\"x\\\\\"",
           "ini: a trailing backslash does not escape the closing quote");

    /* --- reading the file -------------------------------------------- */
    err = read_with("memsess", "pa$$ \"word\"\n", &c);
    ok(!err && c, "reads a password file (%s)", err ? err : "ok");
    if (c) {
        is_str(c->username, "memsess", "the user name");
        is_str(c->password, "pa$$ \"word\"", "the password, without newline");
        is_str(c->password_ini, "\"pa\\$\\$ \\\"word\\\"\"",
               "the password for php-fpm");
        is_str(c->username_ini, "\"memsess\"", "the user name for php-fpm");
        ok(c->file && strstr(c->file, "/pw"), "the file it came from");
    }
    err = read_with("memsess", "", &c);
    ok(err && strstr(err, "is empty") && strstr(err, dir) && !c,
       "an empty file is refused, naming it (%s)", err ? err : "accepted");
    err = read_with("memsess", "one\ntwo\n", &c);
    ok(err && strstr(err, "more than one line") && !strstr(err, "two"),
       "a two-line file is refused, quoting none of it (%s)",
       err ? err : "accepted");
    err = read_with("", "pw\n", &c);
    ok(err && strstr(err, "empty user name"), "an empty user name: %s",
       err ? err : "accepted");
    path = apr_pstrcat(p, dir, "/missing", NULL);
    err = memsess_credentials_read(p, "memsess", path, &c);
    ok(err && strstr(err, "cannot read password file") && strstr(err, path),
       "a missing file is refused, naming it (%s)", err ? err : "accepted");
    err = memsess_credentials_read(p, "memsess", dir, &c);
    ok(err && strstr(err, dir), "a directory is refused (%s)",
       err ? err : "accepted");
    path = write_file("unreadable", "pw\n", 3);
    apr_file_perms_set(path, 0);
    if (geteuid() != 0) {
        err = memsess_credentials_read(p, "memsess", path, &c);
        ok(err && strstr(err, "cannot read") && strstr(err, "ermission"),
           "an unreadable file is refused (%s)", err ? err : "accepted");
    }
    else {
        ok(1, "# skip an unreadable file: root reads it anyway");
    }
    memset(big, 'y', sizeof(big));
    big[MEMSESS_PASSWORD_MAX + 2] = '\0';
    err = read_with("memsess", big, &c);
    ok(err && strstr(err, "longer than"), "a long file is refused (%s)",
       err ? err : "accepted");
    big[MEMSESS_PASSWORD_MAX] = '\n';
    big[MEMSESS_PASSWORD_MAX + 1] = '\0';
    err = read_with("memsess", big, &c);
    ok(!err && c && strlen(c->password) == MEMSESS_PASSWORD_MAX,
       "the longest password with its newline is read (%s)",
       err ? err : "ok");

    /* --- comparing and describing ------------------------------------ */
    read_with("memsess", "one\n", &c);
    read_with("memsess", "one", &c2);
    ok(memsess_credentials_same(c, c2), "same user, same password: same");
    read_with("memsess", "two", &c2);
    ok(!memsess_credentials_same(c, c2), "another password: not the same");
    read_with("other", "one", &c2);
    ok(!memsess_credentials_same(c, c2), "another user: not the same");
    ok(!memsess_credentials_same(c, NULL), "credentials and none differ");
    ok(memsess_credentials_same(NULL, NULL), "none and none are the same");
    is_str(memsess_credentials_describe(p, NULL), "no MemsessCredentials",
           "describe: none");
    err = memsess_credentials_describe(p, c);
    ok(strstr(err, "user \"memsess\"") && strstr(err, dir)
       && !strstr(err, "one\""), "describe: user and file, no password "
       "(%s)", err);

    /* --- the secret is wiped with its pool --------------------------- */
    apr_pool_create(&sub, p);
    write_file("pw", "wipe-me\n", 8);
    err = memsess_credentials_read(sub, "memsess",
                                   apr_pstrcat(p, dir, "/pw", NULL), &c);
    secret = (char *)c->password;
    ok(!err && !strcmp(secret, "wipe-me"), "read before the wipe");
    apr_pool_clear(sub);
    /* the pool's memory is still ours (cleared, not freed) */
    ok(strcmp(secret, "wipe-me") != 0, "the password is gone once its pool "
       "is cleared");
    apr_pool_destroy(sub);

    unlink(apr_pstrcat(p, dir, "/pw", NULL));
    unlink(apr_pstrcat(p, dir, "/unreadable", NULL));
    rmdir(dir);
    apr_pool_destroy(p);
    apr_terminate();
    return done_testing();
}
