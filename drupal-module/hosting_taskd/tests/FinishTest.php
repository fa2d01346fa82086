<?php

/**
 * @file
 * POST {base}/task/{nid}/finish, over HTTP through tests/serve.php.
 */

/**
 * Finishes tasks in a SQLite copy of Aegir's tables through the real page.
 */
class FinishTest extends HostingTaskdTestCase {

  /**
   * The shared secret.
   *
   * @var string
   */
  protected $secret;

  /**
   * serve.php under PHP's web server.
   *
   * @var TestServer
   */
  protected $server;

  /**
   * A task that runs: processing, started 100 s ago.
   *
   * @var object
   */
  protected $task;

  /**
   * Sets up the tables, a processing task and the server.
   */
  protected function setUp(): void {
    parent::setUp();
    $this->createDatabase();
    $this->secret = hosting_taskd_generate_secret();
    $site = shim_aegir_create_node('site', 'a.example.com');
    $GLOBALS['shim_modules'] = array('hosting', 'hosting_task');
    $queued = shim_aegir_add_task($site, 'verify');
    $this->task = shim_aegir_set_status($queued->nid, HOSTING_TASK_PROCESSING, NULL, time() - 100);
    hosting_task_log($this->task->vid, 'warning', 'A warning of the run itself.');
    $this->server = new TestServer(__DIR__ . '/serve.php', array(
      'HOSTING_TASKD_DB' => $this->dbFile,
      'HOSTING_TASKD_SECRET' => $this->secret,
    ));
  }

  /**
   * Stops the server.
   */
  protected function tearDown(): void {
    $this->server->stop();
    parent::tearDown();
  }

  /**
   * POSTs a body to a task's finish route, signed like the service signs.
   */
  protected function finish($nid, $body, $secret = NULL, $id = NULL) {
    $body = is_array($body) ? json_encode($body) : $body;
    $id = isset($id) ? $id : 'msg_' . bin2hex(random_bytes(8));
    $timestamp = time();
    $response = drupal_http_request($this->server->baseUrl . '/hosting/taskd/task/' . $nid . '/finish', array(
      'method' => 'POST',
      'data' => $body,
      'timeout' => 5,
      'headers' => array(
        'Content-Type' => 'application/json',
        'webhook-id' => $id,
        'webhook-timestamp' => (string) $timestamp,
        'webhook-signature' => self::referenceSignature(isset($secret) ? $secret : $this->secret, $id, $timestamp, $body),
      ),
    ));
    return array((int) $response->code, json_decode($response->data, TRUE));
  }

  /**
   * The live row of the task, read fresh.
   */
  protected function row() {
    shim_db_connect($this->dbFile);
    return db_query('SELECT t.vid, t.task_status, t.delta FROM {hosting_task} t INNER JOIN {node} n ON n.vid = t.vid WHERE n.nid = :nid', array(':nid' => $this->task->nid))->fetchObject();
  }

  /**
   * The log of a revision, as type => message pairs.
   */
  protected function log($vid) {
    $log = array();
    foreach (db_query('SELECT type, message, error FROM {hosting_task_log} WHERE vid = :vid ORDER BY lid', array(':vid' => $vid)) as $row) {
      $log[] = array($row->type, $row->message, $row->error);
    }
    return $log;
  }

  /**
   * The reason becomes an error entry and Aegir derives the status: error.
   */
  public function testFinishesAProcessingTask() {
    $reason = 'aegir-taskd: drush was killed by SIGTERM after 7200 s (TASKD_TASK_TIMEOUT)';
    list($code, $body) = $this->finish($this->task->nid, array('vid' => $this->task->vid, 'reason' => $reason));
    $this->assertSame(200, $code);
    $this->assertSame(array('nid' => $this->task->nid, 'vid' => $this->task->vid, 'status' => HOSTING_TASK_ERROR), $body);

    $row = $this->row();
    $this->assertSame($this->task->vid, (int) $row->vid, 'The same revision, not a new one.');
    $this->assertSame(HOSTING_TASK_ERROR, (int) $row->task_status, 'hosting_task_parse_log(): an error entry wins over the warning.');
    $this->assertGreaterThanOrEqual(100, (int) $row->delta);
    $this->assertLessThan(110, (int) $row->delta);
    $this->assertSame(array(
      array('warning', 'A warning of the run itself.', ''),
      array('error', $reason, 'AEGIR_TASKD_FINISHED'),
    ), $this->log($this->task->vid));

    // Repeating it is harmless: the same answer, nothing added.
    list($code, $again) = $this->finish($this->task->nid, array('vid' => $this->task->vid, 'reason' => $reason));
    $this->assertSame(200, $code);
    $this->assertSame($body, $again);
    $this->assertCount(2, $this->log($this->task->vid));
  }

