"""``job-notifier demo``: sample jobs in worker processes, watched live.

With no URL, or ``memory://``, the demo needs no server. The demo process
listens on an in-process ``memory://`` bus, which worker processes cannot
reach, so a relay on a free port of 127.0.0.1 connects them to it. Each
worker calls ``Notifier.notify()`` with a transport that writes the
wire-format line to the relay, and the relay puts that line unchanged on
the bus. From there the demo's listener, dispatcher, callbacks and waiters
handle it as they would handle a message from Redis.

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
import tempfile
import threading
import time

from .console import REDIS_SCHEMES, import_rq_module, subscribe, write_stdout
from .demo_worker import SAMPLE_JOBS
from .notifier import URL_ENVIRONMENT_VARIABLE, Notifier
from .transports.base import wait_readable
from .urls import scheme_of

WORKER_COUNT = 2

# Every sample job ends within a few seconds; this bounds a demo whose
# workers are stuck, so that it still ends well within a minute.
WAIT_TIMEOUT = 30.0

# Seconds that the workers get to exit once every waiter has returned;
# then they are killed. NOTE: with RQ 2.12 and redis-py 8.2 a burst
# worker sometimes blocks for up to 60 seconds in its exit, because
# redis-py's PubSubWorkerThread.stop() joins a thread that waits 60
# seconds for a subscription.
WORKER_EXIT_TIMEOUT = 5.0

# Seconds that the demo waits for the callbacks to show the last events.
EVENTS_TIMEOUT = 2.0


def run_demo(url, channel, connect_timeout, console):
    """Run the sample jobs and return the exit status: 0 if all ended as expected."""
    if url is None or scheme_of(url) == "memory":
        demo = EmbeddedDemo(channel, connect_timeout, console)
    elif scheme_of(url) in REDIS_SCHEMES:
        demo_rq = import_rq_module("job_notifier.demo_rq")
        demo = demo_rq.RQDemo(url, channel, connect_timeout, console)
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


class JobResult(object):
    """The outcome of one job's wait: the event, when it came, how late."""

    __slots__ = ("job_id", "expected", "event", "learned_at", "latency",
                 "error")

    def __init__(self, job_id, expected):
        self.job_id = job_id
        self.expected = expected
        self.event = None
        self.learned_at = None
        self.latency = None
        self.error = None

    def wait(self, wait_function):
        """Call ``wait_function(timeout=...)`` and record what it returns."""
        try:
            event = wait_function(timeout=WAIT_TIMEOUT)
        except Exception as exc:
            self.error = "%s: %s" % (type(exc).__name__, exc)
            return
        self.learned_at = time.time()
        self.event = event


class WorkerProcess(object):
    """A worker subprocess whose output is kept in a temporary file.

    The output is shown only if the demo goes wrong, because the expected
    failures of the sample jobs would fill the screen with tracebacks.
    """

    def __init__(self, command, environment, stdin_data=None, capture=True):
        self._output = tempfile.TemporaryFile() if capture else None
        self.process = subprocess.Popen(
            command, env=environment,
            stdin=subprocess.PIPE if stdin_data is not None else None,
            stdout=self._output, stderr=self._output)
        if stdin_data is not None:
            self.process.stdin.write(stdin_data)
            self.process.stdin.close()

    def stop(self, deadline):
        """Wait until ``deadline`` (a ``time.time()``) for the exit, then kill."""
        while self.process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        self.kill()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output_tail(self, count=20):
        """Return the last ``count`` lines of the output, as text."""
        if self._output is None:
            return []
        self._output.seek(0)
        lines = self._output.read().decode("utf-8", "replace").splitlines()
        return lines[-count:]

    def close(self):
        if self._output is not None:
            self._output.close()


