<?php
// The page: who you are, a per-session visit counter, which Apache answered
// and which memcached servers this request was given.  ?json for scripts.
require __DIR__ . '/common.php';

$json = demo_wants_json() || demo_wants_text();
demo_session_start($json);
$user = $_SESSION['user'] ?? null;
if ($user !== null) {
    $_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
}
$visits = $_SESSION['visits'] ?? 0;
$since = $_SESSION['since'] ?? null;
$first = $_SESSION['first_instance'] ?? null;
$sid = session_id();
demo_session_save($json);
$info = demo_info();

if (demo_wants_text()) {
    demo_text(['user' => $user, 'visits' => $visits] + $info);
    exit;
}
if ($json) {
    demo_json(['user' => $user, 'visits' => $visits, 'session' => $sid] + $info);
    exit;
}

header('Cache-Control: no-store');
$colors = ['web1' => '#1f77b4', 'web2' => '#2ca02c', 'web3' => '#d62728'];
$color = $colors[$info['instance']] ?? '#555';
?><!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mod_memsess demo — <?= h($info['instance']) ?></title>
<style>
 body { font: 16px/1.45 system-ui, sans-serif; max-width: 46em; margin: 2em auto; padding: 0 1em; color: #222; }
 h1 { font-size: 1.4em; margin-bottom: .2em; }
 .who { border-left: 6px solid <?= $color ?>; padding: .4em 1em; background: #f6f6f6; margin: 1em 0; }
 .big { font-size: 2.2em; font-weight: bold; }
 table { border-collapse: collapse; margin: .5em 0; }
 td, th { border: 1px solid #ccc; padding: .25em .7em; text-align: left; }
 .live { color: #1a7f37; font-weight: bold; } .down { color: #c62828; font-weight: bold; }
 code { background: #eee; padding: 0 .25em; }
 .muted { color: #666; font-size: .9em; }
 button, input { font-size: 1em; padding: .3em .6em; }
</style>
</head>
<body>
<h1>mod_memsess demo</h1>
<p class="muted">nginx round-robin &rarr; three Apache + mod_php &rarr; PHP sessions in three memcached.
mod_memsess tells PHP which memcached servers are alive.</p>

<div class="who">
 Answered by <span class="big" style="color: <?= $color ?>"><?= h($info['instance']) ?></span>
 (Apache on port <?= h($info['port']) ?>, process <?= h($info['pid']) ?>)
</div>

<?php if ($user === null): ?>
<h2>Log in</h2>
<form method="post" action="login.php">
 <label>Your name: <input name="user" required maxlength="40" autofocus></label>
 <button type="submit">Log in</button>
</form>
<p class="muted">No password: the name goes into your PHP session, stored in memcached.</p>
<?php else: ?>
<h2>Hello, <?= h($user) ?></h2>
<p>Visits in this session: <span class="big"><?= h($visits) ?></span></p>
<p class="muted">Logged in <?= $since ? h(date('H:i:s', $since)) : '' ?> on <?= h($first) ?>.
Session id <code><?= h(substr($sid, 0, 10)) ?>…</code>.
Reload: nginx sends each request to the next Apache, the counter goes on.</p>
<form method="post" action="logout.php"><button type="submit">Log out</button></form>
<?php endif; ?>

<h2>memcached servers for this request</h2>
<p><code>MEMSESS_LIVE</code> = <b><?= h($info['live']) ?></b> &nbsp;
<code>session.save_path</code> = <code><?= h($info['save_path']) ?></code></p>
<table>
 <tr><th>server</th><th>given to PHP?</th></tr>
<?php foreach ($info['servers'] as $s): ?>
 <tr><td><code><?= h($s['address']) ?></code></td>
     <td class="<?= $s['live'] ? 'live' : 'down' ?>"><?= $s['live'] ? 'live' : 'down: left out' ?></td></tr>
<?php endforeach; ?>
</table>

<p>What each Apache's health checker sees:
<?php foreach ($info['instances'] as $i => $name): ?>
 <?= $i ? ' · ' : '' ?><a href="status/<?= h($name) ?>"><?= h($name) ?></a>
 (<a href="status/<?= h($name) ?>?json">json</a>)
<?php endforeach; ?>
</p>
<p class="muted">Try it: in another terminal, <code>bash tools/demo.sh freeze 2</code> (SIGSTOP one memcached),
reload here, then <code>bash tools/demo.sh thaw 2</code>. Or <code>bash tools/demo.sh drill</code>.</p>
</body>
</html>
