"""Enqueue an RQ job and block until a NotifyingWorker reports its end.

Start a worker first, from the repository root:

    rq worker --path examples/rq -w job_notifier.contrib.rq.NotifyingWorker

Then enqueue a job and wait for it:

    python examples/rq/enqueue_and_wait.py "count these four words"

With --repeat N it runs N jobs one after another and prints the median
and maximum time from the job function returning to the wait returning.
"""

from __future__ import absolute_import, division, print_function, unicode_literals

import argparse
import sys
import time

import redis

import tasks
from job_notifier import WaitTimeout
from job_notifier.contrib.rq import (NotifyingQueue, fetch_return_value,
                                     get_notifier, wait_for_job)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", help="text whose words the job counts")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0",
                        help="Redis URL of RQ, as given to rq worker --url "
                             "(default: redis://127.0.0.1:6379/0)")
    parser.add_argument("--queue", default="default",
                        help="RQ queue name (default: default)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for each job (default: 30)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="number of jobs to run one after another "
                             "(default: 1)")
    args = parser.parse_args()

    connection = redis.Redis.from_url(args.url)
    queue = NotifyingQueue(args.queue, connection=connection)
    # Events travel through JOB_NOTIFIER_URL if it is set, else through
    # RQ's own Redis server, as they do in the worker.
    notifier = get_notifier(connection)
    delays = []
    for _ in range(args.repeat):
        job = queue.enqueue(tasks.count_words, args.text)
        try:
            event = wait_for_job(notifier, job, timeout=args.timeout)
        except WaitTimeout:
            print("job %s did not end within %s seconds: is a NotifyingWorker "
                  "running on queue %r?" % (job.id, args.timeout, args.queue))
            return 2
        waited_until = time.time()
        if event == "failed":
            print("job %s failed: %s" % (
                job.id, event.extras.get("error", "see the worker's log")))
            return 1
        result = fetch_return_value(job)
        delay = waited_until - result["returned_at"]
        delays.append(delay)
        print("job %s finished: %d words; the wait returned %.2f ms after "
              "the job function" % (job.id, result["words"], delay * 1000))
    if len(delays) > 1:
        delays.sort()
        middle = len(delays) // 2
        median = (delays[middle] + delays[-middle - 1]) / 2
        print("%d jobs: median %.2f ms, max %.2f ms"
              % (len(delays), median * 1000, delays[-1] * 1000))
    notifier.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
