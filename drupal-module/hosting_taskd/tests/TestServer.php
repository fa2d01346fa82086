<?php

/**
 * @file
 * Starts PHP's built-in web server for the tests.
 */

/**
 * A "php -S" process on a free loopback port.
 */
class TestServer {

  /**
   * The base URL, e.g. http://127.0.0.1:41234.
   *
   * @var string
   */
  public $baseUrl;

  /**
   * File that receives the server's standard output.
   *
   * @var string
   */
  public $stdoutFile;

  /**
   * File that receives the server's standard error.
   *
   * @var string
   */
  public $stderrFile;

  /**
   * The process handle.
   *
   * @var resource
   */
  protected $process;

  /**
   * Starts a server with a router script and extra environment variables.
   *
   * @param string $router
   *   The router script.
   * @param array $env
   *   Environment variables added to this process's own.
   */
  public function __construct($router, array $env = array()) {
    $port = self::freePort();
    $this->stdoutFile = tempnam(sys_get_temp_dir(), 'taskd-out');
    $this->stderrFile = tempnam(sys_get_temp_dir(), 'taskd-err');
    $this->process = proc_open(
      array(PHP_BINARY, '-S', '127.0.0.1:' . $port, $router),
      array(
        0 => array('file', '/dev/null', 'r'),
        1 => array('file', $this->stdoutFile, 'w'),
        2 => array('file', $this->stderrFile, 'w'),
      ),
      $pipes,
      dirname($router),
      array_merge(getenv(), $env)
    );
    if (!is_resource($this->process)) {
      throw new RuntimeException('Could not start the PHP web server.');
    }
    $this->baseUrl = 'http://127.0.0.1:' . $port;

    $deadline = microtime(TRUE) + 10;
    while (microtime(TRUE) < $deadline) {
      $socket = @stream_socket_client('tcp://127.0.0.1:' . $port, $errno, $errstr, 0.2);
      if ($socket) {
        fclose($socket);
        return;
      }
      usleep(50000);
    }
    $this->stop();
    throw new RuntimeException('The PHP web server did not start: ' . file_get_contents($this->stderrFile));
  }

  /**
   * Stops the server and removes its output files.
   */
  public function stop() {
    if (is_resource($this->process)) {
      proc_terminate($this->process);
      proc_close($this->process);
    }
    $this->process = NULL;
  }

  /**
   * Returns what the server printed on standard output.
   */
  public function stdout() {
    return (string) file_get_contents($this->stdoutFile);
  }

  /**
   * Stops the server if still running and deletes its files.
   */
  public function __destruct() {
    $this->stop();
    @unlink($this->stdoutFile);
    @unlink($this->stderrFile);
  }

  /**
   * Returns a loopback port nothing listens on right now.
   */
  public static function freePort() {
    $socket = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
    $name = stream_socket_get_name($socket, FALSE);
    fclose($socket);
    return (int) substr($name, strrpos($name, ':') + 1);
  }

}

/**
 * Common set-up for tests that need the shim, a database and a receiver.
 */
abstract class HostingTaskdTestCase extends \PHPUnit\Framework\TestCase {

  /**
   * The shared receiver, started once per test class when needed.
   *
   * @var TestServer|null
   */
  protected static $receiver;

  /**
   * The receiver's request log.
   *
   * @var string|null
   */
  protected static $receiverLog;

  /**
   * The receiver's SQLite file.
   *
   * @var string|null
   */
  protected static $receiverDb;

  /**
   * The file the receiver reads the shared secret from.
   *
   * @var string|null
   */
  protected static $receiverSecret;

  /**
   * The database file of the current test, if any.
   *
   * @var string|null
   */
  protected $dbFile;

  /**
   * Starts from a fresh request with no settings.
   */
  protected function setUp(): void {
    shim_reset();
    shim_drush_reset();
    hosting_taskd_pending_state(TRUE);
    unset($GLOBALS['shim_db']);
    // Request headers of an earlier test must not sign this one's requests.
    foreach (array_keys($_SERVER) as $key) {
      if (strpos($key, 'HTTP_WEBHOOK_') === 0) {
        unset($_SERVER[$key]);
      }
    }
  }

  /**
   * Ends the simulated request: Drupal's shutdown functions, then the module's.
   *
   * In a real request PHP calls the function the module registered with
   * register_shutdown_function(); within one PHPUnit process that cannot be
   * triggered, so this calls it when the module has registered it, which
   * tests/hosting-task.php and the FPM test show it does.
   */
  protected function endRequest() {
    _drupal_shutdown_function();
    $state = &hosting_taskd_pending_state();
    if ($state['registered']) {
      hosting_taskd_send_pending();
    }
  }

