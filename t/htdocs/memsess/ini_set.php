<?php
// The application tries to move its sessions elsewhere at run time.
require __DIR__ . '/lib.inc';
$before = memsess_ini('session.save_path');
$r_path = @ini_set('session.save_path', '/tmp/hijack-ini-set');
$r_handler = @ini_set('session.save_handler', 'files');
memsess_send(memsess_report([
    'before'            => $before,
    'ini_set_path'      => $r_path,
    'ini_set_handler'   => $r_handler,
]));
