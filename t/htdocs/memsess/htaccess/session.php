<?php
// Served beside a .htaccess that sets php_value session.save_*.
require __DIR__ . '/../lib.inc';
memsess_session_page();
