<?php

/**
 * @file
 * Tasks queued from inside PHP's shutdown, with a cold and a warm cache.
 */

/**
 * Runs tests/hosting-task.php and reads the webhooks the receiver got.
 */
class ShutdownOrderTest extends HostingTaskdTestCase {

  /**
   * A follow-up task queued from hook_hosting_task_update_status() is announced.
   *
   * @dataProvider variableCaches
   */
  public function testFollowUpTaskIsAnnouncedOnce($cache) {
    $secret = $this->configureService();
    $this->createDatabase();
    // Queued earlier, by another request: this process sends nothing for it.
    $GLOBALS['shim_modules'] = array('hosting', 'hosting_task');
    $site = shim_aegir_create_node('site', 'a.example.com');
    $task = shim_aegir_add_task($site, 'verify');

    list($code, $stdout, $stderr) = self::runPhp('hosting-task.php', array((string) $task->nid), array(
      'HOSTING_TASKD_DB' => $this->dbFile,
      'HOSTING_TASKD_URL' => variable_get('hosting_taskd_url'),
      'HOSTING_TASKD_SECRET' => $secret,
      'VARIABLE_CACHE' => $cache,
    ));
    $this->assertSame(0, $code, $stdout . $stderr);
    $this->assertSame('', $stdout . $stderr);

    $this->assertSame(HOSTING_TASK_SUCCESS, hosting_taskd_load_task($task->nid)['status']);
    $follow_up = (int) db_query("SELECT MAX(nid) FROM {hosting_task} WHERE task_type = 'backup'")->fetchField();
    $this->assertGreaterThan($task->nid, $follow_up, 'The follow-up task was queued.');

    $webhooks = array_values(array_filter($this->receivedRequests(), function ($request) {
      return $request['method'] === 'POST' && $request['path'] === '/v1/tasks';
    }));
    $this->assertCount(1, $webhooks, 'One webhook, for the follow-up task.');
    $body = json_decode($webhooks[0]['body'], TRUE);
    $this->assertSame($follow_up, $body['nid']);
    $this->assertSame('backup', $body['type']);
    $this->assertTrue($webhooks[0]['signed']);
    $this->assertSame(HOSTING_TASK_QUEUED, $webhooks[0]['row_status'], 'Sent after the follow-up task was committed.');
  }

  /**
   * The two orders of PHP's shutdown functions.
   */
  public static function variableCaches() {
    return array(
      'cold variable cache: Drupal runner registered at bootstrap' => array('cold'),
      'warm variable cache: Drupal runner registered later' => array('warm'),
    );
  }

}
