<?php
// What PHP was told, without touching any session storage.
require __DIR__ . '/lib.inc';
memsess_send(memsess_report());
