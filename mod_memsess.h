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

/*
 * mod_memsess: memcached session pools for PHP, health-checked once per
 * Apache instance and injected per request.
 *
 * This header is the module glue's (mod_memsess.c): it includes every
 * part's.  A part includes only the headers of what it uses: its own
 * (memsess_NAME.h for memsess_NAME.c, its public functions and types),
 * memsess_common.h (the types every part needs: a pool, a view, the
 * module-wide settings, the runtime) and those of the parts it calls.
 *
 * Who owns what (the pure parts use APR, libmemcached at most, and build
 * without httpd: -DMEMSESS_NO_HTTPD, as the unit tests and fuzzers do):
 *   memsess_common.h  the types every part needs
 *   memsess_pool.c    parse "host[:port[:weight]]" lines and times, build
 *                     a save_path (pure)
 *   memsess_credentials.c  MemsessCredentials: the password file, quoting
 *                     for php-fpm (pure)
 *   memsess_table.c   the shared health table: layout, seqlock, state
 *                     machine, what each view publishes (pure, any memory)
 *   memsess_flight.c  requests in flight: which began before a flip (pure)
 *   memsess_lateness.c whether the checker itself was late (CPU pressure,
 *                     its own run-queue wait): pure judgement, /proc reads
 *   memsess_verdicts.c the verdict records instances share: key, parse,
 *                     merge, format (pure)
 *   memsess_clocks.c  other instances' clocks: lapses, skews (pure)
 *   memsess_job.c     the record of a job run once for the group (pure)
 *   memsess_state.c   the state file's text: the placement in force of
 *                     every pool (pure)
 *   memsess_peer.c    a socket's peer, a server's address, a line of
 *                     /proc/net/tcp, matched (pure)
 *   memsess_listing.c a memcached server's listing: metadump lines parsed
 *                     (pure), a whole listing read a line at a time, what
 *                     a listed key is to PHP (APR only)
 *   memsess_place.c   where php-memcached places a key (libmemcached)
 *   memsess_sync.c    the sync engine of a rejoin and of a rebalance, given
 *                     targets: what to do with a key, the copy passes
 *                     before and after the flip, the guard at the flip
 *                     (APR and libmemcached only)
 *   memsess_persist.c persistence's pure part: base64, rows, what was
 *                     written
 *   memsess_config.c  the configuration's accessors
 *   memsess_view.c    what a view publishes from (its pool, or the one
 *                     before during a rebalance), its path, the pools'
 *                     fingerprint, the all-down NOTICE
 *   memsess_check.c   the mod_watchdog checker: probes, verdicts, and the
 *                     parts below it, which it starts, feeds and stops
 *   memsess_exchange.c sharing verdicts with the other Apache instances of
 *                     the group through the pool's servers (libmemcached)
 *   memsess_rejoin.c  the checker's rejoin syncs: a thread each, the flip
 *   memsess_rebalance_job.c  the checker's rebalance of changed pools: its
 *                     thread, the flip, the retry
 *   memsess_joblock.c a job's record on a server: take, wait, follow, take
 *                     over, the lease
 *   memsess_gate.c    a flip's gate: requests that read a list wait
 *   memsess_connect.c the checker's libmemcached handles
 *   memsess_watch.c   the checker notices a server's death as it happens
 *   memsess_persist_db.c  MemsessPersist through mod_dbd: the write-behind
 *                     and the restore
 *   memsess_rebalance.c  pool changes at graceful: which lists or
 *                     placements changed, what is published and injected
 *                     until the rebalance has run
 *   memsess_adopt.c   what a start finds in force: the state file, PHP's
 *                     own placement (php.ini through mod_php)
 *   memsess_inject.c  what a request gets: mod_php settings, php-fpm, env
 *   memsess_status.c  the memsess-status handler
 *   memsess_release.c every child shuts down its sockets to a server marked
 *                     down
 *   memsess_check_process.c  the checker's process of its own, out of the
 *                     MPM's reach: forked, restarted, stopped by the parent
 *   memsess_release_helper.c  the process that keeps CAP_NET_ADMIN only
 *                     and destroys every process's sockets to a server
 *                     marked down (sock_diag); its requests (pure)
 *   mod_memsess.c     directives, configuration, hooks, shared memory life
 *
 * Who calls whom: the parts each calls, read from the built objects.  They
 * form no circle: the checker orchestrates, and no part calls back up (the
 * checker hands the exchange and the rebalance the rejoin syncs as
 * memsess_syncs_t callbacks).  t/unit/calls-one-way.sh (make unit) fails
 * on a circle among the includes or among the objects' calls.
 *   mod_memsess     -> adopt check check_process config credentials
 *                      flight inject listing persist_db place pool
 *                      rebalance release release_helper status table
 *                      verdicts view
 *   check_process   -> check clocks table
 *   check           -> exchange lateness persist_db rebalance_job rejoin
 *                      release release_helper table view watch
 *   rejoin          -> clocks config connect exchange gate joblock
 *                      persist_db sync table verdicts view
 *   rebalance_job   -> adopt exchange gate joblock sync table verdicts view
 *   exchange        -> clocks config connect job table verdicts view
 *   joblock         -> clocks config connect job table verdicts
 *   gate            -> flight sync table
 *   persist_db      -> clocks connect listing persist place table verdicts
 *                      view
 *   watch           -> table
 *   release         -> peer release_helper table
 *   release_helper  -> peer table
 *   inject          -> clocks config flight release table
 *   status          -> config persist table
 *   rebalance       -> adopt pool table view
 *   adopt           -> listing state view
 *   view            -> pool table verdicts
 *   job             -> verdicts
 *   persist         -> listing verdicts
 *   sync            -> clocks listing place
 *   table           -> pool
 * (all but mod_memsess.c name memsess_module, the module record, for their
 * log lines: data, not a call.)
 *
 * Log tags: MEMSESSnnnn, one per call site, never reused.
 * The next free number is MEMSESS0027.  Ranges reserved by capability:
 * MEMSESS0170-0189 persistence (memsess_persist_db.c, mod_memsess.c:
 * 0170-0180 used),
 * MEMSESS0030-0049 the rejoin sync (0030-0036 one instance, 0037-0042 one
 * sync for the group, 0043-0044 the flip's guard, 0045-0046 no session
 * found among many keys, 0047-0048 a server that cannot be listed: refused
 * or taken back as it is), 0050-0069 the failure
 * window (memsess_release.c: 0050, 0051; memsess_watch.c: 0052;
 * memsess_release_helper.c: 0053-0062), 0070-0089
 * credentials, 0090-0099 and 0150-0159 shared verdicts and what the group
 * does once (0150-0159 used: 0158, 0159 an instance that takes a pool over
 * in a group), 0130-0149 pool changes (the rebalance,
 * 0130-0142; taking a pool over and the state file, 0143-0149: all used),
 * 0160-0169 the group's clocks (memsess_exchange.c: 0160 used),
 * 0190-0199 the checker process (memsess_check_process.c, memsess_check.c:
 * 0190-0196 used), 0200-0209 the sessions' namespace (memsess_rebalance.c:
 * 0200, 0201 used).
 */

