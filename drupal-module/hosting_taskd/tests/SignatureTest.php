<?php

/**
 * @file
 * Standard Webhooks signing and verification.
 */

/**
 * Tests hosting_taskd_sign() and hosting_taskd_verify().
 */
class SignatureTest extends HostingTaskdTestCase {

  /**
   * Reads the known-answer vectors shared with the service.
   */
  public static function vectors() {
    $file = __DIR__ . '/../../../test/fixtures/signature-vectors.json';
    $data = json_decode(file_get_contents($file), TRUE);
    $cases = array();
    foreach ($data['vectors'] as $vector) {
      $cases[$vector['name']] = array($vector);
    }
    return $cases;
  }

  /**
   * The vectors with one signature that verify, which signing must reproduce.
   */
  public static function signableVectors() {
    $cases = array();
    foreach (self::vectors() as $name => $case) {
      if ($case[0]['valid'] && strpos($case[0]['signature'], ' ') === FALSE) {
        $cases[$name] = $case;
      }
    }
    return $cases;
  }

  /**
   * Verification gives each vector's expected outcome.
   *
   * @dataProvider vectors
   */
  public function testVectorVerifies(array $vector) {
    $headers = array(
      'webhook-id' => $vector['msgId'],
      'webhook-timestamp' => (string) $vector['timestamp'],
      'webhook-signature' => $vector['signature'],
    );
    // The vector's timestamp is the signed value; "now" is set to it so only
    // the signature decides.
    $this->assertSame($vector['valid'], hosting_taskd_verify($vector['secret'], $headers, $vector['payload'], $vector['timestamp']));
  }

  /**
   * Signing reproduces the vector's signature.
   *
   * @dataProvider signableVectors
   */
  public function testSigningReproducesVector(array $vector) {
    $this->assertSame($vector['signature'], hosting_taskd_sign($vector['secret'], $vector['msgId'], $vector['timestamp'], $vector['payload']));
  }

  /**
   * The vector file has both outcomes, so the cases above mean something.
   */
  public function testVectorFileCoversBothOutcomes() {
    $outcomes = array();
    foreach (self::vectors() as $case) {
      $outcomes[] = $case[0]['valid'];
    }
    $this->assertContains(TRUE, $outcomes);
    $this->assertContains(FALSE, $outcomes);
    $this->assertNotEmpty(self::signableVectors());
  }

  /**
   * Timestamps more than 300 s away from now are refused, either way.
   */
  public function testTimestampTolerance() {
    $secret = hosting_taskd_generate_secret();
    $signed_at = 1764300000;
    $headers = array(
      'webhook-id' => 'msg_t',
      'webhook-timestamp' => (string) $signed_at,
      'webhook-signature' => hosting_taskd_sign($secret, 'msg_t', $signed_at, 'queue'),
    );
    $this->assertTrue(hosting_taskd_verify($secret, $headers, 'queue', $signed_at + 300));
    $this->assertTrue(hosting_taskd_verify($secret, $headers, 'queue', $signed_at - 300));
    $this->assertFalse(hosting_taskd_verify($secret, $headers, 'queue', $signed_at + 301), 'stale');
    $this->assertFalse(hosting_taskd_verify($secret, $headers, 'queue', $signed_at - 301), 'future');
  }

  /**
   * Each missing or empty header makes the request unsigned.
   */
  public function testMissingHeaders() {
    $secret = hosting_taskd_generate_secret();
    $now = time();
    $headers = array(
      'webhook-id' => 'msg_m',
      'webhook-timestamp' => (string) $now,
      'webhook-signature' => hosting_taskd_sign($secret, 'msg_m', $now, 'task/5'),
    );
    $this->assertTrue(hosting_taskd_verify($secret, $headers, 'task/5', $now));
    foreach (array_keys($headers) as $name) {
      $missing = $headers;
      unset($missing[$name]);
      $this->assertFalse(hosting_taskd_verify($secret, $missing, 'task/5', $now), $name . ' missing');
      $empty = $headers;
      $empty[$name] = '';
      $this->assertFalse(hosting_taskd_verify($secret, $empty, 'task/5', $now), $name . ' empty');
    }
    $this->assertFalse(hosting_taskd_verify($secret, array(), 'task/5', $now));
  }

  /**
   * Header names are case-insensitive, as in HTTP.
   */
  public function testHeaderNamesIgnoreCase() {
    $secret = hosting_taskd_generate_secret();
    $now = time();
    $headers = array(
      'Webhook-Id' => 'msg_c',
      'WEBHOOK-TIMESTAMP' => (string) $now,
      'Webhook-Signature' => hosting_taskd_sign($secret, 'msg_c', $now, 'queue'),
    );
    $this->assertTrue(hosting_taskd_verify($secret, $headers, 'queue', $now));
  }

