"""RQ integration against real ``rq worker`` processes and redis-server."""

from __future__ import absolute_import, unicode_literals

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

pytest.importorskip("rq")

import redis  # noqa: E402
import rq  # noqa: E402
from rq.exceptions import NoSuchJobError  # noqa: E402
from rq.job import Job  # noqa: E402

import rq_tasks  # noqa: E402
from behaviour import Recorder  # noqa: E402
from job_notifier import ConfigurationError, Notifier  # noqa: E402
from job_notifier.contrib.rq import (NotifyingQueue, fetch_return_value,  # noqa: E402
                                     get_notifier, redis_url_for, wait_for_job)
from servers import RedisServer, free_port, terminate  # noqa: E402

TESTS_DIRECTORY = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIRECTORY = os.path.dirname(TESTS_DIRECTORY)

# Long enough for a worker that is still starting on a busy machine.
JOB_DEADLINE = 30.0

WORKER_CLASSES = {
    "forking": "job_notifier.contrib.rq.NotifyingWorker",
    "simple": "job_notifier.contrib.rq.NotifyingSimpleWorker",
}

RQ_2 = hasattr(rq.Queue, "_enqueue_job")


class RQWorkerProcess(object):
    """An ``rq worker`` subprocess of this interpreter's virtualenv."""

    def __init__(self, redis_url, queue_name, worker_class, environment=None):
        self.redis_url = redis_url
        self.queue_name = queue_name
        self.worker_class = worker_class
        self.environment = environment or {}
        self.name = "test-%s-%s" % (queue_name, uuid.uuid4().hex[:8])
        self.directory = tempfile.mkdtemp(prefix="job-notifier-rq-")
        self.log_path = os.path.join(self.directory, "worker.log")
        self.process = None

    def start(self):
        # The rq script beside the interpreter belongs to the same
        # virtualenv, so the worker runs this Python and this RQ version.
        rq_script = os.path.join(os.path.dirname(sys.executable), "rq")
        command = [rq_script, "worker", "--url", self.redis_url,
                   "--worker-class", self.worker_class, "--name", self.name,
                   "--path", TESTS_DIRECTORY, self.queue_name]
        environment = dict(os.environ)
        environment.pop("JOB_NOTIFIER_URL", None)
        # The worker imports job_notifier from this checkout even where the
        # package is not installed in the virtualenv.
        environment["PYTHONPATH"] = os.pathsep.join(
            [PROJECT_DIRECTORY] + [path for path in
                                   [os.environ.get("PYTHONPATH")] if path])
        environment.update(self.environment)
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file,
                                            stderr=subprocess.STDOUT,
                                            env=environment)
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.time() + JOB_DEADLINE
        while not client.exists("rq:worker:%s" % self.name):
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("rq worker did not start:\n%s" % self.log())
            time.sleep(0.05)
        return self

    def log(self):
        with open(self.log_path, "rb") as log_file:
            return log_file.read().decode("utf-8", "replace")

    def wait_for_log(self, text, timeout=JOB_DEADLINE):
        """Return True once ``text`` appears in the worker's output."""
        deadline = time.time() + timeout
        while text not in self.log():
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self):
        process, self.process = self.process, None
        if process is not None:
            # SIGTERM requests a warm shutdown. No job runs at this point,
            # but RQ 2.12 with redis-py 8 sometimes takes 60 seconds to exit
            # after it, while it closes its command pub/sub connection, so
            # SIGKILL follows after 3 seconds.
            terminate(process, timeout=3.0)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_url_in_environment(monkeypatch):
    # str(): Python 2's os.environ takes native strings only.
    monkeypatch.delenv(str("JOB_NOTIFIER_URL"), raising=False)


@pytest.fixture(scope="module")
def workers(redis_server):
    started = {}
    try:
        for kind, worker_class in sorted(WORKER_CLASSES.items()):
            started[kind] = RQWorkerProcess(
                redis_server.url, "jobs-%s" % kind, worker_class).start()
        yield started
    finally:
        for worker in started.values():
            worker.cleanup()


@pytest.fixture(params=sorted(WORKER_CLASSES))
def worker(request, workers):
    worker = workers[request.param]
    yield worker
    assert worker.process.poll() is None, "the worker died:\n" + worker.log()


@pytest.fixture
def connection(redis_server):
    return redis.Redis.from_url(redis_server.url)


@pytest.fixture
def queue(worker, connection):
    return NotifyingQueue(worker.queue_name, connection=connection)


@pytest.fixture
def notifier(redis_server):
    notifier = Notifier.from_url(redis_server.url).start()
    yield notifier
    notifier.close()


def new_job_id():
    return "test-%s" % uuid.uuid4().hex


def wait_for_status(job, status, timeout=JOB_DEADLINE):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if job.get_status() == status:
            return
        time.sleep(0.05)
    raise AssertionError("job %s has status %s, not %s"
                         % (job.id, job.get_status(), status))


def events_of(recorder, count):
    return [call[2] for call in recorder.wait_for_calls(count, JOB_DEADLINE)]


