<?php

/**
 * @file
 * A page that queues tasks, run under PHP-FPM by FpmTest.
 *
 * Like a Verify click: a Drupal request (the shim, the module) saves task
 * nodes through the module's hooks, prints its page and ends; the module's
 * shutdown function sends the webhooks. FastCGI parameters (in $_SERVER):
 * TASKD_DB (the SQLite file), TASKD_URL and TASKD_SECRET (the service),
 * TASKD_TASKS (how many tasks to queue), TASKD_RESULT (a file to which the
 * request writes, when everything is done, a JSON line: when its own work
 * ended, when the module's sending ended, and the module's log).
 */

require __DIR__ . '/shim/bootstrap.inc';

shim_db_connect($_SERVER['TASKD_DB']);
$GLOBALS['shim_variables'] = array(
  'hosting_taskd_url' => $_SERVER['TASKD_URL'],
  'hosting_taskd_secret' => $_SERVER['TASKD_SECRET'],
  'hosting_taskd_timeout' => 1,
  'hosting_queue_tasks_enabled' => FALSE,
);
shim_bootstrap_variables(TRUE);
module_invoke_all('init');

$site = shim_aegir_create_node('site', 'site-' . bin2hex(random_bytes(4)) . '.example.com');
for ($i = 0; $i < (int) $_SERVER['TASKD_TASKS']; $i++) {
  shim_aegir_add_task($site, 'verify');
}

// After the module's shutdown function, which the hooks above registered.
register_shutdown_function(function ($work_done) {
  $entries = array();
  foreach (shim_watchdog_entries('hosting_taskd') as $entry) {
    $entries[] = $entry['text'];
  }
  file_put_contents($_SERVER['TASKD_RESULT'], json_encode(array(
    'work_done' => $work_done,
    'sending_done' => microtime(TRUE),
    'log' => $entries,
  )) . "\n");
}, microtime(TRUE));

header('Content-Type: text/html');
print '<p>The tasks were queued.</p>';
