"""``job-notifier demo``: sample jobs in worker processes, watched live.

With no URL, or ``memory://``, the demo needs no server. The demo process
listens on an in-process ``memory://`` bus, and a relay on a free port of
127.0.0.1 connects it to the worker processes: each worker calls
``Notifier.notify()`` with a transport that writes the wire-format line to
the relay, and the relay puts that line unchanged on the bus. From there
the demo's real listener, dispatcher, callbacks and waiters handle it as
they would handle a message from Redis.

With a Redis URL the jobs are enqueued with ``NotifyingQueue`` and run by
real ``rq worker`` processes with ``NotifyingWorker``; the waiters use
``wait_for_job()``. With a PostgreSQL or WebSocket URL, plain worker
processes send through that server.
"""

from __future__ import absolute_import, print_function, unicode_literals

import json
import os
import socket
import subprocess
import sys
import threading
import time

from ._compat import write_line
from .console import is_broken_pipe, silence_stdout, subscribe
from .demo_worker import SAMPLE_JOBS
from .exceptions import NotifierError, WaitTimeout
from .notifier import URL_ENVIRONMENT_VARIABLE, Notifier
from .transports.base import wait_readable
from .urls import scheme_of

WORKER_COUNT = 2

# Every sample job ends within a few seconds; these bound a demo whose
# workers are stuck, so that it still ends well within a minute.
WAIT_TIMEOUT = 30.0
WORKER_EXIT_TIMEOUT = 10.0

REDIS_SCHEMES = ("redis", "rediss", "unix")


def run_demo(url, channel, connect_timeout, console):
    """Run the sample jobs and return the exit status: 0 if all ended as expected."""
    if url is None or scheme_of(url) == "memory":
        demo = EmbeddedDemo(channel, connect_timeout, console)
    elif scheme_of(url) in REDIS_SCHEMES:
        from .demo_rq import RQDemo
        demo = RQDemo(url, channel, connect_timeout, console)
    else:
        demo = ServerDemo(url, channel, connect_timeout, console)
    return demo.run()


class _Relay(object):
    """TCP server on 127.0.0.1 that puts each line it receives on a transport.

    Worker processes cannot reach the demo's in-process ``memory://`` bus,
    so they send their lines here and the relay passes them on unchanged.
    """

    def __init__(self, transport):
        self._transport = transport
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.address = self._server.getsockname()[:2]
        self._stopping = False
        self._thread = threading.Thread(target=self._accept,
                                        name="job-notifier-demo-relay")
        self._thread.daemon = True
        self._thread.start()

    def _accept(self):
        while not self._stopping:
            if not wait_readable([self._server], 0.1):
                continue
            connection, _ = self._server.accept()
            forwarder = threading.Thread(target=self._forward,
                                         args=(connection,),
                                         name="job-notifier-demo-relay-peer")
            forwarder.daemon = True
            forwarder.start()

    def _forward(self, connection):
        reader = connection.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                if line:
                    self._transport.send(line)
        finally:
            reader.close()
            connection.close()

    def close(self):
        self._stopping = True
        self._thread.join(1.0)
        self._server.close()


class _JobResult(object):
    """What one waiter learned: the event, and when it returned."""

    __slots__ = ("job_id", "expected", "event", "learned_at", "error")

    def __init__(self, job_id, expected):
        self.job_id = job_id
        self.expected = expected
        self.event = None
        self.learned_at = None
        self.error = None


