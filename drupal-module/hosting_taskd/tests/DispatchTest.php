<?php

/**
 * @file
 * Who runs hosting-dispatch, and the status report's warning.
 */

/**
 * Tests drush_hosting_taskd_pre_hosting_dispatch() and the report.
 */
class DispatchTest extends HostingTaskdTestCase {

  /**
   * Runs the pre-command hook as drush would, with or without the flag.
   */
  protected function dispatchRun($by_service) {
    if ($by_service) {
      putenv('AEGIR_TASKD_DISPATCH=1');
    }
    else {
      putenv('AEGIR_TASKD_DISPATCH');
    }
    drush_hosting_taskd_pre_hosting_dispatch();
    putenv('AEGIR_TASKD_DISPATCH');
  }

  /**
   * Warned while both the service and the cron line dispatch.
   */
  public function testBothDispatchersAreWarned() {
    $this->dispatchRun(TRUE);
    $this->assertArrayNotHasKey('hosting_taskd_dispatch', hosting_taskd_requirements('runtime'), 'The service alone.');
    $this->dispatchRun(FALSE);
    $requirements = hosting_taskd_requirements('runtime');
    $this->assertSame(REQUIREMENT_WARNING, $requirements['hosting_taskd_dispatch']['severity']);
    $this->assertStringContainsString('crontab -e as the aegir user', $requirements['hosting_taskd_dispatch']['description']);
    $this->assertSame(array(), $GLOBALS['shim_variable_writes'], 'Recording a run writes no variable.');
  }

  /**
   * The cron line alone (the service not dispatching) is no warning.
   */
  public function testCronAloneIsNotWarned() {
    $this->dispatchRun(FALSE);
    $this->dispatchRun(FALSE);
    $this->assertArrayNotHasKey('hosting_taskd_dispatch', hosting_taskd_requirements('runtime'));
  }

  /**
   * Runs older than the window no longer count.
   */
  public function testOldRunsExpire() {
    $now = time();
    hosting_taskd_record_dispatch(TRUE, $now - HOSTING_TASKD_DISPATCH_WINDOW - 1);
    hosting_taskd_record_dispatch(FALSE, $now);
    $this->assertFalse(hosting_taskd_double_dispatch($now));
    hosting_taskd_record_dispatch(TRUE, $now - 60);
    $this->assertSame(array('service' => $now - 60, 'other' => $now), hosting_taskd_double_dispatch($now));
  }

}
