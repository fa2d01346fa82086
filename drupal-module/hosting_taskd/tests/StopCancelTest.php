<?php

/**
 * @file
 * Stop a processing task from Aegir; a cancelled queued task leaves the
 * service at once.
 */

/**
 * Tests hosting_taskd.stop.inc and the cancel webhook against the receiver.
 */
class StopCancelTest extends HostingTaskdTestCase {

  /**
   * A processing task and a queued one.
   *
   * @var object[]
   */
  protected $tasks = array();

  /**
   * Sets up the tables, a user and the tasks.
   */
  protected function setUp(): void {
    parent::setUp();
    $this->createDatabase();
    $site = shim_aegir_create_node('site', 'a.example.com');
    $GLOBALS['shim_modules'] = array('hosting', 'hosting_task');
    $running = shim_aegir_add_task($site, 'backup');
    $this->tasks['processing'] = shim_aegir_set_status($running->nid, HOSTING_TASK_PROCESSING);
    $this->tasks['queued'] = shim_aegir_add_task($site, 'verify');
    $GLOBALS['shim_modules'][] = 'hosting_taskd';
    $GLOBALS['user'] = (object) array('uid' => 7, 'name' => 'alice');
    unset($_GET['token']);
  }

  /**
   * Removes the token of the test.
   */
  protected function tearDown(): void {
    unset($_GET['token']);
    parent::tearDown();
  }

  /**
   * Requests the Stop path as the user, with or without the CSRF token.
   */
  protected function stop($nid, $token) {
    if ($token) {
      $_GET['token'] = drupal_get_token($GLOBALS['user']->uid);
    }
    else {
      unset($_GET['token']);
    }
    $GLOBALS['shim_goto'] = NULL;
    return shim_menu_execute('hosting/taskd/stop/' . $nid, hosting_taskd_menu());
  }

  /**
   * The service is asked, signed, to stop the task, in the user's name.
   */
  public function testStopSendsASignedRequest() {
    $secret = $this->configureService();
    $GLOBALS['shim_permissions'] = array('administer tasks');
    $nid = $this->tasks['processing']->nid;
    $this->assertNotSame(MENU_ACCESS_DENIED, $this->stop($nid, TRUE));
    $this->assertSame('node/' . $nid, $GLOBALS['shim_goto']);

    $requests = $this->receivedRequests();
    $this->assertCount(1, $requests);
    $this->assertSame('POST', $requests[0]['method']);
    $this->assertSame('/v1/tasks/' . $nid . '/stop', $requests[0]['path']);
    $this->assertSame('{"reason":"stopped by alice"}', $requests[0]['body']);
    $this->assertTrue($requests[0]['signed']);
    $this->assertSame(self::referenceSignature($secret, $requests[0]['headers']['webhook-id'], $requests[0]['headers']['webhook-timestamp'], $requests[0]['body']), $requests[0]['headers']['webhook-signature']);
    $messages = drupal_set_message();
    $this->assertStringContainsString('stopping task ' . $nid, $messages['status'][0]);
  }

  /**
   * Aegir's cancel rules decide, the CSRF token included.
   */
  public function testStopAccess() {
    $this->configureService();
    $nid = $this->tasks['processing']->nid;
    $GLOBALS['shim_permissions'] = array('administer tasks');
    $this->assertSame(MENU_ACCESS_DENIED, $this->stop($nid, FALSE), 'No token.');
    $_GET['token'] = 'forged';
    $this->assertSame(MENU_ACCESS_DENIED, shim_menu_execute('hosting/taskd/stop/' . $nid, hosting_taskd_menu()), 'A bad token.');
    $this->assertSame(MENU_ACCESS_DENIED, $this->stop($this->tasks['queued']->nid, TRUE), 'A queued task is for Aegir\'s own Cancel.');
    $this->assertSame(MENU_ACCESS_DENIED, $this->stop('abc', TRUE));

    $GLOBALS['shim_permissions'] = array('cancel own tasks');
    $this->assertSame(MENU_ACCESS_DENIED, $this->stop($nid, TRUE), 'Without "create backup task".');
    $GLOBALS['shim_permissions'] = array('cancel own tasks', 'create backup task', 'access content');
    $this->assertNotSame(MENU_ACCESS_DENIED, $this->stop($nid, TRUE));
    $this->assertCount(1, $this->receivedRequests(), 'Only the allowed request reached the service.');
  }

  /**
   * The Stop action shows on a processing task's page for those who may.
   */
  public function testStopActionOnTheTaskPage() {
    $node = node_load($this->tasks['processing']->nid);
    $node->content = array();
    hosting_taskd_node_view($node, 'full');
    $this->assertArrayNotHasKey('hosting_taskd_stop', $node->content, 'Not for a user without the permissions.');

    $GLOBALS['shim_permissions'] = array('administer tasks');
    hosting_taskd_node_view($node, 'full');
    $link = $node->content['hosting_taskd_stop']['#markup'];
    $this->assertStringContainsString('/hosting/taskd/stop/' . $node->nid . '?token=' . drupal_get_token(7), $link);

    $queued = node_load($this->tasks['queued']->nid);
    $queued->content = array();
    hosting_taskd_node_view($queued, 'full');
    $this->assertArrayNotHasKey('hosting_taskd_stop', $queued->content);
  }

  /**
   * A queued task cancelled in Aegir is announced with its new status.
   */
  public function testCancelTellsTheService() {
    $secret = $this->configureService();
    $node = node_load($this->tasks['queued']->nid);
    hosting_task_cancel($node);
    $this->endRequest();
    $webhooks = $this->receivedRequests();
    $this->assertCount(1, $webhooks);
    $body = json_decode($webhooks[0]['body'], TRUE);
    $this->assertSame($node->nid, $body['nid']);
    $this->assertSame(HOSTING_TASK_WARNING, $body['status']);
    $this->assertSame($this->tasks['queued']->vid, $body['vid'], 'Cancel changes the revision in place.');
    $this->assertTrue($webhooks[0]['signed']);
    $this->assertSame(HOSTING_TASK_WARNING, $webhooks[0]['row_status'], 'Sent after the cancel was committed.');
  }

  /**
   * A task that starts (processing, a new revision) is no cancel.
   */
  public function testStartIsNotACancel() {
    $this->configureService();
    shim_aegir_set_status($this->tasks['queued']->nid, HOSTING_TASK_PROCESSING);
    $this->endRequest();
    $this->assertSame(array(), $this->receivedRequests());
  }

}
