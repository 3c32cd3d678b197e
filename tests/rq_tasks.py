"""Job functions that the rq worker of tests/test_rq.py imports and runs."""

from __future__ import absolute_import, unicode_literals

import os
import signal
import time


def succeed(value):
    return value


def fail(message):
    raise ValueError(message)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def big_result(size):
    return b"x" * size


def kill_own_process():
    # SIGKILL cannot be caught, so RQ's parent worker process must notice
    # the dead work horse and record the failure itself.
    os.kill(os.getpid(), signal.SIGKILL)


def ask_for_retry():
    # RQ 2.x runs a job again when it returns a Retry, and fails it once
    # the retries are used up. RQ 1.3 has no Retry.
    from rq import Retry

    return Retry(max=1)
