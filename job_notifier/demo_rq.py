"""The RQ part of ``job-notifier demo``: the sample jobs on real RQ workers.

The demo enqueues the sample jobs with ``NotifyingQueue``, waits for each
one with ``wait_for_job()`` and runs two ``rq worker --burst`` processes
with ``NotifyingWorker``, all against the Redis server of the demo's URL.
"""

from __future__ import absolute_import, print_function, unicode_literals

import calendar
import functools
import json
import logging
import os
import sys

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from .contrib.rq import (NotifyingQueue, NotifyingWorker, fetch_return_value,
                         wait_for_job)
from .demo import WAIT_TIMEOUT, WORKER_COUNT, Demo, JobResult, WorkerProcess
from .notifier import DEFAULT_CHANNEL, URL_ENVIRONMENT_VARIABLE

log = logging.getLogger(__name__)

# The worker processes read the demo's channel from this variable.
CHANNEL_ENVIRONMENT_VARIABLE = "JOB_NOTIFIER_DEMO_CHANNEL"

# The jobs stay in Redis this long, in seconds, after they end.
JOB_TTL = 600


class ChannelNotifyingWorker(NotifyingWorker):
    """``NotifyingWorker`` that sends on the channel the demo was given."""

    notifier_channel = (os.environ.get(CHANNEL_ENVIRONMENT_VARIABLE)
                        or DEFAULT_CHANNEL)


def _unix_time(moment):
    """Return an RQ timestamp (a UTC ``datetime``) as seconds since the epoch."""
    return calendar.timegm(moment.utctimetuple()) + moment.microsecond / 1e6


class RQDemo(Demo):
    """Demo whose jobs go through RQ on the Redis server of the URL."""

    latency_origin = "RQ stored the job's end time"

    def __init__(self, url, channel, connect_timeout, console):
        super(RQDemo, self).__init__(url, channel, connect_timeout, console)
        self.connection = redis.Redis.from_url(url)
        self.queue_name = "job-notifier-demo-%d" % os.getpid()
        if channel == DEFAULT_CHANNEL:
            worker_class = NotifyingWorker
        else:
            worker_class = ChannelNotifyingWorker
        self.worker_class = "%s.%s" % (worker_class.__module__,
                                       worker_class.__name__)
        self.wait_function = "wait_for_job(notifier, job)"

    def description(self):
        return (
            "RQ on %s: this process enqueues with NotifyingQueue; %d processes "
            "run" % (self.notifier.transport.describe(), WORKER_COUNT),
            "rq worker --burst -w %s %s" % (self.worker_class, self.queue_name))

    def details(self, job_id, event, extras):
        if event == "finished":
            # The finished event is sent after RQ saved the result, so the
            # result can be read here.
            job = Job.fetch(job_id, connection=self.connection)
            return "result %s" % json.dumps(fetch_return_value(job))
        return super(RQDemo, self).details(job_id, event, extras)

    def run_jobs(self):
        queue = NotifyingQueue(self.queue_name, connection=self.connection,
                               notifier=self.notifier)
        results = []
        jobs = []
        for job_id, function, args, expected in self.jobs:
            jobs.append(queue.enqueue(
                "job_notifier.demo_worker.%s" % function, *args,
                job_id=job_id, job_timeout=int(WAIT_TIMEOUT),
                result_ttl=JOB_TTL, failure_ttl=JOB_TTL))
            results.append(JobResult(job_id, expected))
        # wait_for_job() reads the stored status after subscribing, so a job
        # that ends before its waiter thread runs is still reported.
        threads = self.wait_in_threads(
            results, [functools.partial(wait_for_job, self.notifier, job)
                      for job in jobs])
        for number in range(1, WORKER_COUNT + 1):
            self.workers.append(WorkerProcess(
                self._worker_command(number), self._worker_environment(),
                capture=not self.console.verbosity))
        for thread in threads:
            thread.join(WAIT_TIMEOUT + 1.0)
        self.stop_workers()

        for result, job in zip(results, jobs):
            if result.event is not None:
                job.refresh()
                result.latency = result.learned_at - _unix_time(job.ended_at)
        return results

    def _worker_command(self, number):
        command = [sys.executable, "-m", "rq.cli", "worker", "--burst",
                   "--worker-class", self.worker_class,
                   "--name", "%s-worker-%d" % (self.queue_name, number)]
        if not self.console.verbosity:
            command.append("--quiet")
        return command + [self.queue_name]

    def _worker_environment(self):
        # The URL goes through the environment, where other users cannot
        # read the password as they could on a command line.
        environment = dict(os.environ)
        environment["RQ_REDIS_URL"] = self.url
        environment[URL_ENVIRONMENT_VARIABLE] = self.url
        environment[CHANNEL_ENVIRONMENT_VARIABLE] = self.channel
        return environment

    def tear_down(self):
        for job_id, _, _, _ in self.jobs:
            try:
                Job.fetch(job_id, connection=self.connection).delete()
            except NoSuchJobError:
                continue
            except Exception as exc:
                log.warning("Demo: cannot delete job %s (%s: %s); it expires "
                            "after %d seconds", job_id, type(exc).__name__,
                            exc, JOB_TTL)
