"""Differences between RQ 1.3 with redis-py 3.5 and later RQ and redis-py.

``job_notifier.contrib.rq`` imports these names instead of testing the RQ
or redis-py version itself. The test suite runs with RQ 1.3.0 on Python
2.7, RQ 1.15.1 on Python 3.6 and 3.7, and RQ 2.12.0 on Python 3.11.
"""

from __future__ import absolute_import, unicode_literals

import redis
import rq
from rq import Queue

RQ_VERSION = tuple(int(part) for part in rq.__version__.split(".")[:2]
                   if part.isdigit())

# The queue method that writes one job into the queue, whichever public
# method (enqueue, enqueue_call, enqueue_many, enqueue_dependents) was
# called. RQ 2.x moved dependency handling into enqueue_job() and left the
# bare write in _enqueue_job(); RQ 1.3 has only enqueue_job().
ENQUEUE_METHOD = "_enqueue_job" if hasattr(Queue, "_enqueue_job") else "enqueue_job"

# redis-py 3.5 unquotes %-escapes in a URL's password, user name, host and
# path only when asked with decode_components=True; redis-py 4 and later
# always unquote them and reject that option.
if int(redis.__version__.split(".")[0]) < 4:
    REDIS_URL_OPTIONS = {"decode_components": True}
else:
    REDIS_URL_OPTIONS = {}


def fetch_return_value(job):
    """Fetch the return value that RQ stored for ``job``, or None.

    RQ 1.12 and later store results in a separate stream read by the
    method ``Job.return_value()``; RQ 2.x deprecates ``Job.result``. RQ 1.3
    keeps the result in the job's hash, and its ``return_value`` is a
    property that returns ``Job.result``.
    """
    if RQ_VERSION >= (1, 12):
        return job.return_value(refresh=True)
    job.refresh()
    return job.result
