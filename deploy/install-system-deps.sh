#!/usr/bin/env bash
# System packages the project needs beyond Python: PHP + WordPress for the real-WordPress tests,
# Chromium for the page's browser tests.
# Idempotent and quick when everything is already there. PostgreSQL and MariaDB servers run already on CI
# machines; where none runs, the tests start private ones (a Postgres cluster, a MariaDB server) from the
# installed binaries, and the local run a private Postgres.
set -euo pipefail

need=()
command -v php >/dev/null 2>&1 || need+=(php-cli)
[ -f /usr/share/wordpress/wp-load.php ] || need+=(wordpress)
# Debian's wordpress ships no theme: without one, front-end permalinks render nothing (the publisher's
# tests open the published post's URL). WordPress 6.1's default theme is twentytwentythree.
[ -f /usr/share/wordpress/wp-content/themes/twentytwentythree/style.css ] || need+=(wordpress-theme-twentytwentythree)
php -m 2>/dev/null | grep -qi '^mysqli$' || need+=(php-mysql)
php -m 2>/dev/null | grep -qi '^gd$' || need+=(php-gd)
php -m 2>/dev/null | grep -qi '^curl$' || need+=(php-curl)
php -m 2>/dev/null | grep -qi '^dom$' || need+=(php-xml)
php -m 2>/dev/null | grep -qi '^mbstring$' || need+=(php-mbstring)
command -v mariadb >/dev/null 2>&1 || command -v mysql >/dev/null 2>&1 || need+=(mariadb-client)
# The server's binaries, for the tests' private MariaDB where the machine runs none (not started here).
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the page's browser tests (Playwright drives Debian's Chromium)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "system dependencies ready"
