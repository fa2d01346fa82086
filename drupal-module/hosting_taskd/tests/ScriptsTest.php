<?php

/**
 * @file
 * The command-line helpers for end-to-end tests: serve.php and enqueue.php.
 */

/**
 * Runs serve.php under PHP's web server and enqueue.php as a process.
 */
class ScriptsTest extends HostingTaskdTestCase {

  /**
   * Database file shared by the scripts in a test.
   *
   * @var string
   */
  protected $file;

  /**
   * Creates an empty database file.
   */
  protected function setUp(): void {
    parent::setUp();
    // The receiver looks tasks up in this file when their webhook arrives.
    $this->file = self::receiverDatabase();
    @unlink($this->file);
  }

  /**
   * Removes the database file.
   */
  protected function tearDown(): void {
    parent::tearDown();
    @unlink($this->file);
  }

  /**
   * Runs enqueue.php and returns exit code, standard output and error.
   */
  protected function enqueue(array $env) {
    return self::runPhp('enqueue.php', array(), array('HOSTING_TASKD_DB' => $this->file) + $env);
  }

  /**
   * Makes a signed GET as the service does.
   */
  protected function signedGet($base, $route, $secret) {
    $id = 'svc_' . bin2hex(random_bytes(6));
    $timestamp = time();
    return drupal_http_request($base . '/hosting/taskd/' . $route, array(
      'timeout' => 5,
      'headers' => array(
        'webhook-id' => $id,
        'webhook-timestamp' => (string) $timestamp,
        'webhook-signature' => self::referenceSignature($secret, $id, $timestamp, $route),
      ),
    ));
  }

  /**
   * enqueue.php queues a task and POSTs its webhook after committing.
   */
  public function testEnqueueSendsWebhook() {
    $secret = hosting_taskd_generate_secret();
    list($code, $stdout, $stderr) = $this->enqueue(array(
      'HOSTING_TASKD_URL' => $this->receiver(),
      'HOSTING_TASKD_SECRET' => $secret,
      'HOSTING_TASKD_TASK_TYPE' => 'backup',
    ));
    $this->assertSame(0, $code, $stdout . $stderr);
    $this->assertSame('', $stderr);
    $lines = explode("\n", trim($stdout));
    $this->assertCount(1, $lines);
    $report = json_decode($lines[0], TRUE);
    $this->assertSame(array(), $report['errors']);
    $this->assertSame(HOSTING_TASK_QUEUED, $report['task']['status']);
    $this->assertSame('backup', $report['task']['type']);
    $this->assertSame(202, $report['webhooks'][0]['code']);

    $requests = $this->receivedRequests();
    $this->assertCount(1, $requests);
    $this->assertSame(HOSTING_TASK_QUEUED, $requests[0]['row_status'], 'The task row was committed when the webhook arrived.');
    $body = json_decode($requests[0]['body'], TRUE);
    $this->assertSame($report['task']['nid'], $body['nid']);
    $this->assertSame($report['task']['rid'], $body['rid']);
    $this->assertSame($report['task']['vid'], $body['vid']);
    $this->assertSame(self::referenceSignature($secret, $requests[0]['headers']['webhook-id'], $requests[0]['headers']['webhook-timestamp'], $requests[0]['body']), $requests[0]['headers']['webhook-signature']);

    // The row is in the file the script was given.
    shim_db_connect($this->file);
    $this->assertSame(array('nid' => $body['nid'], 'status' => HOSTING_TASK_QUEUED), array(
      'nid' => hosting_taskd_load_task($body['nid'])['nid'],
      'status' => hosting_taskd_load_task($body['nid'])['status'],
    ));
  }

  /**
   * enqueue.php reports a service that does not answer, and exits 1.
   */
  public function testEnqueueServiceDown() {
    $secret = hosting_taskd_generate_secret();
    list($code, $stdout) = $this->enqueue(array(
      'HOSTING_TASKD_URL' => 'http://127.0.0.1:' . TestServer::freePort(),
      'HOSTING_TASKD_SECRET' => $secret,
    ));
    $this->assertSame(1, $code);
    $report = json_decode(trim($stdout), TRUE);
    $this->assertCount(1, $report['errors']);
    $this->assertLessThan(0, $report['webhooks'][0]['code']);
    $this->assertSame(HOSTING_TASK_QUEUED, $report['task']['status'], 'The task stays queued.');
    $this->assertStringNotContainsString($secret, $stdout);
  }

