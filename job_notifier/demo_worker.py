"""Sample jobs and the worker process of ``job-notifier demo``.

The sample functions are importable by name, so RQ workers can run them
too. Run as a module, this file is a plain worker: it reads a JSON list of
jobs on stdin, runs them one after the other and reports each one through
``Notifier.notify()``::

    python -m job_notifier.demo_worker --relay 127.0.0.1:PORT --channel NAME
    JOB_NOTIFIER_URL=redis://... python -m job_notifier.demo_worker
"""

from __future__ import absolute_import, print_function, unicode_literals

import argparse
import json
import os
import socket
import sys
import time

from .notifier import DEFAULT_CHANNEL, Notifier
from .transports.base import Transport

# Each sample: function name, arguments, and the event it ends with. The
# last argument is the number of seconds the job pretends to spend on I/O,
# so that the events of the workers interleave on screen.
SAMPLE_JOBS = (
    ("count_primes", [30000, 0.3], "finished"),
    ("parse_number", ["42", 0.5], "finished"),
    ("parse_number", ["forty-two", 0.2], "failed"),
    ("word_count", ["the quick brown fox jumps over the lazy dog", 0.4],
     "finished"),
    ("divide", [1, 0, 0.3], "failed"),
    ("count_primes", [60000, 0.2], "finished"),
)


def count_primes(limit, seconds):
    """Return how many primes are below ``limit``."""
    time.sleep(seconds)
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for number in range(2, int(limit ** 0.5) + 1):
        if sieve[number]:
            sieve[number * number::number] = bytearray(
                len(range(number * number, limit, number)))
    return sum(sieve)


def parse_number(text, seconds):
    """Return ``text`` as an integer; raise ValueError if it is not one."""
    time.sleep(seconds)
    return int(text)


def word_count(text, seconds):
    """Return the number of words in ``text``."""
    time.sleep(seconds)
    return len(text.split())


def divide(dividend, divisor, seconds):
    """Return ``dividend / divisor``; raise ZeroDivisionError for 0."""
    time.sleep(seconds)
    return dividend / divisor


def describe_error(exc):
    """Return the exception type and message, as the failed event carries them."""
    return "%s: %s" % (type(exc).__name__, exc)


class RelayTransport(Transport):
    """Send payloads as lines over one TCP connection to the demo's relay.

    JSON text never contains a raw newline, so a newline ends each message.
    The relay only carries messages from the workers to the demo process,
    so this transport cannot listen.
    """

    name = "relay"

    def __init__(self, address, channel):
        super(RelayTransport, self).__init__("tcp://%s:%d" % address, channel)
        self._socket = socket.create_connection(address, timeout=5.0)

    def send(self, payload, **options):
        if options:
            raise TypeError("the relay takes no send options, got %s"
                            % ", ".join(sorted(options)))
        self._socket.sendall(payload.encode("utf-8") + b"\n")

    def open_subscription(self):
        raise NotImplementedError("the demo relay carries messages one way, "
                                  "from the workers to the demo process")

    def close(self):
        self._socket.close()


def run_jobs(notifier, jobs):
    """Run each job and report dequeue, then finished or failed."""
    functions = {"count_primes": count_primes, "parse_number": parse_number,
                 "word_count": word_count, "divide": divide}
    for job in jobs:
        job_id = job["id"]
        notifier.notify(job_id, "dequeue", extras={"worker": os.getpid()})
        try:
            result = functions[job["function"]](*job["args"])
        except Exception as exc:
            # sent_at lets the demo tell how long each waiter took to learn
            # of the job's end; the clock is shared by the processes.
            notifier.notify(job_id, "failed", extras={
                "error": describe_error(exc), "sent_at": time.time()})
        else:
            notifier.notify(job_id, "finished", extras={
                "result": result, "sent_at": time.time()})


def _address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv=None):
    """Run the jobs listed on stdin and report them; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m job_notifier.demo_worker")
    parser.add_argument("--relay", type=_address, metavar="HOST:PORT",
                        help="send to the demo's relay instead of to "
                             "$JOB_NOTIFIER_URL")
    parser.add_argument("--channel", default=DEFAULT_CHANNEL)
    args = parser.parse_args(argv)
    jobs = json.loads(sys.stdin.read())

    if args.relay is not None:
        notifier = Notifier(RelayTransport(args.relay, args.channel))
    else:
        notifier = Notifier.from_url(channel=args.channel)
    try:
        run_jobs(notifier, jobs)
    finally:
        notifier.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
