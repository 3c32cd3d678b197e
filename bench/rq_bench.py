"""RQ end to end: from the job function returning to the waiter returning.

An ``rq worker -w job_notifier.contrib.rq.NotifyingWorker`` of the running
interpreter's virtualenv runs ``bench.rq_jobs.sleep_then_report``, which
sleeps, then returns the wall-clock time of its return. The waiter in this
process enqueues one job at a time and waits for it in one of three ways:

- ``wait_for_job(notifier, job)`` from ``job_notifier.contrib.rq``;
- RQ's ``Job.latest_result(timeout=...)``, which blocks in XREAD on the
  job's result stream (RQ 1.12 and later, so not on Python 2.7's RQ 1.3);
- a loop that calls ``job.get_status()`` and sleeps 100 ms until the job
  is finished.

A sample is the wall-clock time at which the wait returned less the job's
return value; both processes run on one machine. Each job sleeps for a
random 10 to 110 ms, the same for every way of waiting, so the phase of
the 100 ms polling loop is uniform.
"""

from __future__ import absolute_import, unicode_literals

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from .stats import summarize, wall_clock
from .subprocesses import REPOSITORY, child_environment

log = logging.getLogger("bench")

WORKER_CLASS = "job_notifier.contrib.rq.NotifyingWorker"
JOB_FUNCTION = "bench.rq_jobs.sleep_then_report"
POLL_INTERVAL = 0.1
JOB_TIMEOUT = 30


def unavailable_reason():
    """Return why RQ cannot be measured with this interpreter, or None."""
    try:
        import rq  # noqa: F401
        import job_notifier.contrib.rq  # noqa: F401
    except ImportError as exc:
        return "RQ or job_notifier.contrib.rq is not available: %s" % exc
    if not os.path.exists(_rq_script()):
        return "no rq script beside %s" % sys.executable
    return None


def _rq_script():
    # The rq script beside the interpreter belongs to the same virtualenv,
    # so the worker runs the same Python and RQ version as the waiter.
    return os.path.join(os.path.dirname(sys.executable), "rq")


class WorkerProcess(object):
    """An ``rq worker`` subprocess, stopped by its pid."""

    def __init__(self, url, queue_name):
        self.url = url
        self.queue_name = queue_name
        self.name = "bench-%s" % uuid.uuid4().hex[:8]
        self.directory = tempfile.mkdtemp(prefix="job-notifier-bench-rq-")
        self.log_path = os.path.join(self.directory, "worker.log")
        self.process = None

    def start(self, connection):
        environment = child_environment()
        environment.pop("JOB_NOTIFIER_URL", None)
        command = [_rq_script(), "worker", "--url", self.url,
                   "--worker-class", WORKER_CLASS, "--name", self.name,
                   "--path", REPOSITORY, self.queue_name]
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file,
                                            stderr=subprocess.STDOUT,
                                            env=environment)
        deadline = time.time() + 60
        while not connection.exists("rq:worker:%s" % self.name):
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("rq worker did not start:\n%s" % self.log())
            time.sleep(0.05)
        return self

    def log(self):
        with open(self.log_path, "rb") as log_file:
            return log_file.read().decode("utf-8", "replace")

    def stop(self):
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # SIGTERM requests a warm shutdown, which ends once no job runs.
            os.kill(process.pid, signal.SIGTERM)
            deadline = time.time() + 15
            while process.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _wait_with_notifier(notifier):
    from job_notifier.contrib.rq import wait_for_job

    def wait(job):
        wait_for_job(notifier, job, timeout=JOB_TIMEOUT)
    return wait


def _wait_with_latest_result(job):
    if job.latest_result(timeout=JOB_TIMEOUT) is None:
        raise RuntimeError("no result for job %s within %d seconds"
                           % (job.id, JOB_TIMEOUT))


def _wait_by_polling(job):
    deadline = time.time() + JOB_TIMEOUT
    while True:
        status = job.get_status()
        if status in ("finished", "failed"):
            return
        if time.time() > deadline:
            raise RuntimeError("job %s still %s after %d seconds"
                               % (job.id, status, JOB_TIMEOUT))
        time.sleep(POLL_INTERVAL)


def _return_time(job):
    from job_notifier.contrib.rq import fetch_return_value
    return fetch_return_value(job)


def measure_way(queue, wait, samples, warmup):
    """Return ``(seconds, lost)`` for one way of waiting."""
    durations = []
    lost = 0
    for index in range(warmup + samples):
        job = queue.enqueue(JOB_FUNCTION, random.uniform(0.01, 0.11),
                            job_timeout=JOB_TIMEOUT)
        try:
            wait(job)
            returned = wall_clock()
            finished_at = _return_time(job)
        except Exception:
            log.warning("RQ job %s was not measured", job.id, exc_info=True)
            if index >= warmup:
                lost += 1
            continue
        if index >= warmup:
            durations.append(returned - finished_at)
    return durations, lost


def measure_rq(url, samples, measurements=None):
    """Return the summaries of every way of waiting that RQ here supports."""
    import redis
    import rq
    from rq import Queue
    from job_notifier.contrib.rq import get_notifier

    connection = redis.Redis.from_url(url)
    queue_name = "bench-%d" % os.getpid()
    queue = Queue(queue_name, connection=connection)
    worker = WorkerProcess(url, queue_name).start(connection)
    notifier = get_notifier(connection)
    notifier.start()
    ways = [("wait_for_job", _wait_with_notifier(notifier))]
    if hasattr(rq.job.Job, "latest_result"):
        ways.append(("latest_result", _wait_with_latest_result))
    elif measurements is not None:
        measurements.skip("rq latest_result", "RQ %s has no "
                          "Job.latest_result()" % rq.__version__)
    ways.append(("polling", _wait_by_polling))
    result = {"rq": rq.__version__, "worker_class": WORKER_CLASS}
    try:
        warmup = max(2, samples // 20)
        for name, wait in ways:
            durations, lost = measure_way(queue, wait, samples, warmup)
            result[name] = summarize(durations, lost)
    finally:
        worker.stop()
        notifier.close()
        connection.connection_pool.disconnect()
    return result
