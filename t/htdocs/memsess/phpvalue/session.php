<?php
// Served below a <Directory> that sets php_value session.save_*.
require __DIR__ . '/../lib.inc';
memsess_session_page();
