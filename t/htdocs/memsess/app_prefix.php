<?php
// An application that sets its own session prefix at run time, as some
// frameworks do: the namespace the module injects stays in force.
require __DIR__ . '/lib.inc';
$GLOBALS['memsess_app_prefix'] = @ini_set('memcached.sess_prefix', 'app.');
memsess_session_page();
