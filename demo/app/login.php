<?php
// Log in: the name goes into the session; the counter starts again.
require __DIR__ . '/common.php';

$json = demo_wants_json() || demo_wants_text();
$user = trim((string)($_POST['user'] ?? $_GET['user'] ?? ''));
if ($user === '' || strlen($user) > 40) {
    http_response_code(400);
    if ($json) {
        demo_json(['error' => 'user: 1 to 40 characters']);
    } else {
        echo "Please give a name (1 to 40 characters). <a href=\"./\">Back</a>\n";
    }
    exit;
}

demo_session_start($json);
if (!@session_regenerate_id(true)) {   // a new id on login, as real apps do
    $e = error_get_last();
    demo_fail($json, 'could not renew the session id: ' . ($e['message'] ?? 'session_regenerate_id() failed'));
}
$info = demo_info();
$_SESSION = [
    'user'           => $user,
    'visits'         => 0,
    'since'          => time(),
    'first_instance' => $info['instance'],
];
$sid = session_id();
demo_session_save($json);

if (demo_wants_text()) {
    demo_text(['user' => $user, 'visits' => 0] + $info);
} elseif ($json) {
    demo_json(['user' => $user, 'visits' => 0, 'session' => $sid] + $info);
} else {
    header('Location: ./', true, 303);
}
