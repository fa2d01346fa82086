<?php

/**
 * @file
 * Runs one request through the shim in a fresh PHP process.
 *
 * Shows which of the module's files a request loads, which only a process
 * that has loaded nothing else can tell:
 *
 * @code
 * HOSTING_TASKD_DB=/path/to/aegir.sqlite php tests/request.php node/1
 * @endcode
 *
 * The SQLite file must hold the tables already (tests/serve.php or the
 * PHPUnit tests create them).
 *
 * The path is routed over the module's hook_menu() items and one stand-in
 * core item ("node/%", a page that is not the module's), with hook_init()
 * fired first and the shutdown functions run last, as in a Drupal request.
 * Output: one JSON line, {"result":…,"loaded":[module files, in load order]},
 * where result is what the page callback returned (or MENU_NOT_FOUND's
 * number), and the page's own output is left out.
 */

ini_set('display_errors', 'stderr');

require __DIR__ . '/shim/bootstrap.inc';

$db_path = getenv('HOSTING_TASKD_DB');
if ($db_path === FALSE || $db_path === '') {
  fwrite(STDERR, "HOSTING_TASKD_DB is not set.\n");
  exit(2);
}
// The tables exist already, as on an installed site: creating them here
// would load the .install file.
shim_db_connect($db_path);

/**
 * Stand-in for node_page_view(): a page of core's, not the module's.
 */
function request_node_page($nid) {
  return 'node ' . $nid;
}

$path = isset($argv[1]) ? $argv[1] : '';
module_invoke_all('init');
$items = hosting_taskd_menu();
$items['node/%'] = array(
  'page callback' => 'request_node_page',
  'page arguments' => array(1),
  'access callback' => TRUE,
);
ob_start();
$result = shim_menu_execute($path, $items);
ob_end_clean();
_drupal_shutdown_function();

$module_dir = realpath(drupal_get_path('module', 'hosting_taskd'));
$loaded = array();
foreach (get_included_files() as $file) {
  if (dirname($file) === $module_dir) {
    $loaded[] = basename($file);
  }
}
echo json_encode(array('result' => $result, 'loaded' => $loaded)) . "\n";
