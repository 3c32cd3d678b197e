"""Real servers for the test suite, started in temporary directories.

Each server listens on a free port on 127.0.0.1 and is stopped by its pid.
"""

from __future__ import absolute_import, print_function, unicode_literals

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def wait_for_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except (OSError, socket.error):
            time.sleep(0.02)
    raise RuntimeError("nothing listens on %s:%d after %s seconds"
                       % (host, port, timeout))


def find_executable(name, extra_dirs=()):
    for directory in list(extra_dirs) + os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


class ServerProcess(object):
    """Fault injection for a server whose ``subprocess.Popen`` is ``process``.

    ``restart()`` keeps the port, ``freeze()`` and ``thaw()`` send SIGSTOP
    and SIGCONT. Subclasses provide ``start()``.
    """

    process = None

    def stop(self):
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            os.kill(process.pid, signal.SIGTERM)
            try:
                _wait(process, 10)
            except RuntimeError:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def restart(self, down_seconds=0.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def freeze(self):
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.process.pid, signal.SIGCONT)


class RedisServer(ServerProcess):
    """A redis-server process on a free loopback port.

    ``restart()`` keeps the port, ``freeze()`` and ``thaw()`` send SIGSTOP
    and SIGCONT, so tests can inject faults.
    """

    def __init__(self, password=None):
        self.executable = find_executable("redis-server")
        if self.executable is None:
            raise RuntimeError("redis-server is not installed: run "
                               "'make test', which installs it with apt-get")
        self.directory = tempfile.mkdtemp(prefix="job-notifier-redis-")
        self.port = free_port()
        self.password = password
        self.process = None

    @property
    def url(self):
        if self.password:
            return "redis://:%s@127.0.0.1:%d/0" % (self.password, self.port)
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        command = [self.executable, "--port", str(self.port),
                   "--bind", "127.0.0.1", "--dir", self.directory,
                   "--save", "", "--appendonly", "no",
                   "--logfile", os.path.join(self.directory, "redis.log")]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command)
        wait_for_port(self.port)
        return self

    def client(self):
        import redis
        return redis.Redis.from_url(self.url)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _wait(process, timeout):
    deadline = time.time() + timeout
    while process.poll() is None:
        if time.time() > deadline:
            raise RuntimeError("process %d did not exit" % process.pid)
        time.sleep(0.02)


def terminate(process, timeout=10.0):
    """Stop a subprocess by its pid: SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        _wait(process, timeout)
    except RuntimeError:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
