<?php

/**
 * @file
 * The PHP version the module says it needs is the one it needs.
 */

/**
 * Scans the module's files for what PHP 7.2 does not have.
 */
class PhpFloorTest extends HostingTaskdTestCase {

  /**
   * Functions and constants newer than PHP 7.2, with the version that added
   * them.
   */
  const NEWER = array(
    'array_key_first' => '7.3',
    'array_key_last' => '7.3',
    'is_countable' => '7.3',
    'hrtime' => '7.3',
    'net_get_interfaces' => '7.3',
    'JSON_THROW_ON_ERROR' => '7.3',
    'mb_str_split' => '7.4',
    'get_mangled_object_vars' => '7.4',
    'password_algos' => '7.4',
    'str_contains' => '8.0',
    'str_starts_with' => '8.0',
    'str_ends_with' => '8.0',
    'get_debug_type' => '8.0',
    'fdiv' => '8.0',
    'preg_last_error_msg' => '8.0',
    'array_is_list' => '8.1',
    'enum_exists' => '8.1',
  );

  /**
   * Syntax newer than PHP 7.2, as token names.
   */
  const NEWER_TOKENS = array(
    'T_FN' => '7.4',
    'T_COALESCE_EQUAL' => '7.4',
    'T_MATCH' => '8.0',
    'T_NULLSAFE_OBJECT_OPERATOR' => '8.0',
    'T_ATTRIBUTE' => '8.0',
    'T_ENUM' => '8.1',
    'T_READONLY' => '8.1',
  );

  /**
   * The module's own PHP files (not the tests').
   */
  protected function moduleFiles() {
    $dir = dirname(__DIR__);
    return array_merge(array($dir . '/hosting_taskd.module', $dir . '/hosting_taskd.install'), glob($dir . '/hosting_taskd.*.inc'));
  }

  /**
   * .info says php = 7.2, and the README says the same.
   */
  public function testInfoAndReadmeAgree() {
    $info = file_get_contents(dirname(__DIR__) . '/hosting_taskd.info');
    $this->assertMatchesRegularExpression('/^php = 7\.2$/m', $info);
    $this->assertStringContainsString('PHP 7.2 or newer', file_get_contents(dirname(__DIR__) . '/README.txt'));
  }

  /**
   * Nothing newer than 7.2 is used.
   */
  public function testNothingNewerThanTheFloor() {
    $this->assertGreaterThanOrEqual(8, count($this->moduleFiles()));
    $found = array();
    foreach ($this->moduleFiles() as $file) {
      $tokens = token_get_all(file_get_contents($file));
      foreach ($tokens as $i => $token) {
        if (!is_array($token)) {
          continue;
        }
        $name = token_name($token[0]);
        if (isset(self::NEWER_TOKENS[$name])) {
          $found[] = basename($file) . ':' . $token[2] . ' ' . $name;
        }
        if ($token[0] === T_STRING && isset(self::NEWER[$token[1]])) {
          $found[] = basename($file) . ':' . $token[2] . ' ' . $token[1];
        }
      }
    }
    $this->assertSame(array(), $found);
  }

  /**
   * 7.2 is not too high a floor: the module uses what 7.2 added.
   */
  public function testTheFloorIsNeeded() {
    $code = implode("\n", array_map('file_get_contents', $this->moduleFiles()));
    // JSON_INVALID_UTF8_SUBSTITUTE came with PHP 7.2.
    $this->assertStringContainsString('JSON_INVALID_UTF8_SUBSTITUTE', $code);
  }

}
