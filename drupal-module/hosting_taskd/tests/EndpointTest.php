<?php

/**
 * @file
 * The queue and task endpoints, through the module's hook_menu() items.
 */

/**
 * Tests hosting/taskd/queue and hosting/taskd/task/%.
 */
class EndpointTest extends HostingTaskdTestCase {

  /**
   * The secret the module is configured with.
   *
   * @var string
   */
  protected $secret;

  /**
   * Fixture tasks by name: nid, live vid, rid, type, live status, changed.
   *
   * @var array
   */
  protected $tasks = array();

  /**
   * Builds task tables with tasks in every state.
   */
  protected function setUp(): void {
    parent::setUp();
    $this->createDatabase();
    $this->secret = hosting_taskd_generate_secret();
    variable_set('hosting_taskd_secret', $this->secret);

    $site = shim_aegir_create_node('site', 'a.example.com', 100);
    $other = shim_aegir_create_node('site', 'b.example.com', 100);
    $platform = shim_aegir_create_node('platform', 'drupal-7', 100);

    $this->addTask('queued', $site, 'verify', 1000);
    $this->addTask('processing', $other, 'backup', 900);
    $this->setStatus('processing', HOSTING_TASK_PROCESSING, 900, 950);
    $this->addTask('done', $site, 'backup', 800);
    $this->setStatus('done', HOSTING_TASK_SUCCESS, 800, 810, 5);
    // Queued once, and that old revision keeps status 0; its live revision
    // has finished.
    $this->addTask('old_revision_queued', $other, 'verify', 700);
    $this->setStatus('old_revision_queued', HOSTING_TASK_WARNING, 1100, 1050, 30);
    // Finished once, then re-queued under the same nid (older 3.x retry).
    $this->addTask('requeued', $platform, 'verify', 600);
    $this->setStatus('requeued', HOSTING_TASK_ERROR, 600, 610, 2);
    $this->addTask('same_changed_later_nid', $site, 'login-reset', 1000);
    $this->setStatus('requeued', HOSTING_TASK_QUEUED, 1000);
    $this->addTask('oldest', $platform, 'migrate', 500);
  }

  /**
   * Queues a fixture task and remembers what its live row should be.
   */
  protected function addTask($name, $rid, $type, $changed) {
    $task = shim_aegir_add_task($rid, $type, HOSTING_TASK_QUEUED, $changed);
    $this->tasks[$name] = array(
      'nid' => $task->nid,
      'vid' => $task->vid,
      'rid' => $rid,
      'type' => $type,
      'status' => HOSTING_TASK_QUEUED,
      'changed' => $changed,
      'executed' => NULL,
      'delta' => NULL,
    );
  }

  /**
   * Gives a fixture task a new live revision.
   */
  protected function setStatus($name, $status, $changed, $executed = NULL, $delta = NULL) {
    $task = shim_aegir_set_status($this->tasks[$name]['nid'], $status, $changed, $executed, $delta);
    $this->tasks[$name]['vid'] = $task->vid;
    $this->tasks[$name]['status'] = $status;
    $this->tasks[$name]['changed'] = $changed;
    $this->tasks[$name]['executed'] = $executed;
    $this->tasks[$name]['delta'] = $delta;
  }

  /**
   * Requests a path as the service would.
   *
   * @param string $path
   *   The Drupal path.
   * @param string|null $route
   *   The route string to sign; NULL sends no signature headers.
   * @param string|null $secret
   *   The secret to sign with; the configured one by default.
   * @param int|null $timestamp
   *   The signed timestamp; now by default.
   * @param string|null $id
   *   The webhook-id; a new one by default.
   *
   * @return array
   *   status (the Status header), type (Content-Type), raw body and decoded
   *   JSON.
   */
  protected function request($path, $route = NULL, $secret = NULL, $timestamp = NULL, $id = NULL) {
    drupal_static_reset('drupal_http_headers');
    drupal_static_reset('drupal_page_is_cacheable');
    foreach (array('HTTP_WEBHOOK_ID', 'HTTP_WEBHOOK_TIMESTAMP', 'HTTP_WEBHOOK_SIGNATURE') as $key) {
      unset($_SERVER[$key]);
    }
    if ($route !== NULL) {
      $timestamp = isset($timestamp) ? $timestamp : time();
      $id = isset($id) ? $id : 'svc_' . bin2hex(random_bytes(4));
      $_SERVER['HTTP_WEBHOOK_ID'] = $id;
      $_SERVER['HTTP_WEBHOOK_TIMESTAMP'] = (string) $timestamp;
      $_SERVER['HTTP_WEBHOOK_SIGNATURE'] = self::referenceSignature(isset($secret) ? $secret : $this->secret, $id, $timestamp, $route);
    }
    ob_start();
    $result = shim_menu_execute($path, hosting_taskd_menu());
    $body = ob_get_clean();
    $this->assertNull($result, 'The page callback prints its answer and returns nothing for Drupal to render.');
    return array(
      'status' => drupal_get_http_header('Status'),
      'type' => drupal_get_http_header('Content-Type'),
      'raw' => $body,
      'json' => json_decode($body, TRUE),
    );
  }

