<?php
// The failure window (t/28_window.t): a request that holds raw TCP sockets.
//   wait=host:port     sends "version" there and waits for the answer, as
//                      php-memcached waits on a frozen server; `rounds`
//                      times, on a new connection each (its lock loop
//                      reconnects), each wait bounded by `timeout` seconds
//   keep=a:p,b:p       connected first, used only at the end: still open?
// Reports each wait: how long, and whether it ended by EOF (shut down by
// the module), an answer, or the timeout.
require __DIR__ . '/lib.inc';

$keep = [];
foreach (array_filter(explode(',', $_GET['keep'] ?? '')) as $a) {
    $keep[$a] = @stream_socket_client("tcp://$a", $no, $str, 2);
}
$rounds = max(1, (int)($_GET['rounds'] ?? 1));
$timeout = (float)($_GET['timeout'] ?? 10);
$waits = [];
for ($i = 0; $i < $rounds && isset($_GET['wait']); $i++) {
    $t = microtime(true);
    $s = @stream_socket_client('tcp://' . $_GET['wait'], $no, $str, 2);
    if (!$s) {
        $waits[] = ['ms' => (int)round((microtime(true) - $t) * 1000), 'end' => "connect: $str"];
        continue;
    }
    fwrite($s, "version\r\n");
    stream_set_timeout($s, (int)$timeout, (int)(fmod($timeout, 1) * 1e6));
    $line = fgets($s);
    $meta = stream_get_meta_data($s);
    $end = $line !== false ? 'answer' : ($meta['timed_out'] ? 'timeout' : (feof($s) ? 'eof' : 'error'));
    $waits[] = ['ms' => (int)round((microtime(true) - $t) * 1000), 'end' => $end];
    fclose($s);
}
$kept = [];
foreach ($keep as $a => $s) {
    if (!$s) {
        $kept[$a] = 'not connected';
        continue;
    }
    $w = @fwrite($s, "version\r\n");
    stream_set_timeout($s, 2);
    $line = $w ? fgets($s) : false;
    $kept[$a] = $line !== false ? 'open' : 'shut';
}
memsess_send(['pid' => getmypid(), 'waits' => $waits, 'kept' => $kept]);
