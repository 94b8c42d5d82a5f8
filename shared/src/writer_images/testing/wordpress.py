"""A real WordPress site for tests and local runs: PHP's built-in server over a throw-away MariaDB database.

`start_wordpress_site()` copies the Debian `wordpress` package into a working directory (core files
hard-linked, wp-content copied), writes its own
`wp-config.php`, installs WordPress headlessly with a PHP CLI script, creates an admin and an editor with
application passwords, optionally installs the Writer Images bridge plugin, and serves the site with
`php -S`. Leaving the context kills the server's process group, drops the database and removes the copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from writer_images.infra.ports import free_port

WORDPRESS_SOURCE = Path("/usr/share/wordpress")
BRIDGE_PLUGIN_SLUG = "writer-images-bridge"
APT_PACKAGES = "wordpress php-cli php-mysql php-gd php-curl php-xml php-mbstring mariadb-client"
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class MariaDBServer:
    """Where throw-away WordPress databases are created (the machine's MariaDB by default)."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def run_sql(self, sql: str) -> str:
        """Run SQL through the `mariadb` (or `mysql`) client; returns its tab-separated output."""
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            raise RuntimeError(f"no MariaDB client on PATH (apt-get install {APT_PACKAGES})")
        command = [client, "--protocol=TCP", "-h", self.host, "-P", str(self.port), "-u", self.user]
        if self.password:
            command.append(f"--password={self.password}")
        command += ["--batch", "--skip-column-names", "-e", sql]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"MariaDB at {self.host}:{self.port} refused {sql!r}: {done.stderr.strip()}")
        return done.stdout

    def database_exists(self, name: str) -> bool:
        return self.run_sql(f"SHOW DATABASES LIKE '{name}'").strip() == name

    def answers(self) -> bool:
        try:
            self.run_sql("SELECT 1")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True


