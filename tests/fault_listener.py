"""A listening notifier under fault injection, here or in a child process.

``WatchedNotifier`` listens with a callback for ``finished`` events and one
pending ``wait_for()`` whose check is counted. ``report()`` returns what the
fault tests assert on, as JSON-compatible values.

Run as a script, this module keeps a ``WatchedNotifier`` in a child process
that a test can stop with SIGSTOP: ``ChildNotifier`` starts it, and the
child answers each ``report`` line on its standard input with one JSON line.
"""

from __future__ import absolute_import, print_function, unicode_literals

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

from job_notifier import Notifier, NotifierError

TESTS_DIRECTORY = os.path.dirname(os.path.abspath(__file__))

# Longer than any fault test, so the wait ends only by an event or close().
WAIT_TIMEOUT = 120


class _ListHandler(logging.Handler):
    def __init__(self, records):
        logging.Handler.__init__(self, logging.WARNING)
        self.records = records

    def emit(self, record):
        self.records.append(record.getMessage())


class WatchedNotifier(object):
    """A notifier that listens on ``channel`` and waits for ``waited_job``.

    The waiter's check always returns None and only counts its runs, so
    the waiter ends by the event alone. Warnings of the listener are kept.
    With ``subscribe_first`` the wait begins after the listener subscribed,
    so its check has run exactly once until the next reconnect.
    """

    def __init__(self, url, channel, options, waited_job,
                 subscribe_first=False):
        self.notifier = Notifier.from_url(url, channel=channel, **options)
        self._lock = threading.Lock()
        self.checks = 0
        self.finished = []
        self.result = None
        self.warnings = []
        self._handler = _ListHandler(self.warnings)
        logging.getLogger("job_notifier.listener").addHandler(self._handler)
        self.notifier.on("finished", self._on_finished)
        if subscribe_first:
            self.notifier.start(timeout=30)
        self._thread = threading.Thread(target=self._wait, args=(waited_job,))
        self._thread.daemon = True
        self._thread.start()

    def _on_finished(self, notifier, job_id):
        with self._lock:
            self.finished.append(job_id)

    def _check(self, job_id):
        with self._lock:
            self.checks += 1
        return None

    def _wait(self, job_id):
        try:
            self.result = self.notifier.wait_for(job_id, timeout=WAIT_TIMEOUT,
                                                 check=self._check)
        except NotifierError as exc:
            self.result = "%s: %s" % (type(exc).__name__, exc)

    def report(self):
        with self._lock:
            return {
                "health": self.notifier.health(),
                "checks": self.checks,
                "finished": list(self.finished),
                "result": self.result,
                "warnings": list(self.warnings),
            }

    def close(self):
        self.notifier.close()
        self._thread.join(5)
        logging.getLogger("job_notifier.listener").removeHandler(self._handler)


class ChildNotifier(object):
    """A ``WatchedNotifier`` in a child process, with the same ``report()``.

    ``freeze()`` and ``thaw()`` send SIGSTOP and SIGCONT to the child, so
    the server sees a peer that stops answering without closing its socket.
    """

    def __init__(self, url, channel, options, waited_job,
                 subscribe_first=False):
        environment = dict(os.environ)
        environment[str("PYTHONPATH")] = os.pathsep.join(
            [os.path.dirname(TESTS_DIRECTORY), TESTS_DIRECTORY]
            + [path for path in [environment.get(str("PYTHONPATH"))] if path])
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), url, channel,
             waited_job, json.dumps(options),
             "subscribe-first" if subscribe_first else "wait-at-once"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)

    def report(self, timeout=10.0):
        self.process.stdin.write(b"report\n")
        self.process.stdin.flush()
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not readable:
            raise RuntimeError("the child listener sent no report within %s "
                               "seconds" % timeout)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the child listener exited with status %s"
                               % self.process.wait())
        return json.loads(line.decode("utf-8"))

    def freeze(self):
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self):
        process = self.process
        if process.poll() is not None:
            return
        self.thaw()
        try:
            process.stdin.write(b"exit\n")
            process.stdin.close()
        except (IOError, OSError):
            pass
        deadline = time.time() + 10
        while process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def main(arguments):
    url, channel, waited_job, options, order = arguments
    watched = WatchedNotifier(url, channel, json.loads(options), waited_job,
                              subscribe_first=order == "subscribe-first")
    try:
        for line in iter(sys.stdin.readline, ""):
            command = line.strip()
            if command == "report":
                sys.stdout.write(json.dumps(watched.report()) + "\n")
                sys.stdout.flush()
            elif command == "exit":
                break
    finally:
        watched.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
