<?php

/**
 * @file
 * Exactly one runner: what turns the cron task queue on, and the module's
 * answer to each.
 */

/**
 * Tests hosting_taskd.runner.inc through the hooks that call it.
 */
class RunnerTest extends HostingTaskdTestCase {

  /**
   * Enables the module configured, as the site has it, with hosting_queued.
   */
  protected function enableConfigured($with_hosting_queued = FALSE) {
    variable_set('hosting_taskd_url', 'http://127.0.0.1:' . TestServer::freePort());
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    if ($with_hosting_queued) {
      $GLOBALS['shim_modules'][] = 'hosting_queued';
      hosting_queued_enable();
    }
    hosting_taskd_enable();
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE));
  }

  /**
   * Disabling hosting_queued later does not give the tasks to cron as well.
   */
  public function testHostingQueuedDisabledLater() {
    $this->enableConfigured(TRUE);
    module_disable(array('hosting_queued'));
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled', TRUE), 'hosting_queued_disable() set it TRUE; the module set it back.');
    $this->assertFalse(hosting_get_queues(TRUE)['tasks']['enabled']);

    // hosting_queued meant the tasks to go back to cron: disabling this
    // module now does that, instead of restoring hosting_queued's FALSE.
    module_disable(array('hosting_taskd'));
    $this->assertTrue(variable_get('hosting_queue_tasks_enabled'));
    $this->assertTrue(hosting_get_queues(TRUE)['tasks']['enabled']);
  }

  /**
   * The tasks checkbox of hosting's queues form cannot turn cron back on.
   */
  public function testQueuesForm() {
    $this->enableConfigured();
    $form = shim_form_submit('hosting_queues_configure', array(
      'tasks' => array('enabled' => 1, 'frequency' => array('items' => 5, 'ticks' => 60, 'unit' => 1)),
      'cron' => array('enabled' => 1, 'frequency' => array('items' => 5, 'ticks' => 3600, 'unit' => 1)),
    ));
    $this->assertTrue($form['tasks']['enabled']['#disabled']);
    $this->assertStringContainsString('hosting_taskd', $form['tasks']['enabled']['#description']);
    $this->assertFalse((bool) variable_get('hosting_queue_tasks_enabled', TRUE));
    $this->assertSame(1, variable_get('hosting_queue_cron_enabled'), 'The other queues are saved as usual.');
  }

  /**
   * Unconfigured, the queues form is hosting's own.
   */
  public function testQueuesFormUnconfigured() {
    hosting_taskd_enable();
    $form = shim_form_submit('hosting_queues_configure', array(
      'tasks' => array('enabled' => 1, 'frequency' => array('items' => 5, 'ticks' => 60, 'unit' => 1)),
    ));
    $this->assertArrayNotHasKey('#disabled', $form['tasks']['enabled']);
    $this->assertSame(1, variable_get('hosting_queue_tasks_enabled'));
  }

  /**
   * A drush vset is undone by the next bootstrap, before hosting-dispatch.
   */
  public function testVsetIsUndoneAtBootstrap() {
    $this->enableConfigured();
    variable_set('hosting_queue_tasks_enabled', '1');
    module_invoke_all('init');
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled'));
    $entries = shim_watchdog_entries('hosting_taskd');
    $this->assertCount(1, $entries);
    $this->assertStringContainsString('page request', $entries[0]['text']);
  }

  /**
   * hook_init() writes nothing while all is as it should be.
   */
  public function testInitWritesNothingNormally() {
    $this->enableConfigured();
    $GLOBALS['shim_variable_writes'] = array();
    module_invoke_all('init');
    $this->assertSame(array(), $GLOBALS['shim_variable_writes']);

    shim_reset();
    variable_set('hosting_queue_tasks_enabled', TRUE);
    $GLOBALS['shim_variable_writes'] = array();
    module_invoke_all('init');
    $this->assertSame(array(), $GLOBALS['shim_variable_writes'], 'Unconfigured, cron stays the runner.');
    $this->assertTrue(variable_get('hosting_queue_tasks_enabled'));
  }

  /**
   * Configuring the module later takes the tasks from cron.
   */
  public function testConfiguringLaterTakesOver() {
    variable_set('hosting_queue_tasks_enabled', TRUE);
    hosting_taskd_enable();
    $this->assertTrue(variable_get('hosting_queue_tasks_enabled'));
    $form_state = array('values' => array(
      'hosting_taskd_url' => 'http://127.0.0.1:8765',
      'hosting_taskd_secret' => hosting_taskd_generate_secret(),
      'hosting_taskd_timeout' => '2',
    ));
    $form = hosting_taskd_settings_form(array(), $form_state);
    hosting_taskd_settings_form_validate($form, $form_state);
    $this->assertNull(form_get_errors());
    foreach ($form['#submit'] as $handler) {
      $handler($form, $form_state);
    }
    $this->assertFalse(variable_get('hosting_queue_tasks_enabled'));
    // And disabling gives them back, as they were before enabling.
    hosting_taskd_disable();
    $this->assertTrue(variable_get('hosting_queue_tasks_enabled'));
  }

}
