<?php

/**
 * @file
 * The settings form and the menu items.
 */

/**
 * Tests hosting_taskd.admin.inc and hosting_taskd_menu().
 */
class AdminFormTest extends HostingTaskdTestCase {

  /**
   * Builds the form as drupal_get_form() would.
   */
  protected function buildForm() {
    $form_state = array();
    return hosting_taskd_settings_form(array(), $form_state);
  }

  /**
   * Runs the form's validation and submit handlers on values.
   *
   * @return array
   *   The form errors, keyed by element.
   */
  protected function submitForm(array $values) {
    $form = $this->buildForm();
    $form_state = array('values' => $values + array('op' => 'Save configuration'));
    foreach ($form['#validate'] as $function) {
      $function($form, $form_state);
    }
    $errors = $GLOBALS['shim_form_errors'];
    if (!$errors) {
      foreach ($form['#submit'] as $function) {
        $function($form, $form_state);
      }
    }
    return $errors;
  }

  /**
   * The settings page and the service endpoints are routed as intended.
   */
  public function testMenu() {
    $items = hosting_taskd_menu();
    $this->assertSame('drupal_get_form', $items['admin/hosting/taskd']['page callback']);
    $this->assertSame(array('hosting_taskd_settings_form'), $items['admin/hosting/taskd']['page arguments']);
    $this->assertSame(array('administer hosting queues'), $items['admin/hosting/taskd']['access arguments']);
    $this->assertSame('hosting_taskd.admin.inc', $items['admin/hosting/taskd']['file']);
    $this->assertFileExists(dirname(__DIR__) . '/' . $items['admin/hosting/taskd']['file']);
    $this->assertTrue($items['hosting/taskd/queue']['access callback']);
    $this->assertTrue($items['hosting/taskd/task/%']['access callback']);
    $this->assertSame(MENU_ACCESS_DENIED, shim_menu_execute('admin/hosting/taskd', $items), 'Anonymous users cannot reach the settings.');
  }

  /**
   * The form has the three settings, and never shows the stored secret.
   */
  public function testFormDoesNotShowSecret() {
    $secret = hosting_taskd_generate_secret();
    variable_set('hosting_taskd_url', 'http://127.0.0.1:8765');
    variable_set('hosting_taskd_secret', $secret);
    variable_set('hosting_taskd_timeout', 5);
    $form = $this->buildForm();
    $this->assertSame('http://127.0.0.1:8765', $form['hosting_taskd_url']['#default_value']);
    $this->assertSame('', $form['hosting_taskd_secret']['#default_value']);
    $this->assertSame(5, $form['hosting_taskd_timeout']['#default_value']);
    $this->assertSame('submit', $form['hosting_taskd_generate']['#type']);
    $this->assertStringNotContainsString(substr($secret, 6), serialize($form));
  }

  /**
   * Saving with an empty secret field keeps the stored secret.
   */
  public function testEmptySecretKeepsStoredOne() {
    $secret = hosting_taskd_generate_secret();
    variable_set('hosting_taskd_secret', $secret);
    $errors = $this->submitForm(array(
      'hosting_taskd_url' => 'http://127.0.0.1:9000/',
      'hosting_taskd_secret' => '',
      'hosting_taskd_timeout' => '3',
      'hosting_taskd_generate' => 'Generate a new secret',
      'submit' => 'Save configuration',
    ));
    $this->assertSame(array(), $errors);
    $this->assertSame($secret, variable_get('hosting_taskd_secret'));
    $this->assertSame('http://127.0.0.1:9000', variable_get('hosting_taskd_url'), 'Trailing slash removed.');
    $this->assertSame('3', variable_get('hosting_taskd_timeout'));
    $this->assertArrayNotHasKey('hosting_taskd_generate', $GLOBALS['conf']);
  }

  /**
   * A new secret typed into the field is saved.
   */
  public function testNewSecretIsSaved() {
    variable_set('hosting_taskd_secret', hosting_taskd_generate_secret());
    $new = hosting_taskd_generate_secret();
    $errors = $this->submitForm(array(
      'hosting_taskd_url' => 'https://taskd.example.com',
      'hosting_taskd_secret' => ' ' . $new . ' ',
      'hosting_taskd_timeout' => '2.5',
    ));
    $this->assertSame(array(), $errors);
    $this->assertSame($new, variable_get('hosting_taskd_secret'));
  }

  /**
   * Bad values are refused with an error on their field, and not saved.
   */
  public function testValidation() {
    $errors = $this->submitForm(array(
      'hosting_taskd_url' => 'ftp://example.com',
      'hosting_taskd_secret' => 'not-a-secret',
      'hosting_taskd_timeout' => '0',
    ));
    $this->assertSame(array('hosting_taskd_url', 'hosting_taskd_secret', 'hosting_taskd_timeout'), array_keys($errors));
    $this->assertSame(array(), $GLOBALS['conf']);

    $GLOBALS['shim_form_errors'] = array();
    $errors = $this->submitForm(array(
      'hosting_taskd_url' => 'not a url',
      'hosting_taskd_secret' => '',
      'hosting_taskd_timeout' => 'abc',
    ));
    $this->assertSame(array('hosting_taskd_url', 'hosting_taskd_timeout'), array_keys($errors));

    $GLOBALS['shim_form_errors'] = array();
    $errors = $this->submitForm(array(
      'hosting_taskd_url' => '',
      'hosting_taskd_secret' => '',
      'hosting_taskd_timeout' => '61',
    ));
    $this->assertSame(array('hosting_taskd_timeout'), array_keys($errors));
  }

  /**
   * The generate button fills the field with a new secret without saving.
   */
  public function testGenerateButton() {
    $stored = hosting_taskd_generate_secret();
    variable_set('hosting_taskd_secret', $stored);
    $form = $this->buildForm();
    $form_state = array('input' => array('hosting_taskd_secret' => ''), 'values' => array());
    foreach ($form['hosting_taskd_generate']['#submit'] as $function) {
      $function($form, $form_state);
    }
    $generated = $form_state['input']['hosting_taskd_secret'];
    $this->assertTrue(hosting_taskd_secret_is_valid($generated));
    $this->assertNotSame($stored, $generated);
    $this->assertTrue($form_state['rebuild']);
    $this->assertSame($stored, variable_get('hosting_taskd_secret'), 'Not saved until the form is saved.');
    $this->assertSame(array(), $form['hosting_taskd_generate']['#limit_validation_errors']);
  }

}
