<?php

/**
 * @file
 * The webhook sent when a task is queued.
 */

/**
 * Tests collection in the hooks and sending at shutdown, to a real server.
 */
class WebhookTest extends HostingTaskdTestCase {

  /**
   * The site the tasks act on.
   *
   * @var int
   */
  protected $site;

  /**
   * Sets up the task tables.
   */
  protected function setUp(): void {
    parent::setUp();
    $this->createDatabase();
    $this->site = shim_aegir_create_node('site', 'a.example.com');
  }

  /**
   * Returns the POSTs the receiver got for /v1/tasks.
   */
  protected function webhooks() {
    return array_values(array_filter($this->receivedRequests(), function ($request) {
      return $request['method'] === 'POST' && preg_match('@/v1/tasks$@', $request['path']);
    }));
  }

  /**
   * A queued task is announced once, after the request, with a valid body.
   */
  public function testQueuedTaskIsSentAtShutdown() {
    $secret = $this->configureService();
    $before = time();
    $task = shim_aegir_add_task($this->site, 'verify');

    $this->assertSame(array($task->nid), hosting_taskd_pending_nids());
    $this->assertEmpty($GLOBALS['shim_http_log'], 'Nothing is sent from inside node_save().');
    $this->assertEmpty($this->receivedRequests());

    $this->endRequest();
    $after = time();

    $webhooks = $this->webhooks();
    $this->assertCount(1, $webhooks);
    $webhook = $webhooks[0];
    $this->assertSame('/v1/tasks', $webhook['path']);
    $this->assertSame('application/json', $webhook['headers']['content-type']);

    $body = json_decode($webhook['body'], TRUE);
    $this->assertSame(array(
      'nid' => $task->nid,
      'rid' => $this->site,
      'type' => 'verify',
      'vid' => $task->vid,
      'changed' => $task->changed,
    ), $body);
    $this->assertDoesNotMatchRegularExpression('/"(nid|rid|vid|changed)":"/', $webhook['body']);

    $id = $webhook['headers']['webhook-id'];
    $timestamp = $webhook['headers']['webhook-timestamp'];
    $this->assertMatchesRegularExpression('/^msg_[0-9a-f]{16,}$/', $id);
    $this->assertMatchesRegularExpression('/^[0-9]+$/', $timestamp);
    $this->assertGreaterThanOrEqual($before, (int) $timestamp);
    $this->assertLessThanOrEqual($after, (int) $timestamp);
    $this->assertSame(self::referenceSignature($secret, $id, $timestamp, $webhook['body']), $webhook['headers']['webhook-signature']);

    $this->assertSame(0, $webhook['row_status'], 'The task row was committed when the webhook arrived.');
    $this->assertSame(array(), shim_watchdog_entries('hosting_taskd'));
    $this->assertSame(array(), hosting_taskd_pending_nids());
  }

  /**
   * A task without a rid (hosting_task.rid 0) is announced without one.
   */
  public function testTaskWithoutRidIsSentWithoutRid() {
    $this->configureService();
    $task = shim_aegir_add_task(0, 'verify');
    $this->endRequest();

    $webhooks = $this->webhooks();
    $this->assertCount(1, $webhooks);
    $body = json_decode($webhooks[0]['body'], TRUE);
    $this->assertSame(array('nid', 'type', 'vid', 'changed'), array_keys($body));
    $this->assertSame($task->nid, $body['nid']);
  }

  /**
   * Every webhook gets its own id.
   */
  public function testWebhookIdsAreUnique() {
    $this->configureService();
    shim_aegir_add_task($this->site, 'verify');
    shim_aegir_add_task($this->site, 'backup');
    shim_aegir_add_task($this->site, 'login-reset');
    $this->endRequest();
    $ids = array();
    foreach ($this->webhooks() as $webhook) {
      $ids[] = $webhook['headers']['webhook-id'];
    }
    $this->assertCount(3, $ids);
    $this->assertSame($ids, array_values(array_unique($ids)));
  }