  /**
   * enqueue.php uses an existing rid when given one.
   */
  public function testEnqueueWithRid() {
    $url = $this->receiver();
    $secret = hosting_taskd_generate_secret();
    list(, $stdout) = $this->enqueue(array('HOSTING_TASKD_URL' => $url, 'HOSTING_TASKD_SECRET' => $secret));
    $first = json_decode(trim($stdout), TRUE)['task'];
    list($code, $stdout) = $this->enqueue(array(
      'HOSTING_TASKD_URL' => $url,
      'HOSTING_TASKD_SECRET' => $secret,
      'HOSTING_TASKD_RID' => (string) $first['rid'],
    ));
    $this->assertSame(0, $code);
    $second = json_decode(trim($stdout), TRUE)['task'];
    $this->assertSame($first['rid'], $second['rid']);
    $this->assertGreaterThan($first['nid'], $second['nid']);
  }

  /**
   * serve.php answers the queue and task routes through the page callbacks.
   */
  public function testServe() {
    $secret = hosting_taskd_generate_secret();
    $url = $this->receiver();
    $nids = array();
    foreach (array('verify', 'backup') as $type) {
      list($code, $stdout) = $this->enqueue(array(
        'HOSTING_TASKD_URL' => $url,
        'HOSTING_TASKD_SECRET' => $secret,
        'HOSTING_TASKD_TASK_TYPE' => $type,
      ));
      $this->assertSame(0, $code);
      $nids[] = json_decode(trim($stdout), TRUE)['task']['nid'];
    }

    $server = new TestServer(__DIR__ . '/serve.php', array(
      'HOSTING_TASKD_DB' => $this->file,
      'HOSTING_TASKD_SECRET' => $secret,
    ));

    $queue = $this->signedGet($server->baseUrl, 'queue', $secret);
    $this->assertSame(200, (int) $queue->code);
    $this->assertSame('application/json', $queue->headers['content-type']);
    $data = json_decode($queue->data, TRUE);
    $this->assertSame($nids, array_column($data['tasks'], 'nid'));

    $task = $this->signedGet($server->baseUrl, 'task/' . $nids[1], $secret);
    $this->assertSame(200, (int) $task->code);
    $data = json_decode($task->data, TRUE);
    $this->assertSame($nids[1], $data['nid']);
    $this->assertSame('backup', $data['type']);
    $this->assertArrayHasKey('delta', $data);

    $missing = $this->signedGet($server->baseUrl, 'task/' . ($nids[1] + 100), $secret);
    $this->assertSame(404, (int) $missing->code);
    $this->assertSame('not_found', json_decode($missing->data, TRUE)['error']);

    $unsigned = drupal_http_request($server->baseUrl . '/hosting/taskd/queue', array('timeout' => 5));
    $this->assertSame(401, (int) $unsigned->code);
    $this->assertSame('unauthorized', json_decode($unsigned->data, TRUE)['error']);

    $other = $this->signedGet($server->baseUrl, 'queue', hosting_taskd_generate_secret());
    $this->assertSame(401, (int) $other->code);

    $nowhere = drupal_http_request($server->baseUrl . '/elsewhere', array('timeout' => 5));
    $this->assertSame(404, (int) $nowhere->code);

    $server->stop();
    $this->assertSame('', $server->stdout(), 'serve.php prints nothing but its answers.');
  }

  /**
   * serve.php without a secret refuses every request.
   */
  public function testServeWithoutSecret() {
    $server = new TestServer(__DIR__ . '/serve.php', array(
      'HOSTING_TASKD_DB' => $this->file,
      'HOSTING_TASKD_SECRET' => '',
    ));
    $response = $this->signedGet($server->baseUrl, 'queue', hosting_taskd_generate_secret());
    $this->assertSame(401, (int) $response->code);
    $server->stop();
  }

}
