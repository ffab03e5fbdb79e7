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

/* memsess_credentials.h: MemsessCredentials: the password file, quoting for
 * php-fpm (memsess_credentials.c: APR only). */

#ifndef MEMSESS_CREDENTIALS_H
#define MEMSESS_CREDENTIALS_H

#include "memsess_common.h"

/* Checks a SASL user name: 1 to MEMSESS_USERNAME_MAX bytes, no control
 * character.  NULL, or an error message naming it. */
const char *memsess_username_check(apr_pool_t *p, const char *username);

/* The password in a password file's bytes: one line, its newline (\n or
 * \r\n) optional, 1 to MEMSESS_PASSWORD_MAX bytes, no control character
 * but tab.  Sets *pwlen and returns NULL, or returns what is wrong with
 * the file (never any of its bytes). */
const char *memsess_password_parse(const char *buf, apr_size_t len,
                                   apr_size_t *pwlen);

/* Reads username's password from file into a new *cred allocated from p.
 * NULL, or an error message naming the file (without the directive). */
const char *memsess_credentials_read(apr_pool_t *p, const char *username,
                                     const char *file,
                                     memsess_credentials_t **cred);

/* s in double quotes with \, " and $ escaped: what PHP's INI parser (as
 * php-fpm runs it on PHP_ADMIN_VALUE) reads back as exactly s. */
char *memsess_ini_quote(apr_pool_t *p, const char *s);

/* Whether two pools authenticate the same way (NULL: no credentials). */
int memsess_credentials_same(const memsess_credentials_t *a,
                             const memsess_credentials_t *b);

/* "user \"u\" (password from FILE)" or "no MemsessCredentials", for
 * messages. */
const char *memsess_credentials_describe(apr_pool_t *p,
                                         const memsess_credentials_t *c);

#endif /* MEMSESS_CREDENTIALS_H */
