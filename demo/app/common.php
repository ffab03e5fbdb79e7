<?php
// mod_memsess demo: what every page shares.
//
// The session settings (save_handler, save_path, replicas) are not in this
// application: mod_memsess gives every request the live memcached servers.
// Apache's config sets DEMO_INSTANCE / DEMO_PORT / DEMO_MEMCACHED / DEMO_INSTANCES.

function demo_env(string $name, string $default = ''): string
{
    if (isset($_SERVER[$name]) && $_SERVER[$name] !== '') {
        return (string)$_SERVER[$name];
    }
    $v = getenv($name);
    return ($v === false || $v === '') ? $default : $v;
}

// Where this request was served and what mod_memsess gave it.
function demo_info(): array
{
    $configured = array_values(array_filter(explode(' ', demo_env('DEMO_MEMCACHED'))));
    // session_save_path(), not ini_get(): OPcache may fold ini_get() of an
    // admin value at compile time.
    $path = demo_env('MEMSESS_SAVE_PATH', (string)session_save_path());
    $live = array_values(array_filter(array_map('trim', explode(',', $path))));
    $servers = [];
    foreach ($configured as $addr) {
        $servers[] = ['address' => $addr, 'live' => in_array($addr, $live, true)];
    }
    return [
        'instance'  => demo_env('DEMO_INSTANCE', php_uname('n')),
        'port'      => (int)demo_env('DEMO_PORT', (string)($_SERVER['SERVER_PORT'] ?? 0)),
        'pid'       => getmypid(),
        'live'      => demo_env('MEMSESS_LIVE', '?'),
        'save_path' => $path,
        'servers'   => $servers,
        'instances' => array_values(array_filter(explode(' ', demo_env('DEMO_INSTANCES')))),
    ];
}

// Starts the session.  If the session store cannot be read, the request
// fails with 503 instead of pretending the user is logged out: the load
// test must tell "the store was unreachable" from "the session is gone".
function demo_session_start(bool $json): void
{
    if (!@session_start()) {
        $e = error_get_last();
        demo_fail($json, 'could not read the session: ' . ($e['message'] ?? 'session_start() failed'));
    }
}

// Saves the session; 503 if the store refused it.
function demo_session_save(bool $json): void
{
    if (!@session_write_close()) {
        $e = error_get_last();
        demo_fail($json, 'could not save the session: ' . ($e['message'] ?? 'session_write_close() failed'));
    }
}

function demo_fail(bool $json, string $why): void
{
    http_response_code(503);
    header('Retry-After: 1');
    header('Cache-Control: no-store');
    $info = demo_info();
    if ($json && !demo_wants_text()) {
        header('Content-Type: application/json');
        echo json_encode(['error' => $why] + $info), "\n";
    } else {
        header('Content-Type: text/plain; charset=utf-8');
        echo "503: $why\n(served by {$info['instance']}, memcached live {$info['live']}: {$info['save_path']})\n";
    }
    exit;
}

function demo_wants_json(): bool
{
    return isset($_GET['json']) || isset($_POST['json'])
        || str_contains($_SERVER['HTTP_ACCEPT'] ?? '', 'application/json');
}

function demo_wants_text(): bool
{
    return isset($_GET['text']) || isset($_POST['text']);
}

// One line for curl: who, visits, where, which memcached.
function demo_text(array $d): void
{
    header('Content-Type: text/plain; charset=utf-8');
    header('Cache-Control: no-store');
    $who = $d['user'] === null ? 'not logged in'
         : ($d['visits'] ? "{$d['user']}, visit {$d['visits']}" : "{$d['user']}, logged in");
    printf("%-24s answered by %s (:%d)   memcached live %s: %s\n",
           $who, $d['instance'], $d['port'], $d['live'], $d['save_path']);
}

function demo_json(array $data): void
{
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    echo json_encode($data), "\n";
}

function h($s): string
{
    return htmlspecialchars((string)$s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}
