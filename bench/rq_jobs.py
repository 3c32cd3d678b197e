"""The job function that the benchmark's RQ worker runs."""

from __future__ import absolute_import, unicode_literals

import time


def sleep_then_report(seconds):
    """Sleep ``seconds``, then return the wall-clock time of the return."""
    time.sleep(seconds)
    return time.time()