class Demo(object):
    """The steps that every kind of demo shares; subclasses run the jobs."""

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
        self.workers = []
        self.started_at = time.time()
        self._print_lock = threading.Lock()
        self._stdout_closed = False
        self._events_shown = 0
        self._events_condition = threading.Condition()
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
            # Once the reader has gone, the demo still runs to its end, so
            # that the workers are stopped.
            self._stdout_closed = not write_stdout(line)

    def run(self):
        """Run the sample jobs; return 0 if each one ended as it should."""
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
                # Enqueue, dequeue and the end: three events per job.
                self._wait_for_events(3 * len(self.jobs), EVENTS_TIMEOUT)
            except BaseException:
                # Ctrl-C or an error: the workers must not outlive the demo.
                for worker in self.workers:
                    worker.kill()
                raise
            finally:
                self.tear_down()
        finally:
            self.notifier.close()
        try:
            return self.print_summary(results)
        finally:
            for worker in self.workers:
                worker.close()

    def set_up(self):
        """Start what the workers need, after the notifier is subscribed."""

    def tear_down(self):
        """Stop what ``set_up()`` started."""

    def description(self):
        """Return the header lines that describe who sends the events and how."""
        return ()

    def print_header(self):
        self.print_line("job-notifier demo: %d sample jobs on %d worker "
                        "processes." % (len(self.jobs), WORKER_COUNT))
        for line in self.description():
            self.print_line(line)
        self.print_line("")
        self.print_line("   time  job            event     details")

    def _show_event(self, notifier, job_id, event, extras=None):
        line = "%6.3fs  %-13s  %-8s  %s" % (
            time.time() - self.started_at, job_id, event,
            self.details(job_id, event, extras or {}))
        self.print_line(line.rstrip())
        with self._events_condition:
            self._events_shown += 1
            self._events_condition.notify_all()

    def _wait_for_events(self, count, timeout):
        # The waiters can return before the callback thread has shown the
        # last events; waiting here keeps those lines above the summary.
        deadline = time.time() + timeout
        with self._events_condition:
            while self._events_shown < count:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return
                self._events_condition.wait(remaining)

    def details(self, job_id, event, extras):
        """Return the text shown after an event: worker, result or error."""
        if event == "dequeue" and "worker" in extras:
            return "worker %s" % extras["worker"]
        if event == "failed":
            return extras.get("error", "")
        if event == "finished" and "result" in extras:
            return "result %s" % json.dumps(extras["result"])
        return ""

    def run_jobs(self):
        """Run the jobs; return a ``JobResult`` per job, in job order."""
        raise NotImplementedError

    def wait_in_threads(self, results, wait_functions):
        """Start one waiter thread per job and return the threads."""
        threads = []
        for result, wait_function in zip(results, wait_functions):
            thread = threading.Thread(target=result.wait, args=(wait_function,),
                                      name="demo-waiter-%s" % result.job_id)
            thread.daemon = True
            thread.start()
            threads.append(thread)
        return threads

    def stop_workers(self):
        deadline = time.time() + WORKER_EXIT_TIMEOUT
        for worker in self.workers:
            worker.stop(deadline)

    def print_summary(self, results):
        self.print_line("")
        self.print_line("Each job had a thread blocked in %s; it returned:"
                        % self.wait_function)
        for result in results:
            if result.event is None:
                self.print_line("  %-13s  no event: %s" % (result.job_id,
                                                            result.error))
            else:
                self.print_line("  %-13s  %-8s  %7.2f ms after %s" % (
                    result.job_id, result.event, result.latency * 1000,
                    self.latency_origin))
        self.print_line("")

        unexpected = [result for result in results
                      if result.event is None or result.event != result.expected]
        if unexpected:
            self._report_failure(results, unexpected)
            return 1
        finished = sum(1 for result in results if result.event == "finished")
        latencies = sorted(result.latency for result in results)
        self.print_line(
            "%d jobs: %d finished and %d failed, as the sample jobs are "
            "written to do." % (len(results), finished,
                                len(results) - finished))
        self.print_line(
            "The waiters returned %.2f to %.2f ms (median %.2f ms) after %s."
            % (latencies[0] * 1000, latencies[-1] * 1000,
               latencies[len(latencies) // 2] * 1000, self.latency_origin))
        for line in self.next_steps:
            self.print_line(line)
        return 0

    def _report_failure(self, results, unexpected):
        for index, worker in enumerate(self.workers, 1):
            tail = worker.output_tail()
            if tail:
                self.console.error("output of worker %d (pid %d), last %d "
                                   "lines:" % (index, worker.process.pid,
                                               len(tail)))
                for line in tail:
                    self.console.error("  " + line)
        self.console.error(
            "%d of %d jobs did not end as the sample jobs should (%s): rerun "
            "with -v to see the log" % (
                len(unexpected), len(results),
                ", ".join(result.job_id for result in unexpected)))


class _PlainWorkerDemo(Demo):
    """Demo whose workers are ``job_notifier.demo_worker`` processes."""

    wait_function = "Notifier.watch(job_id).wait()"
    latency_origin = "the worker sent the event"

    def worker_command(self):
        raise NotImplementedError

    def worker_environment(self):
        return dict(os.environ)

    def run_jobs(self):
        results = [JobResult(job_id, expected)
                   for job_id, _, _, expected in self.jobs]
        # The watches subscribe before the jobs start, so no event is missed.
        watches = [self.notifier.watch(result.job_id) for result in results]
        for watch in watches:
            watch.__enter__()
        try:
            for job_id, _, _, _ in self.jobs:
                self.notifier.notify(job_id, "enqueue")
            threads = self.wait_in_threads(
                results, [watch.wait for watch in watches])
            for index in range(WORKER_COUNT):
                jobs = [{"id": job_id, "function": function, "args": args}
                        for job_id, function, args, _
                        in self.jobs[index::WORKER_COUNT]]
                self.workers.append(WorkerProcess(
                    self.worker_command(), self.worker_environment(),
                    stdin_data=json.dumps(jobs).encode("utf-8"),
                    capture=not self.console.verbosity))
            for thread in threads:
                thread.join(WAIT_TIMEOUT + 1.0)
            self.stop_workers()
        finally:
            for watch in watches:
                watch.__exit__(None, None, None)

        for result in results:
            if result.event is not None:
                result.latency = (result.learned_at
                                  - result.event.extras["sent_at"])
        return results


class EmbeddedDemo(_PlainWorkerDemo):
    """Demo with no server: a memory:// bus fed by a loopback relay."""

    next_steps = (
        "",
        "Next, with a Redis server: 'job-notifier demo --url "
        "redis://127.0.0.1:6379/0' runs the jobs on real RQ workers;",
        "'job-notifier listen --url redis://127.0.0.1:6379/0' in one terminal "
        "prints what 'job-notifier emit --url redis://127.0.0.1:6379/0 42 "
        "finished' sends from another.",
    )

    def __init__(self, channel, connect_timeout, console):
        super(EmbeddedDemo, self).__init__(
            "memory://job-notifier-demo", channel, connect_timeout, console)
        self._relay = None

    def job_id(self, number):
        return "job-%d" % number

    def set_up(self):
        self._relay = _Relay(self.notifier.transport)

    def tear_down(self):
        self._relay.close()

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