  /**
   * Computes the expected queue listing from the fixtures.
   */
  protected function expectedQueue() {
    $expected = array();
    foreach ($this->tasks as $task) {
      if (in_array($task['status'], array(HOSTING_TASK_QUEUED, HOSTING_TASK_PROCESSING), TRUE)) {
        unset($task['delta']);
        $expected[] = $task;
      }
    }
    usort($expected, function ($a, $b) {
      return $a['changed'] == $b['changed'] ? $a['nid'] - $b['nid'] : $a['changed'] - $b['changed'];
    });
    return $expected;
  }

  /**
   * The queue lists live queued and processing tasks, oldest first.
   */
  public function testQueueListing() {
    $response = $this->request('hosting/taskd/queue', 'queue');
    $this->assertSame('200 OK', $response['status']);
    $this->assertSame('application/json', $response['type']);
    $this->assertSame(array('tasks', 'dispatch', 'queues'), array_keys($response['json']));

    $expected = $this->expectedQueue();
    $this->assertSame($expected, $response['json']['tasks']);

    $listed = array_column($response['json']['tasks'], 'nid');
    $this->assertNotContains($this->tasks['old_revision_queued']['nid'], $listed, 'An old queued revision does not make a task queued.');
    $this->assertNotContains($this->tasks['done']['nid'], $listed);
    $this->assertContains($this->tasks['processing']['nid'], $listed);
    $this->assertContains($this->tasks['requeued']['nid'], $listed);
  }

  /**
   * Ties on changed are broken by nid, not by revision or insertion order.
   */
  public function testQueueOrderTieBreak() {
    $response = $this->request('hosting/taskd/queue', 'queue');
    $listed = array_column($response['json']['tasks'], 'nid');
    $this->assertSame($this->tasks['oldest']['nid'], $listed[0]);
    $same_changed = array_values(array_filter($response['json']['tasks'], function ($task) {
      return $task['changed'] == 1000;
    }));
    $nids = array_column($same_changed, 'nid');
    $sorted = $nids;
    sort($sorted);
    $this->assertCount(3, $nids);
    $this->assertSame($sorted, $nids);
    // The re-queued task has the newest revision of the three, so ordering by
    // vid would have put it last.
    $vids = array_column($same_changed, 'vid');
    $this->assertNotSame(max($vids), end($vids));
  }

  /**
   * Integers are JSON numbers even though the database returns strings.
   */
  public function testIntegersAreNumbers() {
    $response = $this->request('hosting/taskd/queue', 'queue');
    $this->assertNotEmpty($response['json']['tasks']);
    foreach ($response['json']['tasks'] as $task) {
      foreach (array('nid', 'vid', 'rid', 'status', 'changed') as $key) {
        $this->assertIsInt($task[$key], $key);
      }
      $this->assertIsString($task['type']);
    }
    $this->assertDoesNotMatchRegularExpression('/"(nid|vid|rid|status|changed)":"/', $response['raw']);

    $processing = $this->request('hosting/taskd/task/' . $this->tasks['processing']['nid'], 'task/' . $this->tasks['processing']['nid']);
    $this->assertIsInt($processing['json']['executed']);
  }

  /**
   * One task is returned with its delta, whatever its status.
   */
  public function testTaskLookup() {
    foreach ($this->tasks as $name => $task) {
      $response = $this->request('hosting/taskd/task/' . $task['nid'], 'task/' . $task['nid']);
      $this->assertSame('200 OK', $response['status'], $name);
      $this->assertSame('application/json', $response['type'], $name);
      $this->assertSame($task, $response['json'], $name);
    }
    $old = $this->request('hosting/taskd/task/' . $this->tasks['old_revision_queued']['nid'], 'task/' . $this->tasks['old_revision_queued']['nid']);
    $this->assertSame(HOSTING_TASK_WARNING, $old['json']['status'], 'The live revision is reported, not the queued one.');
  }

  /**
   * Unknown or malformed task ids answer 404 in JSON.
   */
  public function testTaskNotFound() {
    $max = max(array_column($this->tasks, 'nid'));
    $paths = array(
      'task/' . ($max + 1),
      'task/0',
      'task/abc',
      'task/-1',
      // A site node exists with nid 1, but it is not a task.
      'task/1',
      'task/' . $this->tasks['queued']['nid'] . '/extra',
    );
    foreach ($paths as $route) {
      $response = $this->request('hosting/taskd/' . $route, $route);
      $this->assertSame('404 Not Found', $response['status'], $route);
      $this->assertSame('application/json', $response['type'], $route);
      $this->assertSame('not_found', $response['json']['error'], $route);
    }
    $response = $this->request('hosting/taskd/queue/extra', 'queue/extra');
    $this->assertSame('404 Not Found', $response['status']);
  }

