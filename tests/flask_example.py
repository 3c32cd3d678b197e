"""Processes that serve examples/flask for the tests: rq worker and servers.

Each process runs this interpreter's virtualenv, logs to a file in its own
temporary directory and is stopped by its pid.
"""

from __future__ import absolute_import, unicode_literals

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from six.moves import http_client

from servers import free_port, wait_for_port

TESTS_DIRECTORY = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIRECTORY = os.path.dirname(TESTS_DIRECTORY)
EXAMPLE_DIRECTORY = os.path.join(PROJECT_DIRECTORY, "examples", "flask")
BIN_DIRECTORY = os.path.dirname(sys.executable)

# Long enough for a process that starts on a busy machine.
START_TIMEOUT = 30.0


def script(name):
    """Return the path of a console script of this virtualenv, or None."""
    path = os.path.join(BIN_DIRECTORY, name)
    return path if os.access(path, os.X_OK) else None


def lifecycle_order(names):
    """Return the event ``names`` with a leading dequeue, enqueue pair swapped.

    NOTE: NotifyingQueue publishes "enqueue" after it has pushed the job, so
    a worker that takes the job at once can publish "dequeue" first. It
    happened in about one of twelve runs of the gunicorn test.
    """
    names = list(names)
    if names[:2] == ["dequeue", "enqueue"]:
        names[:2] = ["enqueue", "dequeue"]
    return names


class BackgroundProcess(object):
    """A subprocess in ``examples/flask`` whose output goes to a log file."""

    def __init__(self, command, environment=None):
        self.command = command
        self.directory = tempfile.mkdtemp(prefix="job-notifier-flask-")
        self.log_path = os.path.join(self.directory, "output.log")
        self.environment = dict(os.environ)
        # The processes import job_notifier from this checkout even where
        # the package is not installed in the virtualenv.
        self.environment["PYTHONPATH"] = os.pathsep.join(
            [PROJECT_DIRECTORY] + [path for path in
                                   [os.environ.get("PYTHONPATH")] if path])
        self.environment.pop("JOB_NOTIFIER_URL", None)
        self.environment.update(environment or {})
        self.process = None

    def start(self):
        # A session of its own makes the process the leader of a process
        # group, so stop() can also end the children it leaves behind.
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command, cwd=EXAMPLE_DIRECTORY, env=self.environment,
                stdout=log_file, stderr=subprocess.STDOUT,
                preexec_fn=os.setsid)
        return self

    def log(self):
        with open(self.log_path, "rb") as log_file:
            return log_file.read().decode("utf-8", "replace")

    def check_running(self):
        if self.process.poll() is not None:
            raise RuntimeError("%s exited with status %s:\n%s" % (
                self.command[0], self.process.returncode, self.log()))

    def stop(self, timeout=10.0):
        process, self.process = self.process, None
        if process is None:
            return
        # SIGTERM is a graceful stop for rq, gunicorn and the Flask server;
        # SIGKILL follows if the process is still there after the timeout.
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            deadline = time.time() + timeout
            while process.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        # The Werkzeug reloader's serving child outlives its parent.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                raise

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_rq_worker(redis_url):
    """Start ``rq worker -w job_notifier.contrib.rq.NotifyingWorker``."""
    import redis

    name = "flask-example-%s" % uuid.uuid4().hex[:8]
    worker = BackgroundProcess([
        script("rq"), "worker", "--worker-class",
        "job_notifier.contrib.rq.NotifyingWorker", "--url", redis_url,
        "--name", name, "--path", EXAMPLE_DIRECTORY]).start()
    client = redis.Redis.from_url(redis_url)
    deadline = time.time() + START_TIMEOUT
    while not client.exists("rq:worker:%s" % name):
        try:
            worker.check_running()
            if time.time() > deadline:
                raise RuntimeError("rq worker did not register within %s "
                                   "seconds:\n%s" % (START_TIMEOUT,
                                                     worker.log()))
        except RuntimeError:
            worker.cleanup()
            raise
        time.sleep(0.05)
    return worker


def start_web_server(command, port, environment):
    """Start a server of the example app and wait until it accepts requests."""
    server = BackgroundProcess(command, environment).start()
    try:
        wait_for_port(port, timeout=START_TIMEOUT)
        server.check_running()
    except RuntimeError:
        server.cleanup()
        raise
    return server


def start_gunicorn(redis_url, workers=2):
    """Start ``gunicorn --preload`` with sync workers; return (server, port).

    Its access log lines are "<pid> METHOD PATH STATUS".
    """
    port = free_port()
    command = [script("gunicorn"), "--preload", "--workers", str(workers),
               "--bind", "127.0.0.1:%d" % port, "--timeout", "60",
               "--access-logfile", "-",
               "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"]
    if _gunicorn_has_control_socket():
        # Every gunicorn of the machine would share the default path.
        command.append("--no-control-socket")
    command.append("app:create_app()")
    server = start_web_server(command, port, {"REDIS_URL": redis_url})
    return server, port


def _gunicorn_has_control_socket():
    from gunicorn.config import KNOWN_SETTINGS

    return any(getattr(setting, "cli", None) == ["--no-control-socket"]
               for setting in KNOWN_SETTINGS)


def start_flask_server(redis_url, reload=False):
    """Start ``python -m flask run``; return (server, port)."""
    port = free_port()
    server = start_web_server([
        sys.executable, "-m", "flask", "run", "--host", "127.0.0.1",
        "--port", str(port), "--reload" if reload else "--no-reload"],
        port, {"REDIS_URL": redis_url, "FLASK_APP": "app"})
    return server, port


class Client(object):
    """HTTP requests to the example app on 127.0.0.1."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None):
        """Send a request; return (status, decoded JSON or text)."""
        connection = http_client.HTTPConnection("127.0.0.1", self.port,
                                                timeout=START_TIMEOUT)
        try:
            headers = {}
            if body is not None:
                body = json.dumps(body)
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8")
        finally:
            connection.close()
        if response.getheader("Content-Type", "").startswith(
                "application/json"):
            return response.status, json.loads(text)
        return response.status, text

    def open_stream(self, path):
        """Open an event stream; return it once the subscription is made."""
        return EventStream(self.port, path)


class EventStream(object):
    """A ``text/event-stream`` response read as it arrives."""

    def __init__(self, port, path):
        self.connection = http_client.HTTPConnection("127.0.0.1", port,
                                                     timeout=START_TIMEOUT)
        self.connection.request("GET", path,
                                headers={"Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        if self.response.status != 200:
            raise RuntimeError("event stream %s returned HTTP %d: %s" % (
                path, self.response.status, self.response.read()))
        self.text = ""
        self.read_until(": subscribed")

    def read_until(self, needle):
        """Read until ``needle`` and the end of its SSE message arrived."""
        while needle not in self.text or "\n\n" not in self.text[
                self.text.index(needle):]:
            # read1() returns what has arrived; Python 2.7 has only read(n).
            reader = getattr(self.response, "read1", None)
            chunk = reader(4096) if reader else self.response.read(1)
            if not chunk:
                raise RuntimeError("the stream ended before %r:\n%s"
                                   % (needle, self.text))
            self.text += chunk.decode("utf-8")
        return self.text

    def read_to_end(self):
        """Read until the server ends the response; return all its text."""
        self.text += self.response.read().decode("utf-8")
        return self.text

    def close(self):
        self.connection.close()
