<?php

/**
 * @file
 * The hosting-taskd-notify drush command.
 */

/**
 * Tests hosting_taskd_drush_command() and drush_hosting_taskd_notify().
 */
class DrushNotifyTest extends HostingTaskdTestCase {

  /**
   * Fixture tasks by name.
   *
   * @var object[]
   */
  protected $tasks = array();

  /**
   * Sets up two queued tasks, one running and one finished.
   */
  protected function setUp(): void {
    parent::setUp();
    $this->createDatabase();
    $site = shim_aegir_create_node('site', 'a.example.com');
    $this->tasks['newer'] = shim_aegir_add_task($site, 'backup', HOSTING_TASK_QUEUED, 2000);
    $this->tasks['older'] = shim_aegir_add_task($site, 'verify', HOSTING_TASK_QUEUED, 1000);
    $this->tasks['running'] = shim_aegir_add_task($site, 'verify', HOSTING_TASK_PROCESSING, 500);
    $this->tasks['done'] = shim_aegir_add_task($site, 'verify', HOSTING_TASK_SUCCESS, 400);
    // Saving the fixtures collected webhooks for the end of the request;
    // the command is tested on its own.
    drupal_static_reset('hosting_taskd_pending');
    $callbacks = &drupal_register_shutdown_function();
    $callbacks = array();
  }

  /**
   * Runs the command and returns its result and output.
   */
  protected function notify($nid = NULL) {
    ob_start();
    $result = isset($nid) ? drush_hosting_taskd_notify($nid) : drush_hosting_taskd_notify();
    $output = ob_get_clean();
    return array($result, $output);
  }

  /**
   * The command is declared with a callback that exists.
   */
  public function testCommandDefinition() {
    $commands = hosting_taskd_drush_command();
    $this->assertArrayHasKey('hosting-taskd-notify', $commands);
    $command = $commands['hosting-taskd-notify'];
    $this->assertSame(DRUSH_BOOTSTRAP_DRUPAL_FULL, $command['bootstrap']);
    $this->assertArrayHasKey('nid', $command['arguments']);
    $this->assertTrue(function_exists('drush_' . str_replace('-', '_', 'hosting-taskd-notify')));
  }

  /**
   * Without a nid every queued task is sent, oldest first, and reported.
   */
  public function testNotifyAllQueued() {
    $secret = $this->configureService();
    list($result, $output) = $this->notify();
    $this->assertTrue($result);
    $this->assertSame(array(), $GLOBALS['shim_drush_errors']);

    $nids = array();
    foreach ($this->receivedRequests() as $request) {
      $this->assertSame('POST', $request['method']);
      $this->assertSame(self::referenceSignature($secret, $request['headers']['webhook-id'], $request['headers']['webhook-timestamp'], $request['body']), $request['headers']['webhook-signature']);
      $nids[] = json_decode($request['body'], TRUE)['nid'];
    }
    $this->assertSame(array($this->tasks['older']->nid, $this->tasks['newer']->nid), $nids);

    $lines = explode("\n", trim($output));
    $this->assertCount(2, $lines);
    foreach (array('older', 'newer') as $i => $name) {
      $this->assertStringContainsString('Task ' . $this->tasks[$name]->nid . ' (' . $this->tasks[$name]->task_type . '): HTTP 202', $lines[$i]);
      // The service's answer, unescaped.
      $this->assertStringContainsString('{"nid":' . $this->tasks[$name]->nid . ',"state":"queued"}', $lines[$i]);
    }
    $this->assertStringNotContainsString($secret, $output);
  }

  /**
   * With a nid only that task is sent.
   */
  public function testNotifyOne() {
    $this->configureService();
    $nid = $this->tasks['newer']->nid;
    list($result, $output) = $this->notify((string) $nid);
    $this->assertTrue($result);
    $requests = $this->receivedRequests();
    $this->assertCount(1, $requests);
    $this->assertSame($nid, json_decode($requests[0]['body'], TRUE)['nid']);
    $this->assertStringContainsString('Task ' . $nid . ' (backup): HTTP 202', $output);
  }

  /**
   * Unknown, malformed and unqueued nids are refused without sending.
   */
  public function testNotifyRefusals() {
    $this->configureService();
    $cases = array(
      (string) ($this->tasks['done']->nid + 100) => 'HOSTING_TASKD_NO_TASK',
      'abc' => 'HOSTING_TASKD_BAD_NID',
      '0' => 'HOSTING_TASKD_BAD_NID',
      (string) $this->tasks['done']->nid => 'HOSTING_TASKD_NOT_QUEUED',
      (string) $this->tasks['running']->nid => 'HOSTING_TASKD_NOT_QUEUED',
    );
    foreach ($cases as $nid => $error) {
      shim_drush_reset();
      list($result, $output) = $this->notify($nid);
      $this->assertFalse($result, $nid);
      $this->assertSame($error, drush_get_error(), $nid);
    }
    $this->assertSame(array(), $this->receivedRequests());
  }

  /**
   * Failures are printed per task and make the command fail.
   */
  public function testNotifyFailure() {
    $secret = $this->configureService('/status/500');
    list($result, $output) = $this->notify();
    $this->assertFalse($result);
    $this->assertSame('HOSTING_TASKD_NOTIFY_FAILED', drush_get_error());
    $this->assertCount(2, $this->receivedRequests());
    $this->assertStringContainsString('Task ' . $this->tasks['older']->nid . ' (verify): failed: HTTP 500', $output);
    $this->assertStringContainsString('Task ' . $this->tasks['newer']->nid . ' (backup): failed: HTTP 500', $output);
    $this->assertStringNotContainsString($secret, $output);
    $this->assertCount(2, shim_watchdog_entries('hosting_taskd'));
  }

  /**
   * A network error is printed with its message.
   */
  public function testNotifyConnectionError() {
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    list($result, $output) = $this->notify((string) $this->tasks['older']->nid);
    $this->assertFalse($result);
    $this->assertMatchesRegularExpression('/Task \d+ \(verify\): failed: .*refused/i', $output);
  }

  /**
   * With nothing queued the command says so and succeeds.
   */
  public function testNotifyNothingQueued() {
    $this->configureService();
    shim_aegir_set_status($this->tasks['older']->nid, HOSTING_TASK_PROCESSING);
    shim_aegir_set_status($this->tasks['newer']->nid, HOSTING_TASK_SUCCESS);
    list($result, $output) = $this->notify();
    $this->assertTrue($result);
    $this->assertSame("No queued tasks.\n", $output);
    $this->assertSame(array(), $this->receivedRequests());
  }

}