  /**
   * Requests that are not signed with the secret answer 401 and show nothing.
   */
  public function testUnsignedRequestsAreRefused() {
    $nid = $this->tasks['queued']['nid'];
    // Ten seconds past the 300 s window each way, so that the clock ticking
    // while the cases run cannot bring a timestamp back inside it.
    $cases = array(
      'no signature' => array('hosting/taskd/queue', NULL, NULL, NULL),
      'other secret' => array('hosting/taskd/queue', 'queue', hosting_taskd_generate_secret(), NULL),
      'stale' => array('hosting/taskd/queue', 'queue', NULL, time() - 310),
      'future' => array('hosting/taskd/queue', 'queue', NULL, time() + 310),
      'signed for another route' => array('hosting/taskd/queue', 'task/' . $nid, NULL, NULL),
      'task unsigned' => array('hosting/taskd/task/' . $nid, NULL, NULL, NULL),
      'task signed for another nid' => array('hosting/taskd/task/' . $nid, 'task/' . ($nid + 1), NULL, NULL),
      'task signed as queue' => array('hosting/taskd/task/' . $nid, 'queue', NULL, NULL),
    );
    foreach ($cases as $label => $case) {
      $response = $this->request($case[0], $case[1], $case[2], $case[3]);
      $this->assertSame('401 Unauthorized', $response['status'], $label);
      $this->assertSame('unauthorized', $response['json']['error'], $label);
      $this->assertArrayNotHasKey('tasks', $response['json'], $label);
      $this->assertArrayNotHasKey('nid', $response['json'], $label);
    }
  }

  /**
   * With no secret configured every request answers 401.
   */
  public function testNoSecretConfigured() {
    $signing_secret = $this->secret;
    variable_del('hosting_taskd_secret');
    $response = $this->request('hosting/taskd/queue', 'queue', $signing_secret);
    $this->assertSame('401 Unauthorized', $response['status']);
    variable_set('hosting_taskd_secret', '');
    $response = $this->request('hosting/taskd/task/' . $this->tasks['queued']['nid'], 'task/' . $this->tasks['queued']['nid'], $signing_secret);
    $this->assertSame('401 Unauthorized', $response['status']);
  }

  /**
   * Answers are never stored in Drupal's page cache.
   */
  public function testAnswersAreNotCached() {
    foreach (array(array('hosting/taskd/queue', 'queue'), array('hosting/taskd/queue', NULL)) as $case) {
      $response = $this->request($case[0], $case[1]);
      $this->assertNotNull($response['status']);
      $this->assertFalse(drupal_page_is_cacheable());
      $this->assertSame('no-store', drupal_get_http_header('Cache-Control'));
    }
  }

  /**
   * A signed request replayed within the window is answered as a duplicate.
   */
  public function testReplayIsRefused() {
    $nid = $this->tasks['queued']['nid'];
    foreach (array('queue' => 'hosting/taskd/queue', 'task/' . $nid => 'hosting/taskd/task/' . $nid) as $route => $path) {
      $id = 'svc_replay_' . md5($route);
      $first = $this->request($path, $route, NULL, NULL, $id);
      $this->assertSame('200 OK', $first['status'], $route);
      $this->assertArrayNotHasKey('duplicate', $first['json'], $route);
      foreach (array(1, 2) as $again) {
        $replay = $this->request($path, $route, NULL, NULL, $id);
        $this->assertSame('200 OK', $replay['status'], $route);
        $this->assertSame(array('duplicate' => TRUE), $replay['json'], $route . ': nothing of the answer is repeated');
      }
      // A new id is a new request.
      $this->assertArrayNotHasKey('duplicate', $this->request($path, $route)['json'], $route);
    }
  }

  /**
   * An unsigned request does not use up a webhook-id.
   */
  public function testBadSignatureDoesNotRecordTheId() {
    $bad = $this->request('hosting/taskd/queue', 'queue', hosting_taskd_generate_secret(), NULL, 'svc_same');
    $this->assertSame('401 Unauthorized', $bad['status']);
    $good = $this->request('hosting/taskd/queue', 'queue', NULL, NULL, 'svc_same');
    $this->assertArrayHasKey('tasks', $good['json']);
  }

