<?php

/**
 * @file
 * Serves the module's endpoints from a SQLite copy of Aegir's task tables.
 *
 * For end-to-end tests of the service against the module's real page
 * callbacks, without a Drupal site:
 *
 * @code
 * HOSTING_TASKD_DB=/path/to/aegir.sqlite \
 * HOSTING_TASKD_SECRET=whsec_... \
 * php -S 127.0.0.1:8080 tests/serve.php
 * @endcode
 *
 * Environment:
 * - HOSTING_TASKD_DB (required): the SQLite file. The node, node_revision and
 *   hosting_task tables are created in it when missing; tests/enqueue.php
 *   adds tasks to it.
 * - HOSTING_TASKD_SECRET: the shared secret (whsec_...). Without it every
 *   request is answered 401, as on a site where no secret is set.
 *
 * Routes, as on a Drupal site with the module enabled (so the service's
 * TASKD_FRONTEND_URL is http://127.0.0.1:8080/hosting/taskd):
 * - GET /hosting/taskd/queue
 * - GET /hosting/taskd/task/{nid}
 * Any other path answers 404 with a JSON error. Nothing is printed but the
 * answers; PHP errors go to the server's log (standard error).
 */

ini_set('display_errors', '0');
ini_set('log_errors', '1');

require __DIR__ . '/shim/bootstrap.inc';

$db_path = getenv('HOSTING_TASKD_DB');
if ($db_path === FALSE || $db_path === '') {
  drupal_add_http_header('Status', '500 Internal Server Error');
  drupal_json_output(array(
    'error' => 'not_configured',
    'message' => 'HOSTING_TASKD_DB is not set.',
  ));
  return TRUE;
}
shim_db_connect($db_path);
shim_aegir_create_schema();

$secret = getenv('HOSTING_TASKD_SECRET');
if ($secret !== FALSE && $secret !== '') {
  variable_set('hosting_taskd_secret', $secret);
}

$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$result = shim_menu_execute(rawurldecode(ltrim($path, '/')), hosting_taskd_menu());

// Drupal would render an HTML error page here; the service only reads JSON.
if ($result === MENU_NOT_FOUND) {
  drupal_add_http_header('Status', '404 Not Found');
  drupal_json_output(array('error' => 'not_found', 'message' => 'No such route.'));
}
elseif ($result === MENU_ACCESS_DENIED) {
  drupal_add_http_header('Status', '403 Forbidden');
  drupal_json_output(array('error' => 'forbidden', 'message' => 'Access denied.'));
}
return TRUE;