@contextlib.contextmanager
def private_mariadb(workdir: Path, *, ready_timeout_s: float = 30.0) -> Iterator[MariaDBServer]:
    """A MariaDB server of its own in `workdir` (≈2 s to start), for a machine where none runs: root
    without a password on 127.0.0.1 and a free port, stopped and left to `workdir` on exit."""
    install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    daemon = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
    if install_db is None or daemon is None:
        raise RuntimeError("no MariaDB server here and none installed: apt-get install mariadb-server")
    data, log = workdir / "data", workdir / "error.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses to run as root unless told
    subprocess.run(
        [install_db, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", *as_root],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server = MariaDBServer(port=free_port())
    process = subprocess.Popen(
        [daemon, "--no-defaults", f"--datadir={data}", f"--socket={workdir / 'mysqld.sock'}",
         f"--port={server.port}", "--bind-address=127.0.0.1", f"--log-error={log}", *as_root],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not server.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise RuntimeError(f"the private MariaDB server did not start; its log ends:\n{tail}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class WordPressSite:
    """A running WordPress site. Application passwords are for HTTP Basic auth on the REST API."""

    base_url: str
    admin_user: str
    admin_password: str
    app_password: str
    editor_user: str
    editor_app_password: str
    db_name: str
    root_dir: Path
    bridge_secret: str | None
    site_key: str
    debug_log: Path
    server_log: Path
    database: MariaDBServer

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/wp-json"

    @property
    def admin_auth(self) -> tuple[str, str]:
        return (self.admin_user, self.app_password)

    @property
    def editor_auth(self) -> tuple[str, str]:
        return (self.editor_user, self.editor_app_password)

    def run_sql(self, sql: str) -> str:
        """Run SQL in the site's own database, on whichever MariaDB server holds it."""
        return self.database.run_sql(f"USE `{self.db_name}`; {sql}")


def wordpress_available(mariadb: MariaDBServer | None = None) -> None:
    """Raise RuntimeError naming the missing piece; WordPress tests fail (never skip) without it."""
    hint = f"install with: apt-get install -y --no-install-recommends {APT_PACKAGES}"
    php = shutil.which("php")
    if php is None:
        raise RuntimeError(f"WordPress tests need `php` on PATH; {hint}")
    if not (WORDPRESS_SOURCE / "wp-load.php").is_file():
        raise RuntimeError(f"WordPress tests need the Debian WordPress files in {WORDPRESS_SOURCE}; {hint}")
    probe = subprocess.run(
        [php, "-r", "exit(extension_loaded('mysqli') && function_exists('curl_init') ? 0 : 1);"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        raise RuntimeError(f"PHP lacks the mysqli or curl extension; {hint}")
    server = mariadb or MariaDBServer()
    try:
        server.run_sql("SELECT 1")
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"WordPress tests need MariaDB on {server.host}:{server.port}: {error}") from error


@contextlib.contextmanager
def start_wordpress_site(
    workdir: Path,
    *,
    port: int | None = None,
    bridge_plugin: Path | None = None,
    webhook_url: str | None = None,
    bridge_secret: str | None = None,
    site_key: str = "site-1",
    mariadb: MariaDBServer | None = None,
) -> Iterator[WordPressSite]:
    """Start a fresh WordPress site (≈2 s) and tear it down on exit.

    `bridge_plugin` is the plugin folder (containing `writer-images-bridge.php`); when given, the plugin is
    copied into the site, activated, and configured through wp-config constants with `webhook_url`,
    `bridge_secret` (random when not given) and `site_key`.
    """
    if bridge_plugin is None and (webhook_url is not None or bridge_secret is not None):
        raise ValueError("webhook_url and bridge_secret configure the bridge plugin: pass bridge_plugin too")
    wordpress_available(mariadb)
    server = mariadb or MariaDBServer()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "site"
    db_name = f"wi_wp_{secrets.token_hex(6)}"
    secret = (bridge_secret or secrets.token_urlsafe(32)) if bridge_plugin is not None else None
    admin_password = secrets.token_urlsafe(16)
    debug_log, server_log = workdir / "debug.log", workdir / "server.log"
    process: subprocess.Popen[bytes] | None = None

    server.run_sql(f"CREATE DATABASE `{db_name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        _copy_wordpress(root)
        if bridge_plugin is not None:
            shutil.copytree(bridge_plugin, root / "wp-content" / "plugins" / BRIDGE_PLUGIN_SLUG)
        mu_plugins = root / "wp-content" / "mu-plugins"
        mu_plugins.mkdir(exist_ok=True)
        (mu_plugins / "writer-images-test-site.php").write_text(_TEST_SITE_MU_PLUGIN)
        chosen_port = port or _free_port()
        config = _SiteConfig(root, db_name, server, debug_log, webhook_url, secret, site_key)
        config.write(chosen_port)
        credentials = _install(workdir, root, chosen_port, admin_password, bridge_plugin is not None)
        for attempt in range(3):
            process = _serve(workdir, root, chosen_port, server_log)
            if _wait_ready(process, f"http://127.0.0.1:{chosen_port}", server_log):
                break
            _stop(process)
            process = None
            if port is not None or attempt == 2:
                raise RuntimeError(f"php -S on port {chosen_port} did not start: {_tail(server_log)}")
            # Someone took the auto-picked port between picking and binding: pick again.
            chosen_port = _free_port()
            config.write(chosen_port)
        yield WordPressSite(
            base_url=f"http://127.0.0.1:{chosen_port}",
            admin_user="admin",
            admin_password=admin_password,
            app_password=credentials["admin_app_password"],
            editor_user="editor",
            editor_app_password=credentials["editor_app_password"],
            db_name=db_name,
            root_dir=root,
            bridge_secret=secret,
            site_key=site_key,
            debug_log=debug_log,
            server_log=server_log,
            database=server,
        )
    finally:
        if process is not None:
            _stop(process)
        server.run_sql(f"DROP DATABASE IF EXISTS `{db_name}`")
        # The copy is ≈56 MB; the logs stay in workdir for post-mortems.
        shutil.rmtree(root, ignore_errors=True)


def _copy_wordpress(root: Path) -> None:
    """Like `cp -a`, but the read-only core is hard-linked: ≈0.1 s instead of 0.4–2.7 s (56 MB) here.

    Only wp-content (plugins, uploads) and wp-config.php are written by a site, so those are real copies
    (wp-config.php is written fresh); DISALLOW_FILE_MODS keeps WordPress from editing core files, which
    would write through the links. Where linking is refused (another file system, protected_hardlinks),
    files are copied.
    """

    def link_or_copy(source: str, target: str) -> str:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        return target

    def written_by_the_site(directory: str, names: list[str]) -> set[str]:
        return {"wp-content", "wp-config.php"} if Path(directory) == WORDPRESS_SOURCE else set()

    shutil.copytree(
        WORDPRESS_SOURCE, root, symlinks=True, copy_function=link_or_copy, ignore=written_by_the_site
    )
    shutil.copytree(WORDPRESS_SOURCE / "wp-content", root / "wp-content", symlinks=True)


def _php(value: str) -> str:
    """A PHP single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class _SiteConfig:
    root: Path
    db_name: str
    mariadb: MariaDBServer
    debug_log: Path
    webhook_url: str | None
    bridge_secret: str | None
    site_key: str

    def write(self, port: int) -> None:
        url = f"http://127.0.0.1:{port}"
        constants: dict[str, str | bool] = {
            "DB_NAME": self.db_name,
            "DB_USER": self.mariadb.user,
            "DB_PASSWORD": self.mariadb.password,
            "DB_HOST": f"{self.mariadb.host}:{self.mariadb.port}",
            "DB_CHARSET": "utf8mb4",
            "DB_COLLATE": "",
            "WP_HOME": url,
            "WP_SITEURL": url,
            # Tests drive time themselves; cron over loopback HTTP would only add noise.
            "DISABLE_WP_CRON": True,
            # Application Passwords are refused over plain http unless the environment is local.
            "WP_ENVIRONMENT_TYPE": "local",
            "WP_DEBUG": True,
            "WP_DEBUG_LOG": str(self.debug_log),
            "WP_DEBUG_DISPLAY": False,
            "AUTOMATIC_UPDATER_DISABLED": True,
            "FS_METHOD": "direct",
            # Core files are hard links to the system's WordPress: no updates, no plugin or theme editor.
            "DISALLOW_FILE_MODS": True,
            # No internet here: fail fast instead of waiting on api.wordpress.org. Loopback stays allowed.
            "WP_HTTP_BLOCK_EXTERNAL": True,
        }
        for name in ("AUTH", "SECURE_AUTH", "LOGGED_IN", "NONCE"):
            constants[f"{name}_KEY"] = secrets.token_hex(32)
            constants[f"{name}_SALT"] = secrets.token_hex(32)
        if self.bridge_secret is not None:
            constants["WRITER_IMAGES_WEBHOOK_URL"] = self.webhook_url or ""
            constants["WRITER_IMAGES_WEBHOOK_SECRET"] = self.bridge_secret
            constants["WRITER_IMAGES_SITE_KEY"] = self.site_key
            host = urlsplit(self.webhook_url or "").hostname
            if host:
                constants["WP_ACCESSIBLE_HOSTS"] = host
        lines = [
            "<?php",
            "// Written by writer_images.testing.wordpress; Debian's config indirection is bypassed.",
        ]
        for name, value in constants.items():
            literal = ("true" if value else "false") if isinstance(value, bool) else _php(value)
            lines.append(f"define('{name}', {literal});")
        lines += [
            "$table_prefix = 'wp_';",
            "if (!defined('ABSPATH')) { define('ABSPATH', __DIR__ . '/'); }",
            "require_once ABSPATH . 'wp-settings.php';",
            "",
        ]
        (self.root / "wp-config.php").write_text("\n".join(lines))


_INSTALL_SCRIPT = r"""<?php
// Headless WordPress install. argv: site root, admin password, whether to activate the bridge plugin.
[$_, $root, $admin_password, $with_plugin] = $argv;
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = parse_url('__URL__', PHP_URL_HOST) . ':' . parse_url('__URL__', PHP_URL_PORT);
$_SERVER['REQUEST_URI'] = '/';
// upgrade.php only defines this when it does not exist yet: no "new site" e-mail.
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password) {}
require $root . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';

function fail($what) { fwrite(STDERR, $what . "\n"); exit(1); }

$installed = wp_install(
    'Writer Images test site', 'admin', 'admin@example.test', false, '', wp_slash($admin_password)
);
if (is_wp_error($installed)) { fail($installed->get_error_message()); }
// Without pretty permalinks /wp-json/ routes are not found.
global $wp_rewrite;
$wp_rewrite->set_permalink_structure('/%postname%/');
flush_rewrite_rules(false);

$editor_id = wp_insert_user([
    'user_login' => 'editor', 'user_pass' => wp_generate_password(20), 'user_email' => 'editor@example.test',
    'role' => 'editor', 'display_name' => 'Editor',
]);
if (is_wp_error($editor_id)) { fail($editor_id->get_error_message()); }

$passwords = [];
$users = ['admin_app_password' => $installed['user_id'], 'editor_app_password' => $editor_id];
foreach ($users as $key => $user_id) {
    $created = WP_Application_Passwords::create_new_application_password(
        $user_id, ['name' => 'writer-images']
    );
    if (is_wp_error($created)) { fail($created->get_error_message()); }
    $passwords[$key] = $created[0];
}
if ($with_plugin === '1') {
    $activated = activate_plugin('writer-images-bridge/writer-images-bridge.php');
    if (is_wp_error($activated)) { fail($activated->get_error_message()); }
}
echo json_encode($passwords);
"""

# A must-use plugin for test sites only: WordPress 6.1's bundled libraries log PHP 8.2 deprecations on every
# request, and admin pages check wordpress.org for updates (offline here): both would bury our own log lines.
_TEST_SITE_MU_PLUGIN = r"""<?php
error_reporting(E_ALL & ~E_DEPRECATED & ~E_USER_DEPRECATED);
remove_action('admin_init', '_maybe_update_core');
remove_action('admin_init', '_maybe_update_plugins');
remove_action('admin_init', '_maybe_update_themes');
"""

_ROUTER = r"""<?php
// php -S router: real files (and real .php scripts, directory index.php) are served by the built-in
// server; everything else goes to WordPress's front controller, as Apache's rewrite rules would do.
$root = rtrim($_SERVER['DOCUMENT_ROOT'], '/');
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');
if ($path !== '/' && (is_file($root . $path) || is_file(rtrim($root . $path, '/') . '/index.php'))) {
    return false;
}
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = '/index.php';
$_SERVER['SCRIPT_FILENAME'] = $root . '/index.php';
chdir($root);
require $root . '/index.php';
"""


def _install(workdir: Path, root: Path, port: int, admin_password: str, with_plugin: bool) -> dict[str, str]:
    script = workdir / "install.php"
    script.write_text(_INSTALL_SCRIPT.replace("__URL__", f"http://127.0.0.1:{port}"))
    done = subprocess.run(
        [_php_binary(), str(script), str(root), admin_password, "1" if with_plugin else "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"WordPress install failed: {done.stderr.strip()} {done.stdout.strip()}")
    # WordPress may print notices before the JSON; the JSON is the last line.
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _serve(workdir: Path, root: Path, port: int, server_log: Path) -> subprocess.Popen[bytes]:
    router = workdir / "router.php"
    router.write_text(_ROUTER)
    # 4 workers: WordPress may call a service that calls WordPress back; one worker would deadlock.
    env = {**os.environ, "PHP_CLI_SERVER_WORKERS": "4"}
    php_settings = [
        "opcache.enable_cli=1",
        "post_max_size=64M",
        "upload_max_filesize=64M",
        "memory_limit=512M",
    ]
    command = [_php_binary(), *(arg for setting in php_settings for arg in ("-d", setting))]
    command += ["-S", f"127.0.0.1:{port}", "-t", str(root), str(router)]
    with server_log.open("ab") as log:
        # A session of its own (setsid) so that teardown can kill the server and all its workers at once.
        return subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, server_log: Path) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/wp-json/", timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"WordPress at {base_url} not ready after {READY_TIMEOUT_S} s: {_tail(server_log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _php_binary() -> str:
    php = shutil.which("php")
    if php is None:
        raise RuntimeError(f"no `php` on PATH (apt-get install {APT_PACKAGES})")
    return php


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
