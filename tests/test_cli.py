# -*- coding: utf-8 -*-
"""The job-notifier command, run as a subprocess against real servers."""

from __future__ import absolute_import, print_function, unicode_literals

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
from six.moves import queue as queue_module

from broker_server import broker_python
from servers import RedisServer, free_port, wait_for_port
from job_notifier import Notifier

PROJECT_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Generous: the machine may be busy with other test runs.
LINE_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def cli_environment(**overrides):
    """Return the environment for a job-notifier subprocess."""
    environment = dict(os.environ)
    environment.pop(str("JOB_NOTIFIER_URL"), None)
    # The subprocess imports job_notifier from this checkout.
    environment[str("PYTHONPATH")] = os.pathsep.join(
        [PROJECT_DIRECTORY] + [path for path in
                               [os.environ.get("PYTHONPATH")] if path])
    for name, value in overrides.items():
        environment[str(name)] = str(value)
    return environment


def run_cli(arguments, timeout=EXIT_TIMEOUT, environment=None,
            python=sys.executable):
    """Run job-notifier to its end; return (status, stdout, stderr) as text."""
    process = subprocess.Popen(
        [python, "-m", "job_notifier"] + list(arguments),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=environment or cli_environment())
    # Python 2.7's communicate() has no timeout, so a timer kills a hung run.
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        stdout, stderr = process.communicate()
    finally:
        timer.cancel()
    return (process.returncode, stdout.decode("utf-8"),
            stderr.decode("utf-8"))


