"""``job-notifier broker`` as a test server, run as a subprocess.

The broker needs Python 3.9+ with websockets, while the client tests also
run on Python 2.7, so the broker runs under the first interpreter found:
``$JOB_NOTIFIER_BROKER_PYTHON``, the running one, ``.venv/py311`` of this
repository, then pyenv's 3.9 and newer.
"""

from __future__ import absolute_import, print_function, unicode_literals

import glob
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

import six
from six.moves.urllib.request import Request, urlopen

from servers import ServerProcess, free_port, wait_for_port

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_ENVIRONMENT_VARIABLE = "JOB_NOTIFIER_BROKER_PYTHON"

_CHECK = ("import sys, websockets; "
          "sys.exit(0 if sys.version_info >= (3, 9) and "
          "int(websockets.__version__.split('.')[0]) >= 13 else 1)")

_found_python = []


def _can_run_broker(python):
    if not python or not os.path.isfile(python):
        return False
    with open(os.devnull, "wb") as devnull:
        return subprocess.call([python, "-c", _CHECK], stdout=devnull,
                               stderr=devnull) == 0


def broker_python():
    """Return a Python 3.9+ interpreter with websockets 13+, or None."""
    if _found_python:
        return _found_python[0]
    candidates = [os.environ.get(PYTHON_ENVIRONMENT_VARIABLE), sys.executable,
                  os.path.join(REPOSITORY, ".venv", "py311", "bin", "python")]
    pyenv_root = os.environ.get("PYENV_ROOT",
                                os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.*",
                                                "bin", "python")),
                         reverse=True)
    found = None
    for python in candidates:
        if _can_run_broker(python):
            found = python
            break
    _found_python.append(found)
    return found


class BrokerServer(ServerProcess):
    """A broker process on a free loopback port.

    ``restart()`` keeps the port; ``kill()``, ``freeze()`` and ``thaw()``
    send SIGKILL, SIGSTOP and SIGCONT, so tests can inject faults.
    """

    def __init__(self, token=None, allowed_origins=(), max_message_bytes=None,
                 ping_interval=None, ping_timeout=None, certfile=None,
                 keyfile=None):
        self.python = broker_python()
        if self.python is None:
            raise RuntimeError(
                "no Python 3.9+ with websockets 13+ found to run the broker: "
                "set %s to one" % PYTHON_ENVIRONMENT_VARIABLE)
        self.directory = tempfile.mkdtemp(prefix="job-notifier-broker-")
        self.port = free_port()
        self.token = token
        self.certfile = certfile
        self.arguments = ["--host", "127.0.0.1", "--port", str(self.port),
                          "--log-level", "debug"]
        for origin in allowed_origins:
            self.arguments += ["--allow-origin", origin]
        for option, value in (("--max-message-size", max_message_bytes),
                              ("--ping-interval", ping_interval),
                              ("--ping-timeout", ping_timeout),
                              ("--certfile", certfile),
                              ("--keyfile", keyfile)):
            if value is not None:
                self.arguments += [option, str(value)]
        self.log_path = os.path.join(self.directory, "broker.log")
        self.process = None

    @property
    def scheme(self):
        return "wss" if self.certfile else "ws"

    @property
    def url(self):
        """The bus URL without a topic, so each test's channel picks one."""
        return "%s://127.0.0.1:%d/bus/" % (self.scheme, self.port)

    @property
    def http_url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.certfile else "http",
                                      self.port)

    def start(self):
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [REPOSITORY] + [path for path in
                            [environment.get("PYTHONPATH")] if path])
        environment.pop("JOB_NOTIFIER_BROKER_TOKEN", None)
        if self.token:
            environment["JOB_NOTIFIER_BROKER_TOKEN"] = self.token
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [self.python, "-m", "job_notifier.broker"] + self.arguments,
                stdout=log_file, stderr=subprocess.STDOUT, cwd=self.directory,
                env=environment)
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError("the broker did not start; its log:\n%s"
                               % self.log())
        return self

    def kill(self):
        """Kill the broker with SIGKILL, as a crash would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def log(self):
        with open(self.log_path, "rb") as log_file:
            return log_file.read().decode("utf-8", "replace")

    def request(self, path, data=None, headers=None):
        """Send an HTTP request to the broker; return the response."""
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = "Bearer %s" % self.token
        # Python 2.7's httplib joins the head and a bytes body, so the head
        # must be native strings too.
        request = Request(six.ensure_str(self.http_url + path), data=data,
                          headers=dict((six.ensure_str(name),
                                        six.ensure_str(value))
                                       for name, value in headers.items()))
        options = {}
        if self.certfile:
            options["context"] = ssl.create_default_context(
                cafile=self.certfile)
        return urlopen(request, timeout=5, **options)

    def stats(self):
        """Return the broker's ``GET /stats`` document."""
        response = self.request("/stats")
        try:
            return json.loads(response.read().decode("utf-8"))
        finally:
            response.close()

    def peers(self, topic):
        return self.stats()["topics"].get(topic, [])

    def post(self, topic, body, headers=None):
        """POST ``body`` to ``/bus/<topic>``; return (status, text)."""
        if not isinstance(body, bytes):
            body = body.encode("utf-8")
        response = self.request("/bus/%s" % topic, data=body,
                                 headers=headers)
        try:
            return response.getcode(), response.read().decode("utf-8")
        finally:
            response.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def wait_until(condition, timeout=5.0):
    """Poll ``condition`` until it is true; return its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def start_broker(**options):
    """Start a ``BrokerServer``, or skip the test if no interpreter can."""
    import pytest
    if broker_python() is None:
        pytest.skip("no Python 3.9+ with websockets 13+ to run the broker: "
                    "set %s" % PYTHON_ENVIRONMENT_VARIABLE)
    return BrokerServer(**options).start()


def make_certificate(directory):
    """Write a self-signed certificate for 127.0.0.1; return (cert, key)."""
    import pytest
    certfile = os.path.join(directory, "cert.pem")
    keyfile = os.path.join(directory, "key.pem")
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
               "-keyout", keyfile, "-out", certfile, "-days", "1",
               "-subj", "/CN=127.0.0.1",
               "-addext", "subjectAltName=IP:127.0.0.1"]
    try:
        with open(os.devnull, "wb") as devnull:
            status = subprocess.call(command, stdout=devnull, stderr=devnull)
    except OSError:
        status = None
    if status != 0:
        pytest.skip("openssl could not make a test certificate")
    return certfile, keyfile


def raw_client(server, topic, query="", **options):
    """Open a plain websocket-client connection to ``/bus/<topic>``."""
    import websocket
    url = "%s://127.0.0.1:%d/bus/%s%s" % (server.scheme, server.port, topic,
                                          query)
    options.setdefault("suppress_origin", True)
    return websocket.create_connection(url, timeout=5, **options)