#ifndef MOD_MEMSESS_H
#define MOD_MEMSESS_H

/* The module's version; debian/changelog must agree (debian/rules checks). */
#define MEMSESS_VERSION "0.1.0"

#include "memsess_common.h"
#include "memsess_config.h"
#include "memsess_pool.h"
#include "memsess_credentials.h"
#include "memsess_lateness.h"
#include "memsess_flight.h"
#include "memsess_table.h"
#include "memsess_verdicts.h"
#include "memsess_clocks.h"
#include "memsess_job.h"
#include "memsess_state.h"
#include "memsess_peer.h"
#include "memsess_release_helper.h"
#include "memsess_listing.h"
#include "memsess_place.h"
#include "memsess_sync.h"
#include "memsess_persist.h"
#include "memsess_view.h"
#include "memsess_check.h"
#include "memsess_check_process.h"
#include "memsess_connect.h"
#include "memsess_joblock.h"
#include "memsess_exchange.h"
#include "memsess_rejoin.h"
#include "memsess_rebalance.h"
#include "memsess_adopt.h"
#include "memsess_rebalance_job.h"
#include "memsess_gate.h"
#include "memsess_inject.h"
#include "memsess_watch.h"
#include "memsess_release.h"
#include "memsess_persist_db.h"
#include "memsess_status.h"

#endif /* MOD_MEMSESS_H */