  /**
   * One webhook per task per request, however many hooks fire for it.
   */
  public function testOneWebhookPerTask() {
    $this->configureService();
    $first = shim_aegir_add_task($this->site, 'verify');
    $second = shim_aegir_add_task($this->site, 'backup');
    // The same tasks seen again by every hook, as other modules saving them
    // would cause.
    hosting_taskd_hosting_task_update_status($first, HOSTING_TASK_QUEUED);
    hosting_taskd_node_insert($first);
    hosting_taskd_node_update($first);
    hosting_taskd_node_update($second);
    $this->assertSame(array($first->nid, $second->nid), hosting_taskd_pending_nids());
    $state = hosting_taskd_pending_state();
    $this->assertSame(1, $state['registrations'], 'One shutdown function for the whole request.');
    $this->assertSame(array(), drupal_register_shutdown_function(), 'None in Drupal\'s list, which may already have run.');

    $this->endRequest();
    $nids = array();
    foreach ($this->webhooks() as $webhook) {
      $nids[] = json_decode($webhook['body'], TRUE)['nid'];
    }
    $this->assertSame(array($first->nid, $second->nid), $nids);

    // Seen again later in the same request: already announced.
    hosting_taskd_node_update($first);
    $this->endRequest();
    $this->assertCount(2, $this->webhooks());
  }

  /**
   * Either hook alone is enough to send the webhook.
   */
  public function testEachHookCollects() {
    $this->configureService();
    foreach (array('hosting_task_update_status', 'node_insert', 'node_update') as $hook) {
      hosting_taskd_pending_state(TRUE);
      $GLOBALS['shim_modules'] = array('hosting', 'hosting_task');
      $task = shim_aegir_add_task($this->site, 'verify');
      $this->assertSame(array(), hosting_taskd_pending_nids(), 'Module hooks not called.');
      $GLOBALS['shim_modules'][] = 'hosting_taskd';
      if ($hook == 'hosting_task_update_status') {
        hosting_taskd_hosting_task_update_status($task, $task->task_status);
      }
      else {
        call_user_func('hosting_taskd_' . $hook, $task);
      }
      $this->assertSame(array($task->nid), hosting_taskd_pending_nids(), $hook);
    }
  }

  /**
   * Tasks that are not queued, and other nodes, are not announced.
   */
  public function testOnlyQueuedTasksAreSent() {
    $this->configureService();
    shim_aegir_add_task($this->site, 'verify', HOSTING_TASK_SUCCESS);
    shim_aegir_add_task($this->site, 'verify', HOSTING_TASK_PROCESSING);
    $queued = shim_aegir_add_task($this->site, 'backup');
    $this->assertSame(array($queued->nid), hosting_taskd_pending_nids());

    // A node of another type that happens to carry a task_status.
    $site = (object) array('nid' => $this->site, 'type' => 'site', 'task_status' => 0);
    hosting_taskd_node_update($site);
    hosting_taskd_hosting_task_update_status($queued, HOSTING_TASK_SUCCESS);
    hosting_taskd_hosting_task_update_status((object) array('nid' => $this->site), NULL);
    $this->assertSame(array($queued->nid), hosting_taskd_pending_nids());

    $this->endRequest();
    $webhooks = $this->webhooks();
    $this->assertCount(1, $webhooks);
    $this->assertSame($queued->nid, json_decode($webhooks[0]['body'], TRUE)['nid']);
  }

  /**
   * A task that is no longer queued at shutdown is not announced.
   */
  public function testTaskStartedInSameRequestIsNotSent() {
    $this->configureService();
    $task = shim_aegir_add_task($this->site, 'verify');
    shim_aegir_set_status($task->nid, HOSTING_TASK_PROCESSING);
    $this->endRequest();
    $this->assertSame(array(), $this->webhooks());
    $this->assertSame(array(), $GLOBALS['shim_http_log']);
  }

  /**
   * A re-queued nid (new revision, older 3.x retry) is announced with the
   * new revision.
   */
  public function testRequeuedNidIsSent() {
    $this->configureService();
    $task = shim_aegir_add_task($this->site, 'verify', HOSTING_TASK_ERROR);
    $this->assertSame(array(), hosting_taskd_pending_nids());
    $requeued = shim_aegir_set_status($task->nid, HOSTING_TASK_QUEUED);
    $this->endRequest();
    $webhooks = $this->webhooks();
    $this->assertCount(1, $webhooks);
    $body = json_decode($webhooks[0]['body'], TRUE);
    $this->assertSame($task->nid, $body['nid']);
    $this->assertSame($requeued->vid, $body['vid']);
    $this->assertNotSame($task->vid, $body['vid']);
  }