def restore_sigint():
    # A suite started in the background of a non-interactive shell ignores
    # SIGINT, and so would its children; the tests send them SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class CliProcess(object):
    """A running job-notifier subprocess whose output lines are read live."""

    def __init__(self, arguments, environment=None, python=sys.executable,
                 read_stdout=True):
        self.process = subprocess.Popen(
            [python, "-m", "job_notifier"] + list(arguments),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environment or cli_environment(),
            preexec_fn=restore_sigint)
        self.stdout_lines = queue_module.Queue()
        self.stderr_lines = []
        self._stderr_changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read_stderr)]
        # Without a reader thread the test may close stdout: closing a pipe
        # that another thread is reading would block until that read ends.
        if read_stdout:
            self._readers.append(threading.Thread(target=self._read_stdout))
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read_stdout(self):
        for line in iter(self.process.stdout.readline, b""):
            self.stdout_lines.put(line.decode("utf-8").rstrip("\n"))

    def _read_stderr(self):
        for line in iter(self.process.stderr.readline, b""):
            with self._stderr_changed:
                self.stderr_lines.append(line.decode("utf-8").rstrip("\n"))
                self._stderr_changed.notify_all()

    def next_line(self, timeout=LINE_TIMEOUT):
        """Return the next stdout line; fail the test after ``timeout``."""
        try:
            return self.stdout_lines.get(timeout=timeout)
        except queue_module.Empty:
            pytest.fail("no output line within %s seconds; stderr:\n%s"
                        % (timeout, self.stderr()))

    def wait_for_stderr(self, text, timeout=LINE_TIMEOUT):
        deadline = time.time() + timeout
        with self._stderr_changed:
            while not any(text in line for line in self.stderr_lines):
                remaining = deadline - time.time()
                if remaining <= 0 or self.process.poll() is not None:
                    pytest.fail("%r not on stderr within %s seconds; "
                                "stderr:\n%s" % (text, timeout, self.stderr()))
                self._stderr_changed.wait(min(remaining, 0.1))

    def stderr(self):
        with self._stderr_changed:
            return "\n".join(self.stderr_lines)

    def interrupt(self):
        os.kill(self.process.pid, signal.SIGINT)

    def wait(self, timeout=EXIT_TIMEOUT):
        """Return the exit status; kill the process and fail after ``timeout``."""
        deadline = time.time() + timeout
        while self.process.poll() is None:
            if time.time() > deadline:
                self.kill()
                pytest.fail("job-notifier did not exit within %s seconds; "
                            "stderr:\n%s" % (timeout, self.stderr()))
            time.sleep(0.02)
        for reader in self._readers:
            reader.join(5)
        return self.process.returncode

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def cli_processes():
    """Start ``CliProcess`` objects that are killed if a test leaves them."""
    started = []

    def start(arguments, **options):
        process = CliProcess(arguments, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def channel():
    return "cli_%d_%d" % (os.getpid(), random.randint(0, 10 ** 9))


@pytest.fixture
def sender(redis_server, channel):
    notifier = Notifier.from_url(redis_server.url, channel=channel)
    yield notifier
    notifier.close()


@pytest.fixture(scope="module")
def password_redis_server():
    server = RedisServer(password="pw-%d-secret" % random.randint(0, 10 ** 9))
    server.start()
    yield server
    server.cleanup()


def start_listener(cli_processes, url, channel, *options):
    listener = cli_processes(["listen", "--url", url, "--channel", channel]
                             + list(options))
    listener.wait_for_stderr("listening on")
    return listener


def assert_one_error_line(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("job-notifier: error: "), stderr
    assert "Traceback" not in stderr


# listen


def test_listen_prints_text_lines(cli_processes, redis_server, channel,
                                  sender):
    """Each event is one line: time, job id, event, then extras as JSON."""
    listener = start_listener(cli_processes, redis_server.url, channel)
    sender.notify(42, "enqueue")
    sender.notify("job-ü", "finished")
    sender.notify("7", "failed", extras={"error": "ValueError: bad input"})

    lines = [listener.next_line() for _ in range(3)]
    assert re.match(r"^%s 42 enqueue$" % TIMESTAMP, lines[0]), lines
    assert re.match(r"^%s job-ü finished$" % TIMESTAMP, lines[1]), lines
    assert re.match(r"^%s 7 failed " % TIMESTAMP, lines[2]), lines
    assert json.loads(lines[2].split(" ", 3)[3]) == {
        "error": "ValueError: bad input"}

    listener.interrupt()
    assert listener.wait() == 0
    assert "Traceback" not in listener.stderr()


def test_listen_prints_json_lines(cli_processes, redis_server, channel,
                                  sender):
    listener = start_listener(cli_processes, redis_server.url, channel,
                              "--json")
    sender.notify(42, "dequeue")
    sender.notify("b", "failed", extras={"error": "E: m", "queue": "q"})

    first = json.loads(listener.next_line())
    second = json.loads(listener.next_line())
    assert sorted(first) == ["event", "extras", "job_id", "time"]
    assert re.match("^%s$" % TIMESTAMP, first["time"])
    assert (first["job_id"], first["event"], first["extras"]) == (
        "42", "dequeue", {})
    assert (second["job_id"], second["event"], second["extras"]) == (
        "b", "failed", {"error": "E: m", "queue": "q"})

    listener.interrupt()
    assert listener.wait() == 0


def test_listen_filters_jobs_and_events(cli_processes, redis_server, channel,
                                        sender):
    listener = start_listener(cli_processes, redis_server.url, channel,
                              "--job", "1", "--job", "2",
                              "--event", "finished", "--event", "failed")
    sender.notify(1, "dequeue")
    sender.notify(3, "finished")
    sender.notify(1, "finished")
    sender.notify(2, "enqueue")
    sender.notify(2, "failed")

    lines = [listener.next_line().split(" ", 1)[1] for _ in range(2)]
    assert lines == ["1 finished", "2 failed"]
    # Events are delivered in order, so once this last one is printed the
    # filtered-out ones before it can no longer appear.
    assert listener.stdout_lines.empty()

    listener.interrupt()
    assert listener.wait() == 0


def test_listen_exits_when_stdout_closes(cli_processes, redis_server, channel,
                                         sender):
    """A closed pipe, as with '| head -1', ends listen quietly with 0."""
    listener = cli_processes(["listen", "--url", redis_server.url,
                              "--channel", channel], read_stdout=False)
    listener.wait_for_stderr("listening on")
    sender.notify(1, "finished")
    readable, _, _ = select.select([listener.process.stdout], [], [],
                                   LINE_TIMEOUT)
    assert readable, listener.stderr()
    assert listener.process.stdout.readline().endswith(b" 1 finished\n")
    listener.process.stdout.close()
    sender.notify(2, "finished")
    assert listener.wait() == 0
    assert "Traceback" not in listener.stderr()


# emit


def test_emit_reaches_listener_in_other_process(cli_processes, redis_server,
                                                channel):
    listener = start_listener(cli_processes, redis_server.url, channel,
                              "--json")
    received = []
    receiver = Notifier.from_url(redis_server.url, channel=channel)
    try:
        receiver.on("job", lambda notifier, job_id, event, extras:
                    received.append((job_id, event, extras)),
                    with_extras=True)
        receiver.start()

        status, stdout, stderr = run_cli(
            ["emit", "--url", redis_server.url, "--channel", channel, "99",
             "failed", "--extras", '{"error": "RuntimeError: boom"}'])
        assert status == 0, stderr
        assert "sent failed for job 99" in stderr

        line = json.loads(listener.next_line())
        assert (line["job_id"], line["event"], line["extras"]) == (
            "99", "failed", {"error": "RuntimeError: boom"})
        deadline = time.time() + LINE_TIMEOUT
        while not received and time.time() < deadline:
            time.sleep(0.02)
        assert received == [("99", "failed", {"error": "RuntimeError: boom"})]
    finally:
        receiver.close()
    listener.interrupt()
    assert listener.wait() == 0


def test_emit_rejects_unknown_event(redis_server):
    status, stdout, stderr = run_cli(
        ["emit", "--url", redis_server.url, "1", "done"])
    assert status == 64
    assert "invalid choice: 'done'" in stderr
    assert "finished" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_emit_rejects_extras_that_are_not_an_object(redis_server):
    status, stdout, stderr = run_cli(
        ["emit", "--url", redis_server.url, "1", "failed", "--extras", "[1]"])
    assert status == 64
    assert "invalid extras '[1]': pass a JSON object" in stderr


# wait


@pytest.mark.parametrize("event, expected_status", [
    ("finished", 0),
    ("failed", 1),
])
def test_wait_exit_status(cli_processes, redis_server, channel, sender, event,
                          expected_status):
    waiter = cli_processes(["wait", "job-7", "--timeout", "30", "--url",
                            redis_server.url, "--channel", channel])
    waiter.wait_for_stderr("waiting for job job-7")
    sender.notify("job-7", event, extras={"queue": "default"})

    assert waiter.wait() == expected_status
    line = waiter.next_line()
    assert re.match(r"^%s job-7 %s \{\"queue\": \"default\"\}$"
                    % (TIMESTAMP, event), line), line


def test_wait_ignores_other_jobs_and_events(cli_processes, redis_server,
                                            channel, sender):
    waiter = cli_processes(["wait", "5", "--timeout", "30", "--json", "--url",
                            redis_server.url, "--channel", channel])
    waiter.wait_for_stderr("waiting for job 5")
    sender.notify(6, "failed")
    sender.notify(5, "dequeue")
    sender.notify(5, "finished")

    assert waiter.wait() == 0
    line = json.loads(waiter.next_line())
    assert (line["job_id"], line["event"]) == ("5", "finished")


def test_wait_timeout_exits_2(redis_server, channel):
    status, stdout, stderr = run_cli(
        ["wait", "never", "--timeout", "0.5", "--url", redis_server.url,
         "--channel", channel])
    assert status == 2
    assert stdout == ""
    assert ("job never did not finish or fail within 0.5 seconds"
            in stderr), stderr
    assert "Traceback" not in stderr


def test_wait_interrupted_exits_130(cli_processes, redis_server, channel):
    waiter = cli_processes(["wait", "x", "--url", redis_server.url,
                            "--channel", channel])
    waiter.wait_for_stderr("waiting for job x")
    waiter.interrupt()
    assert waiter.wait() == 130
    assert "Traceback" not in waiter.stderr()


def test_wait_without_job_id_is_usage_error():
    status, stdout, stderr = run_cli(["wait"])
    assert status == 64
    # Python 2.7's argparse does not name the missing argument.
    assert "JOB_ID" in stderr or "too few arguments" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_wait_rq_returns_stored_end_at_once(redis_server, channel):
    """Jobs that ended before the wait began: exit 0 and 1, no event needed."""
    pytest.importorskip("rq")
    import redis
    from rq import Queue
    from rq.job import Job

    connection = redis.Redis.from_url(redis_server.url)
    queue_name = "cli-%s" % channel
    queue = Queue(queue_name, connection=connection)
    good = queue.enqueue("job_notifier.demo_worker.parse_number", "42", 0)
    bad = queue.enqueue("job_notifier.demo_worker.parse_number", "x", 0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url",
         redis_server.url, queue_name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=cli_environment())
    try:
        deadline = time.time() + 30
        statuses = None
        while time.time() < deadline:
            statuses = [Job.fetch(job.id, connection=connection).get_status()
                        for job in (good, bad)]
            if statuses == ["finished", "failed"]:
                break
            time.sleep(0.1)
        assert statuses == ["finished", "failed"]
    finally:
        # A burst worker can take long to exit with some RQ and redis-py
        # versions, and its jobs are done, so it is killed.
        worker.kill()
        worker.wait()

    # The notifier URL defaults to RQ's Redis, so --url is not needed.
    for job, expected_status in ((good, 0), (bad, 1)):
        status, stdout, stderr = run_cli(
            ["wait", "--rq", "--rq-url", redis_server.url, "--channel",
             channel, "--timeout", "10", job.id])
        assert status == expected_status, stderr
        assert job.id in stdout


def test_wait_rq_unknown_job_is_error(redis_server, channel):
    pytest.importorskip("rq")
    status, stdout, stderr = run_cli(
        ["wait", "--rq", "--quiet", "--url", redis_server.url, "--channel",
         channel, "--timeout", "5", "no-such-job"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "no-such-job is not in Redis" in stderr
    assert "Check the job id" in stderr


def test_wait_rq_without_redis_url_is_error():
    status, stdout, stderr = run_cli(
        ["wait", "--rq", "--url", "ws://127.0.0.1:9/bus/jobs", "42"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "--rq-url redis://" in stderr


# demo


def test_demo_embedded_runs_without_server():
    """With no URL the demo needs no server; it ends with 0 within a minute."""
    started = time.time()
    status, stdout, stderr = run_cli(["demo"], timeout=60)
    assert status == 0, stdout + stderr
    assert time.time() - started < 60
    assert "No server" in stdout
    for number, event in enumerate(["finished", "finished", "failed",
                                    "finished", "failed", "finished"], 1):
        assert re.search(r"s  job-%d +enqueue" % number, stdout), stdout
        assert re.search(r"s  job-%d +dequeue +worker \d+" % number, stdout)
        assert re.search(r"s  job-%d +%s" % (number, event), stdout)
        assert re.search(r"\n  job-%d +%s +[\d.]+ ms after the worker sent "
                         r"the event" % (number, event), stdout), stdout
    assert "ZeroDivisionError" in stdout
    assert "6 jobs: 4 finished and 2 failed" in stdout


def test_demo_with_redis_uses_rq_workers(redis_server, channel):
    pytest.importorskip("rq")
    status, stdout, stderr = run_cli(
        ["demo", "--url", redis_server.url, "--channel", channel], timeout=60)
    assert status == 0, stdout + stderr
    assert "NotifyingWorker" in stdout
    assert "wait_for_job(notifier, job)" in stdout
    assert "6 jobs: 4 finished and 2 failed" in stdout
    assert "ValueError: invalid literal for int()" in stdout


def test_demo_without_rq_names_the_extra(redis_server, tmpdir):
    """A missing rq package is one line that says what to install."""
    # A package named rq that fails to import stands in for a virtualenv
    # without RQ.
    fake = tmpdir.mkdir("rq")
    fake.join("__init__.py").write("raise ImportError('No module named rq')\n")
    environment = cli_environment()
    environment[str("PYTHONPATH")] = os.pathsep.join(
        [str(tmpdir), environment[str("PYTHONPATH")]])
    status, stdout, stderr = run_cli(["demo", "--url", redis_server.url],
                                     environment=environment)
    assert status == 3
    assert_one_error_line(stderr)
    assert "pip install 'job_notifier[rq]'" in stderr


# broker


def test_broker_serves_listen_and_emit(cli_processes, channel):
    python = broker_python()
    if python is None:
        pytest.skip("no Python 3.9+ with websockets 13+ to run the broker")
    port = free_port()
    broker = cli_processes(["broker", "--port", str(port)], python=python)
    wait_for_port(port)
    url = "ws://127.0.0.1:%d/bus/%s" % (port, channel)
    listener = start_listener(cli_processes, url, channel)

    status, stdout, stderr = run_cli(["emit", "--url", url, "12", "finished"])
    assert status == 0, stderr
    assert listener.next_line().endswith(" 12 finished")

    listener.interrupt()
    assert listener.wait() == 0
    broker.interrupt()
    assert broker.wait() == 0


@pytest.mark.skipif(sys.version_info >= (3, 9),
                    reason="the broker runs on Python 3.9 and newer")
def test_broker_on_old_python_is_one_line_error():
    status, stdout, stderr = run_cli(["broker"])
    assert status != 0
    assert "Python 3.9" in stderr
    assert "Traceback" not in stderr


# Errors.


@pytest.mark.parametrize("url, expected", [
    ("amqp://guest:hunter2@127.0.0.1/", "unsupported URL scheme"),
    ("127.0.0.1:6379", "it has no scheme"),
])
def test_invalid_url_is_one_line(url, expected):
    for command in (["listen"], ["wait", "1"], ["emit", "1", "finished"]):
        status, stdout, stderr = run_cli(command + ["--url", url])
        assert status == 3, stderr
        assert_one_error_line(stderr)
        assert expected in stderr
        assert "use redis://" in stderr
        assert "hunter2" not in stderr


def test_invalid_url_traceback_with_verbose():
    status, stdout, stderr = run_cli(["-v", "listen", "--url", "amqp://x/"])
    assert status == 3
    assert "Traceback" in stderr
    assert stderr.strip().splitlines()[-1].startswith("job-notifier: error:")


def test_missing_url_is_one_line():
    status, stdout, stderr = run_cli(["listen"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "JOB_NOTIFIER_URL" in stderr


def test_memory_url_is_rejected():
    status, stdout, stderr = run_cli(["wait", "1", "--url", "memory://"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "in-process" in stderr


@pytest.mark.parametrize("command", [["listen"], ["wait", "1"]])
def test_refused_connection_fails_fast(command):
    port = free_port()
    url = "redis://:hunter2@127.0.0.1:%d/0" % port
    status, stdout, stderr = run_cli(
        command + ["--url", url, "--connect-timeout", "1"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "cannot subscribe on redis://:***@127.0.0.1:%d/0" % port in stderr
    assert "Connection refused" in stderr
    assert "check that the server is running" in stderr
    assert "hunter2" not in stderr


def test_emit_refused_connection_is_one_line():
    port = free_port()
    status, stdout, stderr = run_cli(
        ["emit", "--url", "redis://:hunter2@127.0.0.1:%d/0" % port, "1",
         "finished"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "127.0.0.1:%d" % port in stderr
    assert "hunter2" not in stderr


def test_emit_wrong_password_is_one_line(password_redis_server):
    server = password_redis_server
    wrong_url = server.url.replace(server.password, "not-the-password")
    status, stdout, stderr = run_cli(["emit", "--url", wrong_url, "1",
                                      "finished"])
    assert status == 3
    assert_one_error_line(stderr)
    assert "127.0.0.1:%d" % server.port in stderr
    assert "not-the-password" not in stderr


def test_missing_client_library_names_the_extra(tmpdir):
    fake = tmpdir.mkdir("redis")
    fake.join("__init__.py").write(
        "raise ImportError('No module named redis')\n")
    environment = cli_environment()
    environment[str("PYTHONPATH")] = os.pathsep.join(
        [str(tmpdir), environment[str("PYTHONPATH")]])
    status, stdout, stderr = run_cli(
        ["listen", "--url", "redis://127.0.0.1:9/0"], environment=environment)
    assert status == 3
    assert_one_error_line(stderr)
    assert "pip install 'job_notifier[redis]'" in stderr


def test_no_password_in_any_output(cli_processes, password_redis_server,
                                   channel):
    """Verbose logs, status lines, events and errors all hide the password."""
    server = password_redis_server
    password = server.password
    listener = cli_processes(["-vv", "listen", "--url", server.url,
                              "--channel", channel])
    listener.wait_for_stderr("listening on")
    status, stdout, emit_stderr = run_cli(
        ["-v", "emit", "--url", server.url, "--channel", channel, "1",
         "finished"])
    assert status == 0, emit_stderr
    listener.next_line()
    listener.interrupt()
    assert listener.wait() == 0

    wrong_url = server.url.replace(password, password + "-wrong")
    status, _, wrong_stderr = run_cli(
        ["-v", "wait", "1", "--url", wrong_url, "--connect-timeout", "1"])
    assert status == 3

    outputs = [listener.stderr(), emit_stderr, wrong_stderr]
    assert "redis://:***@127.0.0.1:%d/0" % server.port in outputs[0]
    for output in outputs:
        assert password not in output
    # The listener's and the failed wait's debug logs are in the output.
    assert "Listener" in outputs[0]
    assert "cannot subscribe" in outputs[2]


def test_version():
    status, stdout, stderr = run_cli(["--version"])
    assert status == 0
    assert re.match(r"^job-notifier \d+\.\d+", stdout + stderr)


def test_options_after_the_command():
    """--url given after the command overrides the environment variable."""
    environment = cli_environment(JOB_NOTIFIER_URL="amqp://from-env/")
    status, stdout, stderr = run_cli(["listen", "--url", "amqp://from-option/"],
                                     environment=environment)
    assert status == 3
    assert "from-option" in stderr

    status, stdout, stderr = run_cli(["listen"], environment=environment)
    assert status == 3
    assert "from-env" in stderr
