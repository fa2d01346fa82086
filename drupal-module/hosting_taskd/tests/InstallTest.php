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
   * Enabling switches the cron task queue off.
   */
  public function testEnable() {
    variable_set('hosting_queue_tasks_enabled', TRUE);
    hosting_taskd_enable();
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE));
    $this->assertSame(array(), drupal_set_message());
  }

  /**
   * Enabling next to hosting_queued warns about two runners.
   */
  public function testEnableWarnsAboutHostingQueued() {
    $GLOBALS['shim_modules'][] = 'hosting_queued';
    hosting_taskd_enable();
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE));
    $messages = drupal_set_message();
    $this->assertCount(1, $messages['warning']);
    $this->assertStringContainsString('hosting_queued', $messages['warning'][0]);
  }

  /**
   * Disabling gives the tasks back to the cron queue.
   */
  public function testDisable() {
    hosting_taskd_enable();
    hosting_taskd_disable();
    $this->assertTrue(variable_get('hosting_queue_tasks_enabled'));
  }

  /**
   * Disabling leaves the cron queue off while hosting_queued runs tasks.
   */
  public function testDisableWithHostingQueued() {
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
    $this->assertSame(array(), $GLOBALS['shim_http_log']);
  }

  /**
   * A service that answers /healthz is reported as working.
   */
  public function testRequirementsServiceAnswers() {
    $secret = $this->configureService();
    variable_set('hosting_queue_tasks_enabled', FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(array('hosting_taskd'), array_keys($requirements));
    $this->assertSame(REQUIREMENT_OK, $requirements['hosting_taskd']['severity']);
    $requests = $this->receivedRequests();
    $this->assertCount(1, $requests);
    $this->assertSame('GET', $requests[0]['method']);
    $this->assertSame('/healthz', $requests[0]['path']);
    $this->assertStringNotContainsString($secret, print_r($requirements, TRUE));
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
   * The report warns when the cron queue runs tasks as well.
   */
  public function testRequirementsCronQueueStillOn() {
    $this->configureService();
    variable_set('hosting_queue_tasks_enabled', TRUE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_WARNING, $requirements['hosting_taskd_cron_queue']['severity']);
  }

}
