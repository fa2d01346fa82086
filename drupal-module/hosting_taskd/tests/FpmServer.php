<?php

/**
 * @file
 * Starts PHP-FPM for the tests and talks FastCGI to it, as a web server does.
 */

/**
 * A php-fpm master with one static pool on a loopback port.
 */
class FpmServer {

  /**
   * The pool's port.
   *
   * @var int
   */
  public $port;

  /**
   * Folder of the configuration and the log.
   *
   * @var string
   */
  protected $dir;

  /**
   * The process handle.
   *
   * @var resource
   */
  protected $process;

  /**
   * Returns the php-fpm binary of this PHP, or NULL.
   */
  public static function binary() {
    $env = getenv('PHP_FPM');
    $candidates = array_filter(array(
      $env ?: NULL,
      '/usr/sbin/php-fpm' . PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION,
      '/usr/sbin/php-fpm',
    ));
    foreach ($candidates as $candidate) {
      if (is_executable($candidate)) {
        return $candidate;
      }
    }
    return NULL;
  }

  /**
   * Starts php-fpm and waits until it accepts connections.
   */
  public function __construct() {
    $binary = self::binary();
    if ($binary === NULL) {
      throw new RuntimeException('php-fpm is not installed (bash .ci/install-php installs it), or set PHP_FPM.');
    }
    $this->port = TestServer::freePort();
    $this->dir = sys_get_temp_dir() . '/taskd-fpm-' . bin2hex(random_bytes(4));
    mkdir($this->dir);
    $conf = "[global]\nerror_log = {$this->dir}/error.log\ndaemonize = no\n"
      . "[test]\nlisten = 127.0.0.1:{$this->port}\npm = static\npm.max_children = 1\n"
      . "clear_env = no\ncatch_workers_output = yes\n"
      . (function_exists('posix_getuid') && posix_getuid() === 0 ? "user = root\n" : '');
    file_put_contents($this->dir . '/fpm.conf', $conf);
    $this->process = proc_open(
      array($binary, '-R', '-y', $this->dir . '/fpm.conf', '-p', $this->dir),
      array(0 => array('file', '/dev/null', 'r'), 1 => array('file', $this->dir . '/stdout', 'w'), 2 => array('file', $this->dir . '/stderr', 'w')),
      $pipes
    );
    $deadline = microtime(TRUE) + 10;
    while (microtime(TRUE) < $deadline) {
      $socket = @stream_socket_client('tcp://127.0.0.1:' . $this->port, $errno, $errstr, 0.2);
      if ($socket) {
        fclose($socket);
        return;
      }
      usleep(50000);
    }
    $log = @file_get_contents($this->dir . '/error.log') . @file_get_contents($this->dir . '/stderr');
    $this->stop();
    throw new RuntimeException('php-fpm did not start: ' . $log);
  }

  /**
   * Runs a script with GET and returns the response and when it ended.
   *
   * @param string $script
   *   Absolute path of the PHP script.
   * @param array $params
   *   Extra FastCGI parameters; the script sees them in $_SERVER.
   *
   * @return array
   *   stdout (headers and body), stderr, and ended: microtime(TRUE) when the
   *   FastCGI request ended (FCGI_END_REQUEST), which is when a web server
   *   finishes the response to the browser.
   */
  public function request($script, array $params = array()) {
    $socket = stream_socket_client('tcp://127.0.0.1:' . $this->port, $errno, $errstr, 5);
    stream_set_timeout($socket, 30);
    $params += array(
      'GATEWAY_INTERFACE' => 'FastCGI/1.0',
      'REQUEST_METHOD' => 'GET',
      'SCRIPT_FILENAME' => $script,
      'SCRIPT_NAME' => '/' . basename($script),
      'REQUEST_URI' => '/' . basename($script),
      'QUERY_STRING' => '',
      'SERVER_PROTOCOL' => 'HTTP/1.1',
      'SERVER_NAME' => '127.0.0.1',
      'SERVER_PORT' => '80',
      'REMOTE_ADDR' => '127.0.0.1',
      'CONTENT_LENGTH' => '0',
    );
    $pairs = '';
    foreach ($params as $name => $value) {
      $pairs .= self::length(strlen($name)) . self::length(strlen($value)) . $name . $value;
    }
    // Type 1 BEGIN_REQUEST (role 1, responder; flags 0), 4 PARAMS, 5 STDIN.
    fwrite($socket, self::record(1, pack('nC', 1, 0) . str_repeat("\0", 5))
      . self::record(4, $pairs) . self::record(4, '')
      . self::record(5, ''));

    $stdout = '';
    $stderr = '';
    while (TRUE) {
      $header = self::read($socket, 8);
      $fields = unpack('Cversion/Ctype/nid/nlength/Cpadding/Creserved', $header);
      $content = self::read($socket, $fields['length']);
      self::read($socket, $fields['padding']);
      if ($fields['type'] == 6) {
        $stdout .= $content;
      }
      elseif ($fields['type'] == 7) {
        $stderr .= $content;
      }
      elseif ($fields['type'] == 3) {
        $ended = microtime(TRUE);
        break;
      }
    }
    fclose($socket);
    return array('stdout' => $stdout, 'stderr' => $stderr, 'ended' => $ended);
  }

  /**
   * Encodes one FastCGI record of request 1.
   */
  protected static function record($type, $content) {
    return pack('CCnnCC', 1, $type, 1, strlen($content), 0, 0) . $content;
  }

  /**
   * Encodes a name or value length of a FastCGI name-value pair.
   */
  protected static function length($length) {
    return $length < 128 ? chr($length) : pack('N', $length | 0x80000000);
  }

  /**
   * Reads exactly $length bytes.
   */
  protected static function read($socket, $length) {
    $data = '';
    while (strlen($data) < $length) {
      $chunk = fread($socket, $length - strlen($data));
      if ($chunk === FALSE || ($chunk === '' && feof($socket))) {
        throw new RuntimeException('php-fpm closed the connection');
      }
      $data .= $chunk;
    }
    return $data;
  }

  /**
   * Stops php-fpm and removes its folder.
   */
  public function stop() {
    if (is_resource($this->process)) {
      proc_terminate($this->process);
      proc_close($this->process);
    }
    $this->process = NULL;
    if ($this->dir && is_dir($this->dir)) {
      array_map('unlink', glob($this->dir . '/*'));
      @rmdir($this->dir);
    }
  }

  /**
   * Stops php-fpm if still running.
   */
  public function __destruct() {
    $this->stop();
  }

}
