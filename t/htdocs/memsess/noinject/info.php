<?php
// Below MemsessInject Off: PHP keeps its own settings.
require __DIR__ . '/../lib.inc';
memsess_send(memsess_report());
