<?php

/**
 * @file
 * Aegir's task log, live on stderr, for processes the service started.
 */

/**
 * Runs tests/drush-task.php with and without AEGIR_TASKD_NID.
 */
class DrushLogTest extends HostingTaskdTestCase {

  /**
   * Runs the script and records when each stderr line arrived.
   */
  protected function runTask($nid, $flag) {
    $env = array_merge(getenv(), array('HOSTING_TASKD_DB' => $this->dbFile));
    unset($env['AEGIR_TASKD_NID']);
    if ($flag) {
      $env['AEGIR_TASKD_NID'] = (string) $nid;
    }
    $process = proc_open(
      array(PHP_BINARY, __DIR__ . '/drush-task.php', (string) $nid),
      array(0 => array('file', '/dev/null', 'r'), 1 => array('pipe', 'w'), 2 => array('pipe', 'w')),
      $pipes,
      __DIR__,
      $env
    );
    stream_set_blocking($pipes[2], FALSE);
    $lines = array();
    $buffer = '';
    while (!feof($pipes[2])) {
      $read = array($pipes[2]);
      $write = $except = NULL;
      if (stream_select($read, $write, $except, 5) === 0) {
        break;
      }
      $buffer .= (string) fread($pipes[2], 8192);
      while (($at = strpos($buffer, "\n")) !== FALSE) {
        $lines[] = array(substr($buffer, 0, $at), microtime(TRUE));
        $buffer = substr($buffer, $at + 1);
      }
    }
    $ended = microtime(TRUE);
    $stdout = stream_get_contents($pipes[1]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    $this->assertSame(0, proc_close($process), $stdout . $buffer);
    return array($lines, json_decode($stdout, TRUE), $ended);
  }

  /**
   * The task log of a revision.
   */
  protected function log($vid) {
    $log = array();
    foreach (db_query('SELECT type, message FROM {hosting_task_log} WHERE vid = :vid ORDER BY lid', array(':vid' => $vid)) as $row) {
      $log[] = array($row->type, $row->message);
    }
    return $log;
  }

  /**
   * Each entry reaches the task log as before and stderr as it happens.
   */
  public function testServiceStartedProcessTeesTheLog() {
    $this->createDatabase();
    $GLOBALS['shim_modules'] = array('hosting', 'hosting_task');
    $plain = shim_aegir_add_task(shim_aegir_create_node('site', 'a.example.com'), 'verify');
    $teed = shim_aegir_add_task(shim_aegir_create_node('site', 'b.example.com'), 'verify');

    list($plain_lines, $plain_out) = $this->runTask($plain->nid, FALSE);
    list($lines, $out, $ended) = $this->runTask($teed->nid, TRUE);

    // Without the variable, exactly as without the module.
    $this->assertSame(array(), $plain_lines);
    $this->assertSame('_hosting_task_log', $plain_out['callback']);

    $expected_log = array(
      array('notice', 'Verifying the site.'),
      array('warning', "Something odd:\nsecond line"),
      array('error', 'It failed.'),
    );
    $plain_vid = (int) db_query('SELECT vid FROM {node} WHERE nid = :nid', array(':nid' => $plain->nid))->fetchField();
    $teed_vid = (int) db_query('SELECT vid FROM {node} WHERE nid = :nid', array(':nid' => $teed->nid))->fetchField();
    $this->assertSame($expected_log, $this->log($plain_vid));
    $this->assertSame($expected_log, $this->log($teed_vid), 'The task log is the same with the tee.');

    $this->assertSame(array(
      '[notice] Verifying the site.',
      '[warning] Something odd: second line',
      '[error] It failed.',
    ), array_column($lines, 0));
    $this->assertSame('hosting_taskd_log_tee', $out['callback']);
    $this->assertGreaterThan(0.3, $ended - $lines[0][1], 'The first line arrived while the process still ran: unbuffered.');
  }

}