  /**
   * Any v1 signature in the list may match; other versions are skipped.
   */
  public function testSignatureList() {
    $secret = hosting_taskd_generate_secret();
    $other = hosting_taskd_generate_secret();
    $now = time();
    $good = hosting_taskd_sign($secret, 'msg_l', $now, 'queue');
    $wrong = hosting_taskd_sign($other, 'msg_l', $now, 'queue');
    $mac = substr($good, 3);
    $cases = array(
      $wrong . ' ' . $good => TRUE,
      $good . ' ' . $wrong => TRUE,
      'v2,' . $mac => FALSE,
      'v2,' . $mac . ' ' . $good => TRUE,
      $wrong => FALSE,
      'garbage ' . $good => TRUE,
      'v1,' => FALSE,
    );
    foreach ($cases as $signature => $expected) {
      $headers = array(
        'webhook-id' => 'msg_l',
        'webhook-timestamp' => (string) $now,
        'webhook-signature' => $signature,
      );
      $this->assertSame($expected, hosting_taskd_verify($secret, $headers, 'queue', $now), $signature);
    }
  }

  /**
   * The payload, id and route string are all part of what is signed.
   */
  public function testSignedContent() {
    $secret = hosting_taskd_generate_secret();
    $now = time();
    $headers = array(
      'webhook-id' => 'msg_s',
      'webhook-timestamp' => (string) $now,
      'webhook-signature' => hosting_taskd_sign($secret, 'msg_s', $now, 'task/12'),
    );
    $this->assertSame(self::referenceSignature($secret, 'msg_s', $now, 'task/12'), $headers['webhook-signature']);
    $this->assertTrue(hosting_taskd_verify($secret, $headers, 'task/12', $now));
    $this->assertFalse(hosting_taskd_verify($secret, $headers, 'task/13', $now));
    $this->assertFalse(hosting_taskd_verify($secret, $headers, 'queue', $now));
    $headers['webhook-id'] = 'msg_t';
    $this->assertFalse(hosting_taskd_verify($secret, $headers, 'task/12', $now));
  }

  /**
   * Timestamps that are not plain unix seconds are refused.
   */
  public function testMalformedTimestamp() {
    $secret = hosting_taskd_generate_secret();
    $now = time();
    foreach (array($now . '.0', '-' . $now, 'now', '0x' . dechex($now)) as $timestamp) {
      $headers = array(
        'webhook-id' => 'msg_x',
        'webhook-timestamp' => $timestamp,
        'webhook-signature' => hosting_taskd_sign($secret, 'msg_x', $timestamp, 'queue'),
      );
      $this->assertFalse(hosting_taskd_verify($secret, $headers, 'queue', $now), $timestamp);
    }
  }

  /**
   * Secrets that cannot be decoded neither sign nor verify.
   */
  public function testUnusableSecrets() {
    $now = time();
    $good = hosting_taskd_generate_secret();
    $headers = array(
      'webhook-id' => 'msg_u',
      'webhook-timestamp' => (string) $now,
      'webhook-signature' => hosting_taskd_sign($good, 'msg_u', $now, 'queue'),
    );
    foreach (array('', 'whsec_', 'whsec_not base64!', '   ') as $secret) {
      $this->assertFalse(hosting_taskd_sign($secret, 'msg_u', $now, 'queue'), var_export($secret, TRUE));
      $this->assertFalse(hosting_taskd_verify($secret, $headers, 'queue', $now), var_export($secret, TRUE));
    }
  }

  /**
   * Generated secrets have the Standard Webhooks form and are random.
   */
  public function testGeneratedSecret() {
    $first = hosting_taskd_generate_secret();
    $second = hosting_taskd_generate_secret();
    $this->assertStringStartsWith('whsec_', $first);
    $this->assertSame(32, strlen(base64_decode(substr($first, 6), TRUE)));
    $this->assertNotSame($first, $second);
    $this->assertTrue(hosting_taskd_secret_is_valid($first));
  }

  /**
   * The settings form accepts whsec_ secrets of 24 to 64 bytes only.
   */
  public function testSecretIsValid() {
    $this->assertTrue(hosting_taskd_secret_is_valid('whsec_' . base64_encode(str_repeat('a', 24))));
    $this->assertTrue(hosting_taskd_secret_is_valid('whsec_' . base64_encode(str_repeat('a', 64))));
    $this->assertFalse(hosting_taskd_secret_is_valid('whsec_' . base64_encode(str_repeat('a', 23))));
    $this->assertFalse(hosting_taskd_secret_is_valid('whsec_' . base64_encode(str_repeat('a', 65))));
    $this->assertFalse(hosting_taskd_secret_is_valid(base64_encode(str_repeat('a', 32))), 'no prefix');
    $this->assertFalse(hosting_taskd_secret_is_valid('whsec_%%%%'));
  }

}
