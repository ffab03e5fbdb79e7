<?php
// bench/lib/populate.php HOSTS COUNT SIZE [REPLICAS [CONSISTENT]]
// Writes COUNT PHP sessions of about SIZE bytes into the memcached servers
// HOSTS ("h:p,h:p,..."), placed exactly as php-memcached's session handler
// places them: the same libmemcached, the same key prefix (a namespace), the
// binary protocol, REPLICAS replicas, and modulo (CONSISTENT 0, as
// MemsessFailover successor injects) or ketama (1) distribution.
// Prints the number written.  With a sixth argument "audit" it writes
// nothing: it reads every one of them where PHP reads it (its first server:
// no replica read) and prints how many are missing and how many differ.
[$_, $hosts, $count, $size] = $argv + [null, null, 0, 1024];
$audit = ($argv[6] ?? '') === 'audit';
$replicas = $audit ? 0 : (int)($argv[4] ?? 1);
$consistent = (int)($argv[5] ?? 0);
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_PREFIX_KEY, ini_get('memcached.sess_prefix') ?: 'memc.sess.key.');
if ($consistent) {
    $m->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_CONSISTENT);
    $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
}
$m->setOption(Memcached::OPT_NUMBER_OF_REPLICAS, $replicas);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->setOption(Memcached::OPT_SERIALIZER, Memcached::SERIALIZER_PHP);
foreach (explode(',', $hosts) as $hp) {
    [$h, $p] = explode(':', $hp);
    $m->addServer($h, (int)$p);
}
$pad = str_repeat('x', max(0, (int)$size - 40));
if ($audit) {
    $want = 'n|i:1;pad|s:' . strlen($pad) . ':"' . $pad . '";';
    $missing = $differ = 0;
    for ($i = 0; $i < (int)$count; $i += 1000) {
        $ids = [];
        for ($j = $i; $j < min($i + 1000, (int)$count); $j++) {
            $ids[] = sprintf('bench%021d', $j);
        }
        $got = $m->getMulti($ids) ?: [];
        foreach ($ids as $id) {
            if (!isset($got[$id])) { $missing++; }
            elseif ($got[$id] !== $want) { $differ++; }
        }
    }
    echo $missing, ' ', $differ, "\n";
    exit(0);
}
$written = 0;
$batch = [];
for ($i = 0; $i < (int)$count; $i++) {
    $id = sprintf('bench%021d', $i);
    // what session_encode() gives for ['n' => 1, 'pad' => $pad]
    $batch[$id] = 'n|i:1;pad|s:' . strlen($pad) . ':"' . $pad . '";';
    if (count($batch) == 500) {
        foreach ($batch as $k => $v) {
            // sessions are strings: store them raw, as the handler does
            if ($m->set($k, $v, 1440)) { $written++; }
        }
        $batch = [];
    }
}
foreach ($batch as $k => $v) {
    if ($m->set($k, $v, 1440)) { $written++; }
}
echo $written, "\n";
