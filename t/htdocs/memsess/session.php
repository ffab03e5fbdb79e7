<?php
// A login-like page: every request increments $_SESSION['n'].
require __DIR__ . '/lib.inc';
memsess_session_page();
