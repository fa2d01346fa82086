<?php

/**
 * @file
 * PHPUnit bootstrap: the Drupal 7 shim, the module and the test helpers.
 */

require __DIR__ . '/shim/bootstrap.inc';
require __DIR__ . '/TestServer.php';
