<?php

/**
 * @file
 * Queues a task in a SQLite copy of Aegir's tables and sends its webhook.
 *
 * For end-to-end tests of the service: the task is saved the way
 * hosting_add_task() saves it (node, node_revision and hosting_task rows with
 * status 0, in one transaction, with the module's hooks fired inside it), and
 * the webhook goes out from the module's real shutdown function once the
 * transaction has committed.
 *
 * @code
 * HOSTING_TASKD_DB=/path/to/aegir.sqlite \
 * HOSTING_TASKD_URL=http://127.0.0.1:8765 \
 * HOSTING_TASKD_SECRET=whsec_... \
 * php tests/enqueue.php
 * @endcode
 *
 * Environment:
 * - HOSTING_TASKD_DB (required): the SQLite file; tables are created when
 *   missing. tests/serve.php can serve the same file.
 * - HOSTING_TASKD_URL: the service's base URL (the webhook goes to
 *   {url}/v1/tasks).
 * - HOSTING_TASKD_SECRET: the shared secret (whsec_...).
 * - HOSTING_TASKD_TIMEOUT: seconds to wait for the service (default 2).
 * - HOSTING_TASKD_RID: node id of the site the task acts on; by default a new
 *   site node is created.
 * - HOSTING_TASKD_TASK_TYPE: the task type (default "verify").
 *
 * Output, after the webhook was sent: one JSON line,
 * {"task":{...},"webhooks":[{"url","code","error","data"}],"errors":[...]},
 * where "task" is the task as the module's task endpoint shows it and
 * "errors" are the module's log messages. Exit code 0 when the service
 * accepted the webhook, 1 otherwise (the task stays queued in the database).
 */

ini_set('display_errors', 'stderr');

require __DIR__ . '/shim/bootstrap.inc';

/**
 * Reads an environment variable, or returns a default.
 */
function enqueue_env($name, $default = '') {
  $value = getenv($name);
  return ($value === FALSE || $value === '') ? $default : $value;
}

$db_path = enqueue_env('HOSTING_TASKD_DB');
if ($db_path === '') {
  fwrite(STDERR, "HOSTING_TASKD_DB is not set.\n");
  exit(2);
}
shim_db_connect($db_path);
shim_aegir_create_schema();

variable_set('hosting_taskd_url', enqueue_env('HOSTING_TASKD_URL'));
variable_set('hosting_taskd_secret', enqueue_env('HOSTING_TASKD_SECRET'));
variable_set('hosting_taskd_timeout', enqueue_env('HOSTING_TASKD_TIMEOUT', HOSTING_TASKD_DEFAULT_TIMEOUT));

$rid = (int) enqueue_env('HOSTING_TASKD_RID', '0');
if ($rid <= 0) {
  $rid = shim_aegir_create_node('site', 'site-' . bin2hex(random_bytes(4)) . '.example.com');
}
$task = shim_aegir_add_task($rid, enqueue_env('HOSTING_TASKD_TASK_TYPE', 'verify'));

register_shutdown_function(function () use ($task) {
  hosting_taskd_include('tasks');
  hosting_taskd_include('client');
  $errors = array();
  foreach (shim_watchdog_entries('hosting_taskd') as $entry) {
    if ($entry['severity'] <= WATCHDOG_WARNING) {
      $errors[] = $entry['text'];
    }
  }
  // Registered after the module's sender (the hooks above registered it), so
  // PHP runs this once the webhook has been sent.
  $webhooks = array();
  $state = &hosting_taskd_pending_state();
  foreach ($state['results'] as $result) {
    $webhooks[] = array(
      'url' => hosting_taskd_service_url() . '/v1/tasks',
      'code' => (int) $result['code'],
      'error' => $result['error'],
      'data' => $result['data'],
    );
  }
  $accepted = count($webhooks) == 1 && $webhooks[0]['code'] >= 200 && $webhooks[0]['code'] < 300;
  echo json_encode(array(
    'task' => hosting_taskd_load_task($task->nid),
    'webhooks' => $webhooks,
    'errors' => $errors,
  ), JSON_UNESCAPED_SLASHES) . "\n";
  exit($accepted && !$errors ? 0 : 1);
});
