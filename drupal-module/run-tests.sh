#!/usr/bin/env bash
# Lints every PHP file of the Drupal module and runs its PHPUnit tests.
# Run from anywhere: bash drupal-module/run-tests.sh
# Needs php-cli with the pdo_sqlite extension, php-fpm (for the test that the
# user's page is finished before any webhook), and phpunit (9.x) on the PATH
# or named by the PHPUNIT environment variable. On Debian:
#   apt-get install -y php-cli php-fpm php-sqlite3 php-curl php-xml php-mbstring phpunit
set -euo pipefail

cd "$(dirname "$0")/.."

php_bin="${PHP:-php}"
phpunit_bin="${PHPUNIT:-phpunit}"

for tool in "$php_bin" "$phpunit_bin"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run-tests.sh: $tool not found" >&2
    exit 127
  fi
done

if ! "$php_bin" -r 'exit(extension_loaded("pdo_sqlite") ? 0 : 1);'; then
  echo "run-tests.sh: the pdo_sqlite extension is missing (php-sqlite3)" >&2
  exit 1
fi

lint_failed=0
linted=0
while IFS= read -r -d '' file; do
  linted=$((linted + 1))
  if ! output="$("$php_bin" -l "$file" 2>&1)"; then
    echo "$output" >&2
    lint_failed=1
  fi
done < <(find drupal-module -type f \( -name '*.php' -o -name '*.module' -o -name '*.install' -o -name '*.inc' -o -name '*.test' -o -name '*.theme' \) -print0)

if [ "$linted" -eq 0 ]; then
  echo "run-tests.sh: no PHP files found under drupal-module/" >&2
  exit 1
fi
if [ "$lint_failed" -ne 0 ]; then
  echo "run-tests.sh: php -l failed" >&2
  exit 1
fi
echo "php -l: $linted files OK"

exec "$phpunit_bin" -c drupal-module/hosting_taskd/tests/phpunit.xml.dist "$@"
