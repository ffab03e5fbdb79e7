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

/* MemsessCredentials: the SASL user name and the password read from its
 * file, and the password quoted for php-fpm.  APR only, so the unit tests
 * drive it without a server.
 *
 * The password is secret: no message here ever quotes a byte of the file,
 * and the memory that held it is wiped when its pool goes (the old
 * configuration's, at a graceful restart). */

#include <string.h>
#include <strings.h>

#include "apr_strings.h"
#include "apr_file_io.h"
#include "apr_file_info.h"

#include "memsess_credentials.h"

/* Whether c is a control character the password and the user name may
 * not hold: they go into a line of PHP_ADMIN_VALUE and into log lines
 * (the user name). */
static int forbidden(unsigned char c, int tab_ok)
{
    return (c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f;
}

const char *memsess_username_check(apr_pool_t *p, const char *username)
{
    apr_size_t len = strlen(username), i;

    if (!len) {
        return "empty user name";
    }
    for (i = 0; i < len; i++) {
        if (forbidden((unsigned char)username[i], 0)) {
            return "the user name holds a control character";
        }
    }
    if (len > MEMSESS_USERNAME_MAX) {
        return apr_psprintf(p, "the user name is longer than %d bytes",
                            MEMSESS_USERNAME_MAX);
    }
    if (!strcasecmp(username, "none")) {
        return "the user name \"none\" is what mod_php's php_admin_value "
               "reads as an empty value";
    }
    return NULL;
}

const char *memsess_password_parse(const char *buf, apr_size_t len,
                                   apr_size_t *pwlen)
{
    apr_size_t i;

    if (!len) {
        return "is empty";
    }
    /* one line: its newline is not part of the password */
    if (buf[len - 1] == '\n') {
        len--;
        if (len && buf[len - 1] == '\r') {
            len--;
        }
    }
    if (!len) {
        return "holds an empty line, not a password";
    }
    for (i = 0; i < len; i++) {
        if (buf[i] == '\n' || buf[i] == '\r') {
            return "holds more than one line (the password must be its "
                   "only line)";
        }
    }
    for (i = 0; i < len; i++) {
        if (forbidden((unsigned char)buf[i], 1)) {
            return "holds a control character";
        }
    }
    if (len > MEMSESS_PASSWORD_MAX) {
        return "holds a password longer than "
               APR_STRINGIFY(MEMSESS_PASSWORD_MAX) " bytes";
    }
    if (len == 4 && !strncasecmp(buf, "none", 4)) {
        return "holds a password that mod_php's php_admin_value reads as "
               "an empty value (\"none\")";
    }
    *pwlen = len;
    return NULL;
}

/* Overwrites a secret, in a way the compiler may not drop. */
static apr_status_t wipe(void *data)
{
    volatile char *c = data;

    while (*c) {
        *c++ = '\0';
    }
    return APR_SUCCESS;
}

static char *secret_copy(apr_pool_t *p, const char *s)
{
    char *copy = apr_pstrdup(p, s);

    apr_pool_cleanup_register(p, copy, wipe, apr_pool_cleanup_null);
    return copy;
}

const char *memsess_credentials_read(apr_pool_t *p, const char *username,
                                     const char *file,
                                     memsess_credentials_t **cred)
{
    /* room for the longest password, its "\r\n" and one byte more, so
     * that a longer file is seen as such */
    char buf[MEMSESS_PASSWORD_MAX + 4];
    apr_size_t len = sizeof(buf) - 1, pwlen = 0;
    memsess_credentials_t *c;
    const char *err;
    apr_finfo_t fi;
    apr_file_t *f;
    apr_status_t rv;
    char why[120];

    if ((err = memsess_username_check(p, username)) != NULL) {
        return err;
    }
    rv = apr_file_open(&f, file, APR_FOPEN_READ, 0, p);
    if (rv != APR_SUCCESS) {
        return apr_psprintf(p, "cannot read password file \"%s\": %s", file,
                            apr_strerror(rv, why, sizeof(why)));
    }
    rv = apr_file_info_get(&fi, APR_FINFO_TYPE, f);
    if (rv == APR_SUCCESS && fi.filetype != APR_REG) {
        apr_file_close(f);
        return apr_psprintf(p, "password file \"%s\" is not a regular file",
                            file);
    }
    rv = apr_file_read_full(f, buf, len, &len);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        memset(buf, 0, sizeof(buf));
        return apr_psprintf(p, "cannot read password file \"%s\": %s", file,
                            apr_strerror(rv, why, sizeof(why)));
    }
    err = memsess_password_parse(buf, len, &pwlen);
    if (err) {
        memset(buf, 0, sizeof(buf));
        return apr_psprintf(p, "password file \"%s\" %s", file, err);
    }
    buf[pwlen] = '\0';

    c = apr_pcalloc(p, sizeof(*c));
    c->username = apr_pstrdup(p, username);
    c->file = apr_pstrdup(p, file);
    c->password = secret_copy(p, buf);
    c->username_ini = memsess_ini_quote(p, username);
    c->password_ini = memsess_ini_quote(p, buf);
    apr_pool_cleanup_register(p, c->password_ini, wipe,
                              apr_pool_cleanup_null);
    memset(buf, 0, sizeof(buf));
    *cred = c;
    return NULL;
}

char *memsess_ini_quote(apr_pool_t *p, const char *s)
{
    apr_size_t n = 0;
    const char *c;
    char *out, *o;

    for (c = s; *c; c++) {
        n += (*c == '\\' || *c == '"' || *c == '$') ? 2 : 1;
    }
    o = out = apr_palloc(p, n + 3);
    *o++ = '"';
    for (c = s; *c; c++) {
        if (*c == '\\' || *c == '"' || *c == '$') {
            *o++ = '\\';
        }
        *o++ = *c;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

int memsess_credentials_same(const memsess_credentials_t *a,
                             const memsess_credentials_t *b)
{
    if (!a || !b) {
        return a == b;
    }
    return !strcmp(a->username, b->username)
           && !strcmp(a->password, b->password);
}

const char *memsess_credentials_describe(apr_pool_t *p,
                                         const memsess_credentials_t *c)
{
    if (!c) {
        return "no MemsessCredentials";
    }
    return apr_psprintf(p, "user \"%s\", password from %s", c->username,
                        c->file);
}
