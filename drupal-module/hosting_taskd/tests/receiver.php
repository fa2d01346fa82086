<?php

/**
 * @file
 * A stand-in for the service, for the tests: records what the module sends.
 *
 * Run as "php -S 127.0.0.1:PORT tests/receiver.php" with:
 * - RECEIVER_LOG: file to which each request is appended as a JSON line
 *   (method, path, lower-cased headers, body).
 * - RECEIVER_DB (optional): the SQLite file the module writes to; for
 *   POST /v1/tasks the live status of the announced nid is looked up in it
 *   and recorded, to show whether the task row was committed on arrival.
 *
 * Answers: POST .../v1/tasks 202 {"nid":N,"state":"queued"}; GET .../healthz
 * 200; a path starting /status/NNN/ answers NNN; one starting /slow/ waits
 * three seconds first; anything else 404.
 */

$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$method = $_SERVER['REQUEST_METHOD'];
$body = file_get_contents('php://input');
$headers = array_change_key_case(getallheaders(), CASE_LOWER);

$entry = array(
  'method' => $method,
  'path' => $path,
  'headers' => $headers,
  'body' => $body,
);

$status = 404;
$answer = array('error' => 'not_found', 'message' => 'No such route.');
if (preg_match('@/v1/tasks$@', $path) && $method === 'POST') {
  $data = json_decode($body, TRUE);
  $nid = is_array($data) && isset($data['nid']) ? $data['nid'] : NULL;
  $status = 202;
  $answer = array('nid' => $nid, 'state' => 'queued');

  $db = getenv('RECEIVER_DB');
  if ($db !== FALSE && $db !== '' && $nid !== NULL) {
    try {
      $pdo = new PDO('sqlite:' . $db, NULL, NULL, array(PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 5));
      $query = $pdo->prepare('SELECT t.task_status FROM hosting_task t INNER JOIN node n ON t.vid = n.vid WHERE n.nid = :nid');
      $query->execute(array(':nid' => $nid));
      $found = $query->fetchColumn();
      $entry['row_status'] = $found === FALSE ? NULL : (int) $found;
    }
    catch (PDOException $e) {
      $entry['row_error'] = $e->getMessage();
    }
  }
}
elseif (preg_match('@/healthz$@', $path) && $method === 'GET') {
  $status = 200;
  $answer = array('status' => 'ok');
}

if (preg_match('@^/status/([1-5][0-9][0-9])/@', $path, $matches)) {
  $status = (int) $matches[1];
  $answer = array('error' => 'forced', 'message' => 'Forced status ' . $status . '.');
}
// Logged before any delay, so a slow answer cannot land in a later test's
// log.
file_put_contents(getenv('RECEIVER_LOG'), json_encode($entry) . "\n", FILE_APPEND | LOCK_EX);

if (strpos($path, '/slow/') === 0) {
  sleep(3);
}

http_response_code($status);
header('Content-Type: application/json');
echo json_encode($answer);
return TRUE;
