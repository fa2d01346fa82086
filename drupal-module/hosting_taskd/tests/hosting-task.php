<?php

/**
 * @file
 * The end of "drush @hostmaster hosting-task NID", over the shim.
 *
 * What matters to the module is the order of PHP's shutdown functions:
 * - the bootstrap reads the variables (variable_initialize()); with a cold
 *   cache that takes a lock, which registers Drupal's shutdown runner with PHP
 *   first of all;
 * - hosting_task_drush_init() registers a plain PHP shutdown function, which
 *   at the end of the run calls hosting_task_update_status(), so
 *   hook_hosting_task_update_status() fires from inside PHP's shutdown;
 * - a module (taskd_test, see shim/test_module.inc) queues a follow-up task
 *   from that hook, as Aegir documents.
 *
 * @code
 * HOSTING_TASKD_DB=... HOSTING_TASKD_URL=... HOSTING_TASKD_SECRET=... \
 * VARIABLE_CACHE=cold|warm php tests/hosting-task.php NID
 * @endcode
 *
 * Exit code 0; the webhooks go to HOSTING_TASKD_URL, where the test reads
 * them.
 */

ini_set('display_errors', 'stderr');

require __DIR__ . '/shim/bootstrap.inc';

$nid = isset($argv[1]) ? (int) $argv[1] : 0;
shim_db_connect(getenv('HOSTING_TASKD_DB'));

// The {variable} table as the site has it; nothing is written this run.
$GLOBALS['shim_variables'] = array(
  'hosting_taskd_url' => getenv('HOSTING_TASKD_URL'),
  'hosting_taskd_secret' => getenv('HOSTING_TASKD_SECRET'),
  'hosting_taskd_timeout' => 2,
  'hosting_queue_tasks_enabled' => FALSE,
);
$GLOBALS['shim_modules'][] = 'taskd_test';
$GLOBALS['taskd_test'] = array('follow_up' => 'backup');

// DRUPAL_BOOTSTRAP_VARIABLES, then the full bootstrap's hook_init().
shim_bootstrap_variables(getenv('VARIABLE_CACHE') === 'warm');
module_invoke_all('init');

// hosting_task_drush_init(): the plain shutdown function that finishes the
// task in Aegir.
register_shutdown_function(function () use ($nid) {
  $vid = (int) db_query('SELECT vid FROM {node} WHERE nid = :nid', array(':nid' => $nid))->fetchField();
  hosting_task_update_status($vid);
});

// drush_hosting_task_validate() marks it processing; the task then runs.
$task = shim_aegir_set_status($nid, HOSTING_TASK_PROCESSING);
hosting_task_log($task->vid, 'success', 'Verified the site.');
