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
 * - RECEIVER_SECRET_FILE (optional): a file holding the shared secret. When
 *   it is not empty, POSTs are checked as the service checks its intake:
 *   the Standard Webhooks signature first (401 when bad), then the body
 *   (400 {"error":"TASKD_ERR_BAD_REQUEST"} without a positive integer nid).
 *
 * Answers: POST .../v1/tasks 202 {"nid":N,"state":"queued"}; POST
 * .../v1/tasks/N/stop 202 {"nid":N,"state":"stopping"}; GET .../healthz 200;
 * a path starting /status/NNN/ answers NNN; one starting /slow/ waits three
 * seconds first; anything else 404.
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

/**
 * Tells whether the request carries a good v1 signature over its raw body.
 */
function receiver_signed($secret, array $headers, $body) {
  foreach (array('webhook-id', 'webhook-timestamp', 'webhook-signature') as $name) {
    if (!isset($headers[$name])) {
      return FALSE;
    }
  }
  if (abs(time() - (int) $headers['webhook-timestamp']) > 300) {
    return FALSE;
  }
  $key = base64_decode(substr($secret, strlen('whsec_')), TRUE);
  $expected = base64_encode(hash_hmac('sha256', $headers['webhook-id'] . '.' . $headers['webhook-timestamp'] . '.' . $body, $key, TRUE));
  foreach (explode(' ', $headers['webhook-signature']) as $candidate) {
    if (hash_equals('v1,' . $expected, $candidate)) {
      return TRUE;
    }
  }
  return FALSE;
}

$secret_file = getenv('RECEIVER_SECRET_FILE');
$secret = $secret_file ? trim((string) @file_get_contents($secret_file)) : '';
$data = json_decode($body, TRUE);
$nid = is_array($data) && isset($data['nid']) ? $data['nid'] : NULL;
$entry['signed'] = $secret !== '' ? receiver_signed($secret, $headers, $body) : NULL;

$status = 404;
$answer = array('error' => 'not_found', 'message' => 'No such route.');
if ($method === 'POST' && $secret !== '' && !$entry['signed']) {
  $status = 401;
  $answer = array('error' => 'TASKD_ERR_UNAUTHORIZED', 'message' => 'Missing or bad signature.');
}
elseif (preg_match('@/v1/tasks$@', $path) && $method === 'POST' && $secret !== '' && !(is_int($nid) && $nid > 0)) {
  $status = 400;
  $answer = array('error' => 'TASKD_ERR_BAD_REQUEST', 'message' => 'nid: a positive integer is required.');
}
elseif (preg_match('@/v1/tasks/([0-9]+)/stop$@', $path, $matches) && $method === 'POST') {
  $status = 202;
  $answer = array('nid' => (int) $matches[1], 'state' => 'stopping');
}
elseif (preg_match('@/v1/tasks$@', $path) && $method === 'POST') {
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
