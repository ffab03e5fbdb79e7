<?php
// The login workload of bench/: a request without a cookie logs in (new
// session, counter 1); a follow-up increments the counter of its session.
// The answer says what the client needs to judge it: the counter, whether
// the session was new, whether the write worked, and the save_path used.
header('Content-Type: text/plain');
header('Cache-Control: no-store');
$ok = @session_start();
// Not ini_get(): opcache folds ini_get() of a PHP_INI_SYSTEM setting into a
// constant at compile time (php-src #8699), so it would show the first
// value this child ever had.
$path = ini_get_all('session', false)['session.save_path'];
if (!$ok) {
    echo "n=0 new=0 w=0 path=$path\n";      // no session at all
    exit;
}
$new = isset($_SESSION['n']) ? 0 : 1;
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
$n = $_SESSION['n'];
$w = @session_write_close() ? 1 : 0;
echo "n=$n new=$new w=$w path=$path\n";