def test_successful_job_is_finished(notifier, queue):
    job = queue.enqueue(rq_tasks.succeed, 42)

    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "finished"
    assert fetch_return_value(job) == 42


def test_raising_job_is_failed_with_reason(notifier, queue):
    job = queue.enqueue(rq_tasks.fail, "bad input")

    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "failed"
    assert event.extras["error"] == "ValueError: bad input"
    assert event.extras["status"] == "failed"
    assert event.extras["queue"] == queue.name


def test_job_over_timeout_is_failed(notifier, queue):
    job = queue.enqueue(rq_tasks.sleep, 30, job_timeout=1)

    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "failed"
    assert "JobTimeoutException: " in event.extras["error"]
    assert job.get_status() == "failed"


def test_killed_work_horse_is_failed(notifier, workers, connection):
    queue = NotifyingQueue(workers["forking"].queue_name, connection=connection)
    job = queue.enqueue(rq_tasks.kill_own_process)

    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "failed"
    assert "waitpid returned" in event.extras["error"]
    assert event.extras["status"] == "failed"


@pytest.mark.skipif(not RQ_2, reason="RQ 1.3 cannot stop a running job")
def test_stopped_job_is_failed(notifier, workers, connection):
    from rq.command import send_stop_job_command

    queue = NotifyingQueue(workers["forking"].queue_name, connection=connection)
    job_id = new_job_id()
    recorder = notifier.on("job:%s" % job_id, Recorder())
    job = queue.enqueue(rq_tasks.sleep, 30, job_id=job_id)
    assert events_of(recorder, 2) == ["enqueue", "dequeue"]

    send_stop_job_command(connection, job.id)
    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "failed"
    assert event.extras["status"] == "stopped"
    assert "stopped" in event.extras["error"]


@pytest.mark.skipif(not RQ_2, reason="RQ 1.3 has no Retry")
def test_retried_failure_sends_one_failed(notifier, queue):
    job_id = new_job_id()
    recorder = notifier.on("job:%s" % job_id, Recorder())

    job = queue.enqueue(rq_tasks.fail, "twice", job_id=job_id,
                        retry=rq.Retry(max=1))
    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "failed"
    assert events_of(recorder, 5) == ["enqueue", "dequeue", "enqueue",
                                      "dequeue", "failed"]


@pytest.mark.skipif(not hasattr(rq.worker.Worker, "handle_job_retry"),
                    reason="this RQ does not retry a job that returns Retry")
def test_returned_retry_sends_one_failed(notifier, queue):
    job_id = new_job_id()
    recorder = notifier.on("job:%s" % job_id, Recorder())

    job = queue.enqueue(rq_tasks.ask_for_retry, job_id=job_id)
    event = wait_for_job(notifier, job, timeout=JOB_DEADLINE)

    assert event == "failed"
    assert event.extras["error"] == "the job returned Retry and has no " \
        "retries left"
    assert events_of(recorder, 5) == ["enqueue", "dequeue", "enqueue",
                                      "dequeue", "failed"]


def test_result_is_saved_before_finished(redis_server, queue, connection):
    """In a finished callback, the 5 MB result is already fetchable."""
    size = 5 * 1024 * 1024
    fetched = []
    done = threading.Event()

    def on_finished(notifier, job_id):
        result = fetch_return_value(Job.fetch(job_id, connection=connection))
        fetched.append(None if result is None else len(result))
        done.set()

    listener = Notifier.from_url(redis_server.url)
    try:
        listener.on("finished", on_finished)
        listener.start()
        job = queue.enqueue(rq_tasks.big_result, size)
        assert done.wait(JOB_DEADLINE)
        assert fetched == [size]
        assert job.get_status() == "finished"
    finally:
        listener.close()


def test_wait_after_job_ended_returns_at_once(redis_server, queue):
    job = queue.enqueue(rq_tasks.succeed, "early")
    wait_for_status(job, "finished")
    # This notifier subscribes after the job ended, so only the stored
    # status can end the wait.
    late_notifier = Notifier.from_url(redis_server.url)
    try:
        started = time.time()
        event = wait_for_job(late_notifier, job, timeout=5)
        assert event == "finished"
        assert event.extras == {}
        assert time.time() - started < 5
    finally:
        late_notifier.close()


def test_fifty_jobs_eight_waiting_threads(notifier, queue):
    jobs = []
    expected = {}
    for number in range(50):
        if number % 3 == 0:
            job = queue.enqueue(rq_tasks.fail, "job %d" % number)
            expected[job.id] = "failed"
        else:
            job = queue.enqueue(rq_tasks.succeed, number)
            expected[job.id] = "finished"
        jobs.append(job)
    results = {}
    errors = []

    def wait_for_share(share):
        for job in share:
            try:
                results[job.id] = wait_for_job(notifier, job,
                                               timeout=JOB_DEADLINE)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=wait_for_share, args=(jobs[index::8],))
               for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOB_DEADLINE * 2)

    assert errors == []
    assert len(results) == 50
    assert results == expected


