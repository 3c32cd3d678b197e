"""A real PostgreSQL server for the test suite, in a temporary directory.

``initdb`` creates a cluster with trust authentication. The server listens
on a free port of 127.0.0.1 only and puts its Unix socket inside the
temporary directory. PostgreSQL does not run as root, so when the suite runs
as root (as in CI) every server command runs as the unprivileged
``postgres`` user through ``runuser``, and that user owns the temporary
directory.
"""

from __future__ import absolute_import, print_function, unicode_literals

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from servers import find_executable, free_port

SERVER_USER = "postgres"
SUPERUSER = "postgres"
DATABASE = "postgres"

# Settings for a throwaway cluster: durability is not needed, a fast start
# and a small memory footprint are.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = %(port)d
unix_socket_directories = '%(socket_dir)s'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 100
logging_collector = off
"""


def _postgres_bin_dirs():
    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


class PostgresServer(object):
    """A PostgreSQL cluster of its own, controlled with ``pg_ctl``.

    ``restart()`` keeps the port and the data. ``freeze()`` and ``thaw()``
    send SIGSTOP and SIGCONT to the postmaster and every backend, so tests
    can simulate a server that stops responding.
    """

    def __init__(self):
        extra_dirs = _postgres_bin_dirs()
        self.initdb = find_executable("initdb", extra_dirs)
        self.pg_ctl = find_executable("pg_ctl", extra_dirs)
        if self.initdb is None or self.pg_ctl is None:
            raise RuntimeError("initdb and pg_ctl of PostgreSQL are not "
                               "installed: run 'make test', which installs "
                               "PostgreSQL with apt-get")
        self.run_as = []
        owner = None
        if os.geteuid() == 0:
            runuser = find_executable("runuser", ["/usr/sbin", "/sbin"])
            if runuser is None:
                raise RuntimeError("runuser is missing, and PostgreSQL does "
                                   "not run as root: install util-linux or "
                                   "run the tests as an unprivileged user")
            self.run_as = [runuser, "-u", SERVER_USER, "--"]
            owner = pwd.getpwnam(SERVER_USER)
        self.directory = tempfile.mkdtemp(prefix="job-notifier-pg-")
        if owner is not None:
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        self.data_dir = os.path.join(self.directory, "data")
        self.log_file = os.path.join(self.directory, "postgres.log")
        self.port = free_port()
        try:
            self._initdb()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    @property
    def url(self):
        return "postgresql://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port,
                                                    DATABASE)

    def _run(self, command, timeout=60):
        process = subprocess.Popen(self.run_as + command, cwd=self.directory,
                                   stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError("%s failed with exit status %d:\n%s\n%s" % (
                " ".join(command), process.returncode,
                output.decode("utf-8", "replace"), self.log_tail()))
        return output

    def _initdb(self):
        self._run([self.initdb, "-D", self.data_dir, "-U", SUPERUSER,
                   "-E", "UTF8", "--locale=C", "--auth=trust", "--no-sync"])
        settings = SETTINGS % {"port": self.port, "socket_dir": self.directory}
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as conf:
            conf.write(settings)

    def start(self):
        self._run([self.pg_ctl, "start", "-D", self.data_dir, "-l",
                   self.log_file, "-w", "-t", "60"])
        return self

    def stop(self, mode="fast"):
        """Stop the server with ``pg_ctl stop -m mode`` if it is running."""
        if self.pid() is None:
            return
        self.thaw()
        self._run([self.pg_ctl, "stop", "-D", self.data_dir, "-m", mode,
                   "-w", "-t", "60"])

    def restart(self):
        """Restart with ``pg_ctl restart``, which closes every connection."""
        self._run([self.pg_ctl, "restart", "-D", self.data_dir, "-m", "fast",
                   "-l", self.log_file, "-w", "-t", "60"])

    def pid(self):
        """Return the postmaster's pid, or None if no server is running."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as handle:
                pid = int(handle.readline())
        except (IOError, OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def _server_pids(self):
        postmaster = self.pid()
        if postmaster is None:
            return []
        pids = [postmaster]
        for stat_path in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat_path) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (IOError, OSError, IndexError):
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat_path.split("/")[2]))
        return pids

    def _signal_all(self, signum):
        for pid in self._server_pids():
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    def freeze(self):
        self._signal_all(signal.SIGSTOP)

    def thaw(self):
        self._signal_all(signal.SIGCONT)

    def connect(self, autocommit=True):
        """Return a psycopg2 connection for setting up and inspecting tests."""
        import psycopg2
        connection = psycopg2.connect(self.url, connect_timeout=5,
                                      application_name="job_notifier tests")
        connection.autocommit = autocommit
        return connection

    def query(self, sql, parameters=None):
        """Run ``sql`` on a new connection and return every row."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def psql(self, command):
        """Run ``psql -c command`` against the server and return its output."""
        psql = find_executable("psql", _postgres_bin_dirs())
        output = subprocess.check_output(
            [psql, "-X", "-h", "127.0.0.1", "-p", str(self.port), "-U",
             SUPERUSER, "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-c",
             command], stderr=subprocess.STDOUT)
        return output.decode("utf-8", "replace")

    def add_password_role(self, role, password):
        """Create login ``role`` that must send ``password`` over TCP.

        The cluster trusts every other role, so the suite's own connections
        need no password. The rule uses scram-sha-256, which is also the
        default password encryption of PostgreSQL 14 and newer.
        """
        self.query("CREATE ROLE %s LOGIN PASSWORD %%s" % role, (password,))
        hba_path = os.path.join(self.data_dir, "pg_hba.conf")
        with open(hba_path) as handle:
            rules = handle.read()
        # The first matching line wins, so the rule goes before trust.
        with open(hba_path, "w") as handle:
            handle.write("host all %s 127.0.0.1/32 scram-sha-256\n%s"
                         % (role, rules))
        self._run([self.pg_ctl, "reload", "-D", self.data_dir])
        # The postmaster reloads after pg_ctl returns: wait until a
        # connection without the password is rejected.
        import psycopg2
        deadline = time.time() + 10
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.port, user=role,
                                 dbname=DATABASE, connect_timeout=5).close()
            except psycopg2.OperationalError:
                return
            if time.time() > deadline:
                raise RuntimeError("pg_hba.conf rule for role %s was not "
                                   "loaded within 10 seconds" % role)
            time.sleep(0.05)

    def log_tail(self, lines=20):
        try:
            with open(self.log_file) as handle:
                return "".join(handle.readlines()[-lines:])
        except (IOError, OSError):
            return ""

    def cleanup(self):
        """Stop the server at once and delete its directory."""
        try:
            self.stop(mode="immediate")
        except RuntimeError:
            pid = self.pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 10
        while self.pid() is not None and time.time() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.directory, ignore_errors=True)
