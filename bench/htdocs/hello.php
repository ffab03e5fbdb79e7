<?php
// A PHP page without a session: what the request hook costs on its own.
header('Content-Type: text/plain');
echo "hello\n";
