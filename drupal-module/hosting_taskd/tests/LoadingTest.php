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
    $process = proc_open(
      array(PHP_BINARY, __DIR__ . '/request.php', $path),
      array(0 => array('file', '/dev/null', 'r'), 1 => array('pipe', 'w'), 2 => array('pipe', 'w')),
      $pipes,
      __DIR__,
      array_merge(getenv(), array('HOSTING_TASKD_DB' => $this->dbFile), $env)
    );
    $stdout = stream_get_contents($pipes[1]);
    $stderr = stream_get_contents($pipes[2]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    $this->assertSame(0, proc_close($process), $stderr);
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
