<?php

/**
 * @file
 * The user's page never waits for the service, under PHP-FPM.
 */

/**
 * Runs tests/page.php under php-fpm against a service that never answers.
 */
class FpmTest extends HostingTaskdTestCase {

  /**
   * The page is back within 100 ms of its own work; the webhooks come after.
   */
  public function testPageDoesNotWaitForTheService() {
    $this->createDatabase();
    $silent = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
    $address = stream_socket_get_name($silent, FALSE);
    $result_file = tempnam(sys_get_temp_dir(), 'taskd-page');
    $fpm = new FpmServer();
    try {
      $response = $fpm->request(__DIR__ . '/page.php', array(
        'TASKD_DB' => $this->dbFile,
        'TASKD_URL' => 'http://' . $address,
        'TASKD_SECRET' => hosting_taskd_generate_secret(),
        'TASKD_TASKS' => '3',
        'TASKD_RESULT' => $result_file,
      ));
      $this->assertStringContainsString('The tasks were queued.', $response['stdout'], $response['stderr']);

      // The request goes on after the response: wait for its last word.
      $deadline = microtime(TRUE) + 10;
      while (trim((string) file_get_contents($result_file)) === '' && microtime(TRUE) < $deadline) {
        usleep(20000);
      }
      $result = json_decode(file_get_contents($result_file), TRUE);
      $this->assertIsArray($result, 'The request finished its shutdown functions.');
    }
    finally {
      $fpm->stop();
      @unlink($result_file);
    }

    $waited = $response['ended'] - $result['work_done'];
    $this->assertLessThan(0.1, $waited, sprintf('The page came back %.3f s after its own work.', $waited));
    $sending = $result['sending_done'] - $result['work_done'];
    $this->assertGreaterThan(0.9, $sending, 'The first webhook waited its whole timeout, after the response.');
    $this->assertLessThan(1.5, $sending, 'One timeout for the request, not one per task.');
    $this->assertGreaterThan($response['ended'], $result['sending_done']);
    $this->assertCount(2, $result['log']);
    $this->assertStringContainsString('timed out', $result['log'][0]);
    $this->assertStringContainsString('No webhook sent for tasks', $result['log'][1]);

    $accepted = self::countConnections($silent);
    $this->assertSame(1, $accepted, 'Only the first webhook was tried.');
  }

}