class Demo(object):
    """The steps that every kind of demo shares; subclasses run the jobs."""

    #: Lines of the header that say what sends the events and how.
    description = ()

    #: The call that each job's waiter thread blocks in.
    wait_function = ""

    #: The moment that the waiters' delay is measured from.
    latency_origin = ""

    #: Lines printed after the summary.
    next_steps = ()

    def __init__(self, url, channel, connect_timeout, console):
        self.url = url
        self.channel = channel
        self.connect_timeout = connect_timeout
        self.console = console
        self.notifier = None
        self.started_at = time.time()
        self._print_lock = threading.Lock()
        self._stdout_closed = False
        self.jobs = [(self.job_id(number), function, args, expected)
                     for number, (function, args, expected)
                     in enumerate(SAMPLE_JOBS, 1)]

    def job_id(self, number):
        # Other demos may share the server, so the ids carry the pid.
        return "demo-%d-%d" % (os.getpid(), number)

    def print_line(self, line):
        with self._print_lock:
            if self._stdout_closed:
                return
            try:
                write_line(sys.stdout, line)
            except (IOError, OSError) as exc:
                if not is_broken_pipe(exc):
                    raise
                # The reader went away, as with '| head'; the demo still
                # runs to its end, so that the workers are stopped.
                silence_stdout()
                self._stdout_closed = True

    def run(self):
        self.notifier = Notifier.from_url(self.url, channel=self.channel)
        try:
            subscribe(self.notifier, self.connect_timeout, self.console)
            for job_id, _, _, _ in self.jobs:
                self.notifier.on("job:%s" % job_id, self._show_event,
                                 with_extras=True)
            self.set_up()
            try:
                self.print_header()
                results = self.run_jobs()
            finally:
                self.tear_down()
        finally:
            self.notifier.close()
        return self.print_summary(results)

    def set_up(self):
        """Start what the workers need, after the notifier is subscribed."""

    def tear_down(self):
        """Stop what ``set_up()`` started."""

    def print_header(self):
        self.print_line("job-notifier demo: %d sample jobs on %d worker "
                        "processes." % (len(self.jobs), WORKER_COUNT))
        for line in self.description:
            self.print_line(line)
        self.print_line("")
        self.print_line("   time  job          event     details")

    def _show_event(self, notifier, job_id, event, extras=None):
        extras = extras or {}
        if event == "dequeue" and "worker" in extras:
            details = "worker pid %s" % extras["worker"]
        elif event == "failed":
            details = extras.get("error", "")
        elif event == "finished" and "result" in extras:
            details = "result %s" % json.dumps(extras["result"])
        else:
            details = ""
        line = "%6.3fs  %-11s  %-8s  %s" % (
            time.time() - self.started_at, job_id, event, details)
        self.print_line(line.rstrip())

    def run_jobs(self):
        """Run the jobs; return a ``_JobResult`` per job, in job order."""
        raise NotImplementedError

    def latency(self, result):
        """Return the seconds from the job's end to its waiter returning."""
        raise NotImplementedError

    def print_summary(self, results):
        self.print_line("")
        self.print_line("Each job had a thread blocked in %s; it returned:"
                        % self.wait_function)
        latencies = []
        unexpected = []
        for result in results:
            if result.event is None:
                unexpected.append(result)
                self.print_line("  %-11s  no event: %s" % (result.job_id,
                                                            result.error))
                continue
            latency = self.latency(result)
            latencies.append(latency)
            if result.event != result.expected:
                unexpected.append(result)
            self.print_line("  %-11s  %-8s  %7.2f ms after %s" % (
                result.job_id, result.event, latency * 1000,
                self.latency_origin))
        self.print_line("")
        finished = sum(1 for result in results if result.event == "finished")
        failed = sum(1 for result in results if result.event == "failed")
        if unexpected:
            self.console.error(
                "%d of %d jobs did not end as the sample jobs should (%s): "
                "rerun with -v to see the log" % (
                    len(unexpected), len(results),
                    ", ".join(result.job_id for result in unexpected)))
            return 1
        latencies.sort()
        self.print_line(
            "%d jobs: %d finished and %d failed, as the sample jobs are "
            "written to do. The waiters returned %.2f to %.2f ms (median %.2f "
            "ms) after %s." % (len(results), finished, failed,
                               latencies[0] * 1000, latencies[-1] * 1000,
                               latencies[len(latencies) // 2] * 1000,
                               self.latency_origin))
        for line in self.next_steps:
            self.print_line(line)
        return 0


class _PlainWorkerDemo(Demo):
    """Demo whose workers are ``job_notifier.demo_worker`` processes."""

    wait_function = "Notifier.watch(job_id).wait()"
    latency_origin = "the worker sent the event"

    def worker_command(self):
        raise NotImplementedError

    def run_jobs(self):
        results = [_JobResult(job_id, expected)
                   for job_id, _, _, expected in self.jobs]
        # The watches subscribe before the jobs start, so no event is missed.
        watches = [self.notifier.watch(result.job_id) for result in results]
        for watch in watches:
            watch.__enter__()
        try:
            for job_id, _, _, _ in self.jobs:
                self.notifier.notify(job_id, "enqueue")
            waiters = [threading.Thread(target=self._wait, args=(watch, result))
                       for watch, result in zip(watches, results)]
            for waiter in waiters:
                waiter.daemon = True
                waiter.start()
            workers = self._start_workers()
            for waiter in waiters:
                waiter.join(WAIT_TIMEOUT + 1.0)
            self._stop_workers(workers)
        finally:
            for watch in watches:
                watch.__exit__(None, None, None)
        return results

    @staticmethod
    def _wait(watch, result):
        try:
            event = watch.wait(timeout=WAIT_TIMEOUT)
        except (WaitTimeout, NotifierError) as exc:
            result.error = exc
            return
        result.learned_at = time.time()
        result.event = event

    def _start_workers(self):
        workers = []
        for index in range(WORKER_COUNT):
            jobs = [{"id": job_id, "function": function, "args": args}
                    for job_id, function, args, _ in self.jobs[index::WORKER_COUNT]]
            process = subprocess.Popen(self.worker_command(),
                                       stdin=subprocess.PIPE,
                                       env=self.worker_environment())
            process.stdin.write(json.dumps(jobs).encode("utf-8"))
            process.stdin.close()
            workers.append(process)
        return workers

    def worker_environment(self):
        return dict(os.environ)

    def _stop_workers(self, workers):
        deadline = time.time() + WORKER_EXIT_TIMEOUT
        for process in workers:
            while process.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if process.poll() is None:
                process.kill()
                process.wait()

    def latency(self, result):
        return result.learned_at - result.event.extras["sent_at"]


class EmbeddedDemo(_PlainWorkerDemo):
    """Demo with no server: a memory:// bus fed by a loopback relay."""

    def __init__(self, channel, connect_timeout, console):
        super(EmbeddedDemo, self).__init__(
            "memory://job-notifier-demo", channel, connect_timeout, console)
        self._relay = None

    next_steps = (
        "",
        "Next, with a Redis server: 'job-notifier demo --url "
        "redis://127.0.0.1:6379/0' runs the jobs on real RQ workers;",
        "'job-notifier listen --url redis://127.0.0.1:6379/0' in one terminal "
        "prints what 'job-notifier emit --url redis://127.0.0.1:6379/0 42 "
        "finished' sends from another.",
    )

    def job_id(self, number):
        return "job-%d" % number

    def set_up(self):
        self._relay = _Relay(self.notifier.transport)

    def tear_down(self):
        self._relay.close()

    @property
    def description(self):
        return (
            "No server: this process listens on an in-process memory:// bus "
            "and sends enqueue;",
            "the workers send dequeue, finished and failed to a relay on "
            "%s:%d, which puts" % self._relay.address,
            "each message on the bus unchanged.")

    def worker_command(self):
        return [sys.executable, "-m", "job_notifier.demo_worker", "--relay",
                "%s:%d" % self._relay.address, "--channel", self.channel]


class ServerDemo(_PlainWorkerDemo):
    """Demo whose worker processes send through a PostgreSQL or WebSocket server."""

    @property
    def description(self):
        return ("This process and the workers send through %s."
                % self.notifier.transport.describe(),)

    def worker_command(self):
        return [sys.executable, "-m", "job_notifier.demo_worker", "--channel",
                self.channel]

    def worker_environment(self):
        # The URL goes through the environment, where other users cannot
        # read the password as they could on a command line.
        environment = dict(os.environ)
        environment[URL_ENVIRONMENT_VARIABLE] = self.url
        return environment