  /**
   * Any other revision, or a task not processing, is a conflict.
   */
  public function testVidGuard() {
    list($code, $body) = $this->finish($this->task->nid, array('vid' => $this->task->vid - 1, 'reason' => 'old revision'));
    $this->assertSame(409, $code);
    $this->assertSame(array('error' => 'TASKD_ERR_NOT_PROCESSING', 'status' => HOSTING_TASK_PROCESSING, 'vid' => $this->task->vid), $body);
    $this->assertSame(HOSTING_TASK_PROCESSING, (int) $this->row()->task_status);
    $this->assertCount(1, $this->log($this->task->vid));

    // Ended by hosting-task itself: not ours to finish.
    shim_db_connect($this->dbFile);
    db_query('UPDATE {hosting_task} SET task_status = 1 WHERE vid = :vid', array(':vid' => $this->task->vid));
    list($code, $body) = $this->finish($this->task->nid, array('vid' => $this->task->vid, 'reason' => 'late'));
    $this->assertSame(409, $code);
    $this->assertSame(array('error' => 'TASKD_ERR_NOT_PROCESSING', 'status' => HOSTING_TASK_SUCCESS, 'vid' => $this->task->vid), $body);
    $this->assertCount(1, $this->log($this->task->vid));
  }

  /**
   * Unknown nids, bad bodies, bad signatures and replays change nothing.
   */
  public function testRefusals() {
    $good = array('vid' => $this->task->vid, 'reason' => 'killed');
    $this->assertSame(404, $this->finish($this->task->nid + 100, $good)[0]);
    $this->assertSame(404, $this->finish('abc', $good)[0]);
    $this->assertSame(400, $this->finish($this->task->nid, '{"vid":"1","reason":"x"}')[0]);
    $this->assertSame(400, $this->finish($this->task->nid, array('vid' => $this->task->vid, 'reason' => ''))[0]);
    $this->assertSame('TASKD_ERR_INVALID_JSON', $this->finish($this->task->nid, 'not json')[1]['error']);
    list($code, $body) = $this->finish($this->task->nid, $good, hosting_taskd_generate_secret());
    $this->assertSame(401, $code);
    $this->assertSame('unauthorized', $body['error']);

    $get = drupal_http_request($this->server->baseUrl . '/hosting/taskd/task/' . $this->task->nid . '/finish', array('timeout' => 5));
    $this->assertSame(405, (int) $get->code);
    $this->assertSame(HOSTING_TASK_PROCESSING, (int) $this->row()->task_status);
    $this->assertCount(1, $this->log($this->task->vid));
  }

  /**
   * A replayed webhook-id is answered as a duplicate and does nothing.
   */
  public function testReplayIsRefused() {
    list($code, $body) = $this->finish($this->task->nid, array('vid' => $this->task->vid - 1, 'reason' => 'x'), NULL, 'msg_once');
    $this->assertSame(409, $code);
    // The same id again, now with a body that would finish the task.
    list($code, $body) = $this->finish($this->task->nid, array('vid' => $this->task->vid, 'reason' => 'x'), NULL, 'msg_once');
    $this->assertSame(200, $code);
    $this->assertSame(array('duplicate' => TRUE), $body);
    $this->assertSame(HOSTING_TASK_PROCESSING, (int) $this->row()->task_status);
  }

}