  /**
   * A task whose save was rolled back is not announced.
   */
  public function testRolledBackTaskIsNotSent() {
    $this->configureService();
    $pdo = shim_db();
    $pdo->beginTransaction();
    $task = shim_aegir_add_task($this->site, 'verify');
    $pdo->rollBack();
    $this->assertSame(array($task->nid), hosting_taskd_pending_nids());
    $this->endRequest();
    $this->assertSame(array(), $this->webhooks());
    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertSame(WATCHDOG_WARNING, $entries[0]['severity']);
  }

  /**
   * A connection failure is logged, without the secret, and not thrown.
   */
  public function testConnectionFailureIsLogged() {
    $secret = hosting_taskd_generate_secret();
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    variable_set('hosting_taskd_secret', $secret);
    $task = shim_aegir_add_task($this->site, 'verify');
    $this->endRequest();

    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertSame(WATCHDOG_ERROR, $entries[0]['severity']);
    $this->assertStringContainsString('task ' . $task->nid, $entries[0]['text']);
    $this->assertSame(array(), shim_watchdog_entries('php'), 'No exception reached the shutdown handler.');
    $this->assertSecretNotLogged($secret);
  }

  /**
   * An error answer from the service is logged with its status.
   */
  public function testErrorAnswerIsLogged() {
    $secret = $this->configureService('/status/500');
    $task = shim_aegir_add_task($this->site, 'verify');
    $this->endRequest();

    $this->assertCount(1, $this->receivedRequests());
    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertSame(WATCHDOG_ERROR, $entries[0]['severity']);
    $this->assertStringContainsString('HTTP 500', $entries[0]['text']);
    $this->assertStringContainsString('task ' . $task->nid, $entries[0]['text']);
    $this->assertSecretNotLogged($secret);
  }

  /**
   * The timeout setting bounds how long the request waits for the service.
   */
  public function testTimeout() {
    $secret = $this->configureService();
    // A receiver of its own: the shared one serves one request at a time and
    // would still be asleep during the next test.
    $log = tempnam(sys_get_temp_dir(), 'taskd-log');
    $slow = new TestServer(__DIR__ . '/receiver.php', array('RECEIVER_LOG' => $log));
    variable_set('hosting_taskd_url', $slow->baseUrl . '/slow');
    variable_set('hosting_taskd_timeout', 0.5);
    shim_aegir_add_task($this->site, 'verify');
    $started = microtime(TRUE);
    $this->endRequest();
    $this->assertLessThan(2.5, microtime(TRUE) - $started);
    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertStringContainsString('timed out', $entries[0]['text']);
    $this->assertSecretNotLogged($secret);
    $this->assertCount(1, file($log, FILE_SKIP_EMPTY_LINES), 'The request reached the slow receiver.');
    $slow->stop();
    unlink($log);
  }

  /**
   * Without a URL or a secret nothing is sent, and that is logged.
   */
  public function testNotConfigured() {
    $this->receiver();
    foreach (array('hosting_taskd_url', 'hosting_taskd_secret') as $missing) {
      $GLOBALS['shim_watchdog'] = array();
      $this->configureService();
      variable_del($missing);
      shim_aegir_add_task($this->site, 'verify');
      $this->endRequest();
      $entries = shim_watchdog_entries('hosting_taskd');
      $this->assertCount(1, $entries, $missing);
      $this->assertSame(WATCHDOG_ERROR, $entries[0]['severity'], $missing);
      $this->assertStringContainsString('not configured', $entries[0]['text'], $missing);
    }
    $this->assertSame(array(), $this->receivedRequests());
    $this->assertSame(array(), $GLOBALS['shim_http_log']);
  }

  /**
   * An exception while sending is logged, not thrown.
   */
  public function testExceptionWhileSendingIsLogged() {
    $this->configureService();
    $task = shim_aegir_add_task($this->site, 'verify');
    shim_db()->exec('DROP TABLE hosting_task');
    $this->endRequest();
    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertSame(WATCHDOG_ERROR, $entries[0]['severity']);
    $this->assertStringContainsString('task ' . $task->nid, $entries[0]['text']);
    $this->assertSame(array(), shim_watchdog_entries('php'));
  }