def test_job_callback_gets_every_event(notifier, queue):
    job_id = new_job_id()
    recorder = notifier.on("job:%s" % job_id, Recorder())

    queue.enqueue(rq_tasks.succeed, "all events", job_id=job_id)

    assert events_of(recorder, 3) == ["enqueue", "dequeue", "finished"]
    assert all(call[1] == job_id for call in recorder.calls)


def test_dependent_enqueued_after_parent_finished(notifier, queue):
    parent_id = new_job_id()
    child_id = new_job_id()
    recorder = notifier.on("job", Recorder())

    parent = queue.enqueue(rq_tasks.sleep, 0.5, job_id=parent_id)
    queue.enqueue(rq_tasks.succeed, "child", job_id=child_id,
                  depends_on=parent)
    wait_for_job(notifier, child_id, timeout=JOB_DEADLINE,
                 connection=queue.connection)

    events = [(call[1], call[2]) for call in recorder.wait_for_calls(6)
              if call[1] in (parent_id, child_id)]
    assert events == [(parent_id, "enqueue"), (parent_id, "dequeue"),
                      (child_id, "enqueue"), (parent_id, "finished"),
                      (child_id, "dequeue"), (child_id, "finished")]


@pytest.mark.slow
def test_wait_rechecks_status_after_reconnect(redis_server, fresh_redis_server,
                                              connection):
    """A job that ends while the bus is down is reported after the restart."""
    bus = fresh_redis_server
    worker = RQWorkerProcess(
        redis_server.url, "jobs-reconnect", WORKER_CLASSES["forking"],
        environment={"JOB_NOTIFIER_URL": bus.url}).start()
    bus_notifier = Notifier.from_url(bus.url).start()
    try:
        queue = rq.Queue(worker.queue_name, connection=connection)
        job = queue.enqueue(rq_tasks.sleep, 1)
        results = []
        waiter = threading.Thread(target=lambda: results.append(
            wait_for_job(bus_notifier, job, timeout=JOB_DEADLINE)))
        waiter.start()

        bus.stop()
        wait_for_status(job, "finished")
        assert worker.wait_for_log("sending finished for job %s failed"
                                   % job.id)
        assert results == []
        bus.start()
        waiter.join(JOB_DEADLINE)

        assert results == ["finished"]
        # Empty extras: the stored status ended the wait, not a message.
        assert results[0].extras == {}
    finally:
        bus_notifier.close()
        worker.cleanup()


def test_wait_by_id_needs_connection(notifier):
    with pytest.raises(ConfigurationError):
        wait_for_job(notifier, "some-id", timeout=1)


def test_wait_for_missing_job_raises(notifier, connection):
    with pytest.raises(NoSuchJobError):
        wait_for_job(notifier, new_job_id(), timeout=5, connection=connection)


def test_unreachable_notifier_does_not_stop_worker(redis_server, connection):
    """With nothing listening at JOB_NOTIFIER_URL, jobs still run."""
    unreachable_url = "redis://127.0.0.1:%d/0" % free_port()
    worker = RQWorkerProcess(
        redis_server.url, "jobs-unreachable", WORKER_CLASSES["forking"],
        environment={"JOB_NOTIFIER_URL": unreachable_url}).start()
    try:
        queue = rq.Queue(worker.queue_name, connection=connection)
        first = queue.enqueue(rq_tasks.succeed, 1)
        wait_for_status(first, "finished")
        second = queue.enqueue(rq_tasks.fail, "still running")
        wait_for_status(second, "failed")

        # The status is saved before the event is sent, so the error can
        # reach the log a moment after the status.
        assert worker.wait_for_log("sending finished for job %s failed"
                                   % first.id)
        assert worker.wait_for_log("sending failed for job %s failed"
                                   % second.id)
        assert worker.process.poll() is None
    finally:
        worker.cleanup()


def test_url_from_password_connection_delivers():
    """A password with URL delimiters survives the URL built from a client."""
    password = "p@ss:w/rd%#?"
    server = RedisServer(password=password).start()
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port,
                             password=password)
        notifier = get_notifier(client)
        recorder = notifier.on("finished", Recorder())
        try:
            notifier.start()
            notifier.notify("secret-job", "finished")
            assert recorder.wait_for_calls(1) == [(notifier, "secret-job")]
        finally:
            notifier.close()
    finally:
        server.cleanup()


def test_url_from_unix_socket_connection():
    client = redis.Redis(unix_socket_path="/tmp/job notifier/redis.sock",
                         password="a:b@c", db=3)

    url, options = redis_url_for(client)
    rebuilt = redis.Redis.from_url(url, **options)
    kwargs = rebuilt.connection_pool.connection_kwargs

    assert url.startswith("unix://")
    assert kwargs["path"] == "/tmp/job notifier/redis.sock"
    assert kwargs["password"] == "a:b@c"
    assert kwargs["db"] == 3


def test_url_argument_wins_over_connection(redis_server, monkeypatch):
    client = redis.Redis(host="127.0.0.1", port=1)
    monkeypatch.setenv(str("JOB_NOTIFIER_URL"), str("memory://"))

    assert get_notifier(client).transport.name == "memory"
    assert get_notifier(client, url=redis_server.url).transport.url == \
        redis_server.url
