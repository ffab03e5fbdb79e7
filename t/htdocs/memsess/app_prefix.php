<?php
// An application that sets its own session prefix and placement settings
// at run time, as some frameworks do: what the module injects stays in
// force.
require __DIR__ . '/lib.inc';
@ini_set('memcached.sess_prefix', 'app.');
@ini_set('memcached.sess_randomize_replica_read', '1');
@ini_set('memcached.sess_remove_failed_servers', '1');
memsess_session_page();