  /**
   * drupal_static_reset() in the middle of a request loses no webhook.
   */
  public function testStaticResetKeepsPendingTasks() {
    $this->configureService();
    $task = shim_aegir_add_task($this->site, 'verify');
    drupal_static_reset();
    $this->assertSame(array($task->nid), hosting_taskd_pending_nids());
    $this->endRequest();
    $this->assertCount(1, $this->webhooks());
  }

  /**
   * A failed connection writes no variable (core's drupal_http_request() does).
   */
  public function testConnectionFailureWritesNoVariable() {
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    shim_aegir_add_task($this->site, 'verify');
    $GLOBALS['shim_variable_writes'] = array();
    $this->endRequest();
    $this->assertCount(1, shim_watchdog_entries('hosting_taskd'), 'The failure is logged.');
    $this->assertSame(array(), $GLOBALS['shim_variable_writes']);
    $this->assertNull(variable_get('drupal_http_request_fails'));
  }

  /**
   * The first webhook that gets no answer stops the others of the request.
   */
  public function testFirstNetworkFailureStopsSending() {
    $listener = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
    $name = stream_socket_get_name($listener, FALSE);
    // Accepts connections (the kernel's backlog) and never answers.
    variable_set('hosting_taskd_url', 'http://' . $name);
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    variable_set('hosting_taskd_timeout', 0.5);
    $nids = array();
    foreach (array('verify', 'backup', 'login-reset') as $type) {
      $nids[] = shim_aegir_add_task($this->site, $type)->nid;
    }
    $started = microtime(TRUE);
    $this->endRequest();
    $elapsed = microtime(TRUE) - $started;
    $this->assertLessThan(0.9, $elapsed, 'One timeout for the whole request, not one per task.');
    $this->assertGreaterThanOrEqual(0.45, $elapsed);

    $accepted = self::countConnections($listener);
    $this->assertSame(1, $accepted, 'Only the first webhook was tried.');

    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(2, $entries);
    $this->assertStringContainsString('timed out', $entries[0]['text']);
    $this->assertStringContainsString($nids[1] . ', ' . $nids[2], $entries[1]['text']);
    $this->assertStringContainsString('reconciler', $entries[1]['text']);
  }

  /**
   * A refused connection stops at once too.
   */
  public function testRefusedConnectionStopsSending() {
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    shim_aegir_add_task($this->site, 'verify');
    shim_aegir_add_task($this->site, 'backup');
    $this->endRequest();
    $state = hosting_taskd_pending_state();
    $this->assertCount(1, $state['results'], 'The second task was not tried.');
    $this->assertSame('the service did not answer', $state['stopped']);
  }

  /**
   * An error answer (not a network failure) does not stop the others.
   */
  public function testErrorAnswerDoesNotStopSending() {
    $this->configureService('/status/500');
    shim_aegir_add_task($this->site, 'verify');
    shim_aegir_add_task($this->site, 'backup');
    $this->endRequest();
    $this->assertCount(2, $this->receivedRequests());
  }

  /**
   * A task an alter hook of hosting's query holds back is not announced.
   */
  public function testHeldBackTaskIsNotSent() {
    $this->configureService();
    $GLOBALS['shim_modules'][] = 'taskd_test';
    $GLOBALS['taskd_test'] = array('hold_back' => array('backup'));
    shim_aegir_add_task($this->site, 'backup');
    $verify = shim_aegir_add_task($this->site, 'verify');
    $this->endRequest();
    $webhooks = $this->webhooks();
    $this->assertCount(1, $webhooks);
    $this->assertSame($verify->nid, json_decode($webhooks[0]['body'], TRUE)['nid']);
  }

  /**
   * Asserts that no log entry contains the secret or its key.
   */
  protected function assertSecretNotLogged($secret) {
    $text = $this->logText();
    $this->assertNotSame('', $text);
    $this->assertStringNotContainsString($secret, $text);
    $this->assertStringNotContainsString(substr($secret, strlen('whsec_')), $text);
  }

}
