<?php

/**
 * @file
 * Which of the module's files a request loads.
 */

/**
 * Runs requests in fresh processes and lists the module files they loaded.
 */
class LoadingTest extends HostingTaskdTestCase {

  /**
   * Runs tests/request.php for a path and returns its report.
   */
  protected function request($path, array $env = array()) {
    $this->createDatabase();
    list($code, $stdout, $stderr) = self::runPhp('request.php', array($path), array('HOSTING_TASKD_DB' => $this->dbFile) + $env);
    $this->assertSame(0, $code, $stderr);
    $this->assertSame('', $stderr);
    return json_decode($stdout, TRUE);
  }

  /**
   * A page that is not the module's loads only hosting_taskd.module.
   */
  public function testOtherPageLoadsOnlyTheModuleFile() {
    $report = $this->request('node/1');
    $this->assertSame('node 1', $report['result']);
    $this->assertSame(array('hosting_taskd.module'), $report['loaded']);
  }

  /**
   * The queue page loads the endpoint code and what it uses, nothing else.
   *
   * The request is not signed, so it stops at the signature check.
   */
  public function testQueuePageLoadsTheEndpoints() {
    $report = $this->request('hosting/taskd/queue');
    $this->assertNull($report['result']);
    $this->assertSame('hosting_taskd.module', $report['loaded'][0]);
    $loaded = $report['loaded'];
    sort($loaded);
    $this->assertSame(array(
      'hosting_taskd.endpoints.inc',
      'hosting_taskd.module',
      'hosting_taskd.signature.inc',
      'hosting_taskd.tasks.inc',
    ), $loaded);
  }

}
