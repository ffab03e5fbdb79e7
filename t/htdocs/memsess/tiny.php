<?php
// The smallest PHP page: what the session module was told, no storage.
echo session_save_path(), "\n";
