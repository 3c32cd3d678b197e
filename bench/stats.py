"""Clocks, percentiles and a pipe-based signal shared by the measurements."""

from __future__ import absolute_import, division, unicode_literals

import errno
import os
import select
import time

# In-process intervals use the finest clock the interpreter has. Python 2.7
# has no perf_counter; its time.time() has microsecond resolution on Linux.
now = getattr(time, "perf_counter", time.time)

# Intervals that span two processes (an RQ work horse and the waiter) use
# the wall clock, which every process on one machine shares.
wall_clock = time.time


def percentile(sorted_values, fraction):
    """Return the ``fraction`` quantile of ``sorted_values``.

    Values between two ranks are interpolated linearly, as numpy's default
    method does.
    """
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1 - weight) + sorted_values[upper] * weight


def summarize(seconds, lost=0, keep_samples=True):
    """Return a dict of latency statistics in milliseconds.

    Keys: ``n``, ``lost``, ``min``, ``p50``, ``p90``, ``p99``, ``max``,
    ``mean`` and, with ``keep_samples``, ``samples`` (every value, rounded
    to a microsecond) for plotting.
    """
    values = sorted(value * 1000.0 for value in seconds)
    summary = {"n": len(values), "lost": lost}
    for name, fraction in (("min", 0.0), ("p50", 0.5), ("p90", 0.9),
                           ("p99", 0.99), ("max", 1.0)):
        summary[name] = _round(percentile(values, fraction))
    summary["mean"] = _round(sum(values) / len(values)) if values else None
    if keep_samples:
        summary["samples"] = [round(value, 3) for value in values]
    return summary


def _round(value):
    return None if value is None else round(value, 4)


def ratio(numerator, denominator):
    """Return ``numerator / denominator`` rounded, or None if either is missing."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


class PipeSignal(object):
    """A counting signal between threads, built on a pipe.

    ``wait(timeout)`` blocks in ``select()``, which is exact on Python 2.7
    too, where timed waits on ``threading`` primitives poll with sleeps of
    up to 50 ms and would distort every measured interval.
    """

    def __init__(self):
        self._read_fd, self._write_fd = os.pipe()

    def set(self):
        os.write(self._write_fd, b"x")

    def wait(self, timeout):
        """Consume one ``set()``; return False if ``timeout`` seconds pass first."""
        deadline = time.time() + timeout
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                return False
            try:
                readable, _, _ = select.select([self._read_fd], [], [],
                                               remaining)
            except (OSError, select.error) as exc:
                if exc.args and exc.args[0] == errno.EINTR:
                    continue
                raise
            if readable:
                os.read(self._read_fd, 1)
                return True

    def close(self):
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def process_cpu_seconds():
    """Return the user plus system CPU time of this process, in seconds."""
    times = os.times()
    return times[0] + times[1]