  /**
   * Seen ids are kept ten minutes, then forgotten.
   */
  public function testSeenIdsExpire() {
    // The request reads the clock itself, so bracket it: a second may tick
    // between its reading and ours.
    $before = time();
    $this->request('hosting/taskd/queue', 'queue', NULL, NULL, 'svc_old');
    $after = time();
    $expires = (int) db_query("SELECT expires FROM {hosting_taskd_seen} WHERE webhook_id = 'svc_old'")->fetchField();
    $this->assertGreaterThanOrEqual($before + 600, $expires);
    $this->assertLessThanOrEqual($after + 600, $expires);
    db_query("UPDATE {hosting_taskd_seen} SET expires = :past WHERE webhook_id = 'svc_old'", array(':past' => time() - 1));
    $this->assertArrayHasKey('tasks', $this->request('hosting/taskd/queue', 'queue', NULL, NULL, 'svc_old')['json']);
    $this->assertSame(1, (int) db_query('SELECT COUNT(*) FROM {hosting_taskd_seen}')->fetchField(), 'Expired ids are removed.');
  }

  /**
   * rid 0 names nothing: left out of both endpoints, as of the webhook.
   */
  public function testRidZeroIsLeftOut() {
    $this->addTask('no_rid', 0, 'verify', 1200);
    $nid = $this->tasks['no_rid']['nid'];
    $queue = $this->request('hosting/taskd/queue', 'queue');
    $listed = array_values(array_filter($queue['json']['tasks'], function ($task) use ($nid) {
      return $task['nid'] === $nid;
    }));
    $this->assertCount(1, $listed);
    $this->assertArrayNotHasKey('rid', $listed[0]);
    $task = $this->request('hosting/taskd/task/' . $nid, 'task/' . $nid);
    $this->assertArrayNotHasKey('rid', $task['json']);
    $this->assertSame(array('nid', 'vid', 'type', 'status', 'changed', 'executed', 'delta'), array_keys($task['json']));
  }

  /**
   * hosting's query alter hooks act on the queue listing as on hosting's own.
   */
  public function testQueueHonoursHostingAlterHooks() {
    $GLOBALS['shim_modules'][] = 'taskd_test';
    $GLOBALS['taskd_test'] = array('hold_back' => array('migrate'));
    $listed = array_column($this->request('hosting/taskd/queue', 'queue')['json']['tasks'], 'nid');
    $this->assertNotContains($this->tasks['oldest']['nid'], $listed, 'The held back migrate task is not listed.');
    $this->assertContains($this->tasks['processing']['nid'], $listed, 'A processing task is listed whatever the alter hook says.');

    $GLOBALS['taskd_test'] = array('newest_first' => TRUE);
    $tasks = $this->request('hosting/taskd/queue', 'queue')['json']['tasks'];
    $queued = array_values(array_filter($tasks, function ($task) {
      return $task['status'] === HOSTING_TASK_QUEUED;
    }));
    $expected = array_values(array_filter($this->expectedQueue(), function ($task) {
      return $task['status'] === HOSTING_TASK_QUEUED;
    }));
    $this->assertSame(array_reverse(array_column($expected, 'nid')), array_column($queued, 'nid'), 'Queued tasks in the order the altered query gives.');
  }

  /**
   * The listing gives hosting's other queues as hosting_get_queues() does.
   */
  public function testQueueListsHostingQueues() {
    variable_set('hosting_dispatch_enabled', TRUE);
    variable_set('hosting_queue_cron_last_run', 1764300000);
    variable_set('hosting_queue_backup_enabled', 0);
    // 1,500 sites over a threshold of 100: 15 threads, held to max_threads 12,
    // so the hourly cron queue runs every ceil(3600 / 12) = 300 s.
    $GLOBALS['shim_queues'] = array('cron' => array('total_items' => 1500));
    $response = $this->request('hosting/taskd/queue', 'queue');
    $this->assertTrue($response['json']['dispatch']);
    $this->assertSame(array(
      array('name' => 'cron', 'enabled' => TRUE, 'last' => 1764300000, 'frequency' => 300, 'next' => 1764300300),
      array('name' => 'backup', 'enabled' => FALSE, 'last' => 0, 'frequency' => 14400, 'next' => 14400),
    ), $response['json']['queues']);
    $this->assertNotContains('tasks', array_column($response['json']['queues'], 'name'));

    variable_del('hosting_dispatch_enabled');
    $this->assertFalse($this->request('hosting/taskd/queue', 'queue')['json']['dispatch'], "drush_hosting_dispatch()'s default.");
  }

  /**
   * A database failure answers 500 in JSON and is logged.
   */
  public function testDatabaseError() {
    shim_db()->exec('DROP TABLE hosting_task');
    $response = $this->request('hosting/taskd/queue', 'queue');
    $this->assertSame('500 Internal Server Error', $response['status']);
    $this->assertSame('database_error', $response['json']['error']);
    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertSame(WATCHDOG_ERROR, $entries[0]['severity']);
  }

}
