<?php

/**
 * @file
 * Enable, disable, uninstall and the status report.
 */

/**
 * Tests the hooks in hosting_taskd.install.
 */
class InstallTest extends HostingTaskdTestCase {

  /**
   * Sets a URL and a usable secret, without a receiver.
   */
  protected function configure() {
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
  }

  /**
   * Enabling a configured module switches the cron task queue off.
   */
  public function testEnable() {
    $this->configure();
    variable_set('hosting_queue_tasks_enabled', TRUE);
    hosting_taskd_enable();
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE));
    $this->assertSame(array(), drupal_set_message());
  }

  /**
   * Enabling an unconfigured module leaves the cron queue running, and says so.
   */
  public function testEnableUnconfiguredKeepsCronRunning() {
    foreach (array('no settings' => NULL, 'unusable secret' => 'not-a-secret!') as $case => $secret) {
      shim_reset();
      if ($secret !== NULL) {
        variable_set('hosting_taskd_url', 'http://127.0.0.1:8765');
        variable_set('hosting_taskd_secret', $secret);
      }
      hosting_taskd_enable();
      $this->assertTrue(variable_get('hosting_queue_tasks_enabled', TRUE), $case);
      $messages = drupal_set_message();
      $this->assertCount(1, $messages['warning'], $case);
      $this->assertStringContainsString('keeps running tasks', $messages['warning'][0], $case);
    }
  }

  /**
   * Enabling next to hosting_queued warns about two runners.
   */
  public function testEnableWarnsAboutHostingQueued() {
    $this->configure();
    $GLOBALS['shim_modules'][] = 'hosting_queued';
    hosting_taskd_enable();
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE));
    $messages = drupal_set_message();
    $this->assertCount(1, $messages['warning']);
    $this->assertStringContainsString('hosting_queued', $messages['warning'][0]);
  }

  /**
   * Disabling gives the variable back the value it had before enabling.
   */
  public function testDisableRestoresThePreviousValue() {
    $cases = array(
      'unset' => array(FALSE, NULL),
      'TRUE' => array(TRUE, TRUE),
      '1 from drush vset' => array(TRUE, '1'),
      'FALSE' => array(TRUE, FALSE),
    );
    foreach ($cases as $case => $before) {
      shim_reset();
      $this->configure();
      if ($before[0]) {
        variable_set('hosting_queue_tasks_enabled', $before[1]);
      }
      hosting_taskd_enable();
      $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE), $case);
      hosting_taskd_disable();
      $this->assertSame($before[0], array_key_exists('hosting_queue_tasks_enabled', $GLOBALS['conf']), $case);
      $this->assertSame($before[1], variable_get('hosting_queue_tasks_enabled'), $case);
      $this->assertArrayNotHasKey('hosting_taskd_tasks_queue_before', $GLOBALS['conf'], $case);
    }
    // The cron queue was off before: disabling says nothing runs tasks now.
    $messages = drupal_set_message();
    $this->assertCount(1, $messages['warning']);
    $this->assertStringContainsString('nothing runs queued tasks', $messages['warning'][0]);
  }

  /**
   * Disabling leaves the cron queue off while hosting_queued runs tasks.
   */
  public function testDisableWithHostingQueued() {
    $this->configure();
    variable_set('hosting_queue_tasks_enabled', TRUE);
    hosting_taskd_enable();
    $GLOBALS['shim_modules'][] = 'hosting_queued';
    hosting_taskd_disable();
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE));
    $messages = drupal_set_message();
    $this->assertCount(1, $messages['warning']);
  }

  /**
   * Uninstalling removes the module's variables and nothing else.
   */
  public function testUninstall() {
    variable_set('hosting_taskd_url', 'http://127.0.0.1:8765');
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    variable_set('hosting_taskd_timeout', 3);
    variable_set('hosting_taskd_tasks_queue_before', array('set' => TRUE, 'value' => TRUE));
    variable_set('hosting_queue_tasks_enabled', TRUE);
    hosting_taskd_uninstall();
    $this->assertSame(array('hosting_queue_tasks_enabled' => TRUE), $GLOBALS['conf']);
  }

  /**
   * Only the runtime phase reports anything.
   */
  public function testRequirementsOtherPhases() {
    $this->assertSame(array(), hosting_taskd_requirements('install'));
    $this->assertSame(array(), hosting_taskd_requirements('update'));
  }

  /**
   * Without a URL and secret the report says it is not configured.
   */
  public function testRequirementsNotConfigured() {
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd']['severity']);
    $this->assertSame('Not configured', $requirements['hosting_taskd']['value']);
    $this->assertStringContainsString('Nothing runs queued tasks', $requirements['hosting_taskd']['description']);

    variable_set('hosting_queue_tasks_enabled', TRUE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertStringContainsString('the cron task queue runs queued tasks', $requirements['hosting_taskd']['description']);
    $this->assertArrayNotHasKey('hosting_taskd_cron_queue', $requirements, 'Unconfigured, cron is the runner.');
    $this->assertTrue(variable_get('hosting_queue_tasks_enabled'));
  }

  /**
   * An unusable secret is an error, and the service is not even asked.
   */
  public function testRequirementsUnusableSecret() {
    $this->receiver();
    variable_set('hosting_taskd_url', $this->receiver());
    variable_set('hosting_taskd_secret', 'not-a-secret!');
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd']['severity']);
    $this->assertSame('The shared secret is not usable', $requirements['hosting_taskd']['value']);
    $this->assertSame(array(), $this->receivedRequests());
  }

  /**
   * A service that answers and accepts the signature is reported as working.
   */
  public function testRequirementsServiceAnswers() {
    $secret = $this->configureService();
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(array('hosting_taskd'), array_keys($requirements));
    $this->assertSame(REQUIREMENT_OK, $requirements['hosting_taskd']['severity']);
    $requests = $this->receivedRequests();
    $this->assertCount(2, $requests);
    $this->assertSame('GET', $requests[0]['method']);
    $this->assertSame('/healthz', $requests[0]['path']);
    $this->assertSame('POST', $requests[1]['method']);
    $this->assertSame('/v1/tasks', $requests[1]['path']);
    $this->assertSame('{}', $requests[1]['body'], 'A body the service refuses after checking the signature: nothing is queued.');
    $this->assertTrue($requests[1]['signed']);
    $this->assertStringNotContainsString($secret, print_r($requirements, TRUE));
  }

  /**
   * A service that refuses our signature is an error that says why.
   */
  public function testRequirementsSecretRefused() {
    $this->configureService();
    // The service has another secret than the site.
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd']['severity']);
    $this->assertStringContainsString('refuses the shared secret', $requirements['hosting_taskd']['value']);
    $this->assertStringContainsString('TASKD_SECRET', $requirements['hosting_taskd']['description']);
  }

  /**
   * The check is made once a minute, not on every view of the report.
   */
  public function testRequirementsHealthIsCached() {
    $this->configureService();
    variable_set('hosting_queue_tasks_enabled', FALSE);
    hosting_taskd_requirements('runtime');
    $this->assertCount(2, $this->receivedRequests());
    $again = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_OK, $again['hosting_taskd']['severity']);
    $this->assertCount(2, $this->receivedRequests(), 'The second view asked nothing.');

    // Older than the lifetime: asked again, although the cache entry is there.
    $cached = cache_get('hosting_taskd:health', 'cache');
    $cached->data['checked'] -= HOSTING_TASKD_HEALTH_TTL;
    cache_set('hosting_taskd:health', $cached->data, 'cache');
    hosting_taskd_requirements('runtime');
    $this->assertCount(4, $this->receivedRequests());

    // Other settings: asked again.
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    $down = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $down['hosting_taskd']['severity']);
  }

  /**
   * A service that does not answer, or answers an error, is reported.
   */
  public function testRequirementsServiceDown() {
    $this->configureService('/status/503');
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd']['severity']);
    $this->assertStringContainsString('HTTP 503', $requirements['hosting_taskd']['description']);

    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd']['severity']);
  }

  /**
   * A user name and password in the URL never reach the report.
   */
  public function testRequirementsHideCredentials() {
    $this->configureService();
    $url = str_replace('http://', 'http://aegir:s3cr3t-pass@', variable_get('hosting_taskd_url'));
    variable_set('hosting_taskd_url', $url);
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $text = print_r($requirements, TRUE);
    $this->assertStringNotContainsString('s3cr3t-pass', $text);
    $this->assertStringNotContainsString('aegir:', $text);
    $this->assertStringContainsString(str_replace('aegir:s3cr3t-pass@', '', $url), $text);
    // The credentials are still used: the receiver saw them.
    $requests = $this->receivedRequests();
    $this->assertSame('Basic ' . base64_encode('aegir:s3cr3t-pass'), $requests[0]['headers']['authorization']);
  }

  /**
   * The cron queue found on beside the service is an error, fixed at once.
   */
  public function testRequirementsCronQueueStillOn() {
    $this->configureService();
    variable_set('hosting_queue_tasks_enabled', TRUE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd_cron_queue']['severity']);
    $this->assertStringContainsString('disable hosting_taskd', $requirements['hosting_taskd_cron_queue']['description']);
    $this->assertStringNotContainsString('Re-enable', $requirements['hosting_taskd_cron_queue']['description']);
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled'));
    $this->assertArrayNotHasKey('hosting_taskd_cron_queue', hosting_taskd_requirements('runtime'));
  }

  /**
   * hosting_queued enabled beside the service is an error.
   */
  public function testRequirementsHostingQueued() {
    $this->configureService();
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $GLOBALS['shim_modules'][] = 'hosting_queued';
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_ERROR, $requirements['hosting_taskd_hosting_queued']['severity']);
    $this->assertStringContainsString('dis hosting_queued', $requirements['hosting_taskd_hosting_queued']['description']);
  }

  /**
   * The update creates the table of seen webhook-ids on an installed site.
   */
  public function testUpdateCreatesSeenTable() {
    $this->createDatabase();
    shim_db()->exec('DROP TABLE hosting_taskd_seen');
    $this->assertFalse(db_table_exists('hosting_taskd_seen'));
    hosting_taskd_update_7001();
    $this->assertTrue(db_table_exists('hosting_taskd_seen'));
    hosting_taskd_update_7001();
  }

}
