<?php

/**
 * @file
 * PHPUnit bootstrap: the Drupal 7 shim, the module and the test helpers.
 */

require __DIR__ . '/shim/bootstrap.inc';

// What Drupal loads on demand (module_load_install(), drush's command file
// discovery, menu "file" keys, module_load_include()), loaded up front for the
// tests that call into it directly.
module_load_install('hosting_taskd');
foreach (array('admin', 'drush', 'webhook', 'endpoints', 'signature', 'tasks', 'client', 'runner', 'dispatch') as $concern) {
  hosting_taskd_include($concern);
}
require __DIR__ . '/TestServer.php';
require __DIR__ . '/FpmServer.php';
