<?php
// Another PHP site on the same memcached servers, as most are set up:
// php-memcached's session handler with a static save_path and every
// other session setting at its default (prefix memc.sess.key., no
// replica, consistent hashing).  It never goes through mod_memsess.
//
//   php neighbour.php write|read SAVE_PATH N TAG
//
// write: N sessions (ids from TAG), each holding n = 7; read: how many of
// them still hold it, and the ids of those that do not ("lost ID").
if ($argc != 5 || !in_array($argv[1], ['write', 'read'], true)) {
    fwrite(STDERR, "usage: php neighbour.php write|read SAVE_PATH N TAG\n");
    exit(2);
}
[, $mode, $path, $n, $tag] = $argv;
ini_set('session.save_handler', 'memcached');
ini_set('session.save_path', $path);
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
ini_set('session.cache_limiter', '');
ini_set('session.gc_maxlifetime', '3600');
$kept = 0;
for ($i = 1; $i <= (int)$n; $i++) {
    $id = md5("neighbour-$tag-$i");
    session_id($id);
    if (!@session_start()) {
        echo "failed $id\n";
        continue;
    }
    if ($mode === 'write') {
        $_SESSION['n'] = 7;
        $kept += session_write_close() ? 1 : 0;
    } else {
        if (($_SESSION['n'] ?? null) === 7) {
            $kept++;
        } else {
            echo "lost $id\n";
        }
        session_abort();
    }
    $_SESSION = [];
}
echo "kept $kept\n";
