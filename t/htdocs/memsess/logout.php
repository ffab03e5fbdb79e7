<?php
// A logout: the session is destroyed (php-memcached deletes its key on
// every server that holds it).
require __DIR__ . '/lib.inc';
$started = session_start();
$id = session_id();
$_SESSION = [];
$destroyed = session_destroy();
memsess_send(['session_id' => $id, 'started' => $started,
              'destroyed' => $destroyed]);
