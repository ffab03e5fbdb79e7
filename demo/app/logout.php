<?php
// Log out: the session is destroyed in memcached.
require __DIR__ . '/common.php';

$json = demo_wants_json();
demo_session_start($json);
$_SESSION = [];
@session_destroy();
if ($json) {
    demo_json(['user' => null] + demo_info());
} else {
    header('Location: ./', true, 303);
}