  /**
   * Runs a PHP script of the tests as a child process.
   *
   * @return array
   *   The exit code, standard output and standard error.
   */
  protected static function runPhp($script, array $args, array $env) {
    $process = proc_open(
      array_merge(array(PHP_BINARY, __DIR__ . '/' . $script), $args),
      array(0 => array('file', '/dev/null', 'r'), 1 => array('pipe', 'w'), 2 => array('pipe', 'w')),
      $pipes,
      __DIR__,
      array_merge(getenv(), $env)
    );
    $stdout = stream_get_contents($pipes[1]);
    $stderr = stream_get_contents($pipes[2]);
    fclose($pipes[1]);
    fclose($pipes[2]);
    return array(proc_close($process), $stdout, $stderr);
  }

  /**
   * Accepts what is waiting on a listening socket, closes it, and counts.
   */
  protected static function countConnections($listener) {
    $accepted = 0;
    while ($connection = @stream_socket_accept($listener, 0)) {
      $accepted++;
      fclose($connection);
    }
    fclose($listener);
    return $accepted;
  }

  /**
   * Drops the database of the test.
   */
  protected function tearDown(): void {
    // Nothing may be left to run at the real end of the PHPUnit process.
    $callbacks = &drupal_register_shutdown_function();
    $callbacks = array();
    hosting_taskd_pending_state(TRUE);
    unset($GLOBALS['shim_db']);
    if ($this->dbFile) {
      @unlink($this->dbFile);
      $this->dbFile = NULL;
    }
  }

  /**
   * Stops the receiver after the last test of the class.
   */
  public static function tearDownAfterClass(): void {
    if (self::$receiver) {
      self::$receiver->stop();
      self::$receiver = NULL;
      @unlink(self::$receiverLog);
      @unlink(self::$receiverDb);
      @unlink(self::$receiverSecret);
    }
  }

  /**
   * Opens a database with Aegir's tables in a file the receiver can read.
   */
  protected function createDatabase() {
    $this->dbFile = self::receiverDatabase();
    @unlink($this->dbFile);
    shim_db_connect($this->dbFile);
    shim_aegir_create_schema();
  }

  /**
   * Returns the path of the SQLite file shared with the receiver.
   */
  protected static function receiverDatabase() {
    if (!self::$receiverDb) {
      self::$receiverDb = tempnam(sys_get_temp_dir(), 'taskd-db');
    }
    return self::$receiverDb;
  }

  /**
   * Starts the receiver if needed, empties its log and returns its URL.
   */
  protected function receiver() {
    if (!self::$receiver) {
      self::$receiverLog = tempnam(sys_get_temp_dir(), 'taskd-log');
      self::$receiverSecret = tempnam(sys_get_temp_dir(), 'taskd-secret');
      self::$receiver = new TestServer(__DIR__ . '/receiver.php', array(
        'RECEIVER_LOG' => self::$receiverLog,
        'RECEIVER_DB' => self::receiverDatabase(),
        'RECEIVER_SECRET_FILE' => self::$receiverSecret,
      ));
    }
    file_put_contents(self::$receiverLog, '');
    file_put_contents(self::$receiverSecret, '');
    return self::$receiver->baseUrl;
  }

  /**
   * Returns the requests the receiver got since receiver() was called.
   */
  protected function receivedRequests() {
    $requests = array();
    foreach (file(self::$receiverLog, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
      $requests[] = json_decode($line, TRUE);
    }
    return $requests;
  }

  /**
   * Configures the module to talk to the receiver with a new secret.
   *
   * @return string
   *   The secret.
   */
  protected function configureService($path = '') {
    $secret = hosting_taskd_generate_secret();
    variable_set('hosting_taskd_url', $this->receiver() . $path);
    variable_set('hosting_taskd_secret', $secret);
    variable_set('hosting_taskd_timeout', 2);
    // The receiver checks signatures with it, as the service does.
    file_put_contents(self::$receiverSecret, $secret);
    return $secret;
  }

  /**
   * Returns every formatted hosting_taskd log message.
   */
  protected function logText() {
    $text = array();
    foreach (shim_watchdog_entries() as $entry) {
      $text[] = $entry['text'];
    }
    return implode("\n", $text);
  }

  /**
   * Computes a v1 signature without the module's code.
   */
  protected static function referenceSignature($secret, $id, $timestamp, $payload) {
    $key = base64_decode(substr($secret, strlen('whsec_')), TRUE);
    return 'v1,' . base64_encode(hash_hmac('sha256', $id . '.' . $timestamp . '.' . $payload, $key, TRUE));
  }

}
