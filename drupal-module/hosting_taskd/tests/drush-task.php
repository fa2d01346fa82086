<?php

/**
 * @file
 * The log side of "drush @hostmaster hosting-task NID", over the shim.
 *
 * As drush 8 runs it: hosting's validate hook marks the task processing and
 * sets DRUSH_LOG_CALLBACK to _hosting_task_log(); then every commandfile's
 * pre hook runs (the module's drush_hosting_taskd_pre_hosting_task() among
 * them); then the command logs as it works. Here it logs a notice, waits half
 * a second (so a reader can tell lines that arrive as they are written from
 * lines flushed at exit), then a multi-line warning and an error.
 *
 * @code
 * HOSTING_TASKD_DB=... [AEGIR_TASKD_NID=NID] php tests/drush-task.php NID
 * @endcode
 *
 * Standard output: one JSON line at the end, {"callback": the log callback
 * in force}.
 */

ini_set('display_errors', 'stderr');

require __DIR__ . '/shim/bootstrap.inc';
hosting_taskd_include('drush');

$nid = (int) $argv[1];
shim_db_connect(getenv('HOSTING_TASKD_DB'));

// drush_hosting_task_validate(): processing, then hosting's log callback.
$task = shim_aegir_set_status($nid, HOSTING_TASK_PROCESSING);
drush_set_context('HOSTING_TASK', $task);
drush_set_context('DRUSH_LOG_CALLBACK', '_hosting_task_log');

// _drush_invoke_hooks(): the pre hooks of every commandfile.
foreach (get_defined_functions()['user'] as $function) {
  if (preg_match('/^drush_[a-z0-9_]+_pre_hosting_task$/', $function)) {
    $function();
  }
}

drush_log('Verifying the site.', 'notice');
usleep(500000);
drush_log("Something odd:\nsecond line", 'warning');
drush_log('It failed.', 'error');

echo json_encode(array('callback' => drush_get_context('DRUSH_LOG_CALLBACK'))) . "\n";
