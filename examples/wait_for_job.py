"""Block until another process reports that a job finished or failed.

Run it first, then run emit_events.py with the same job id:

    python examples/wait_for_job.py --url redis://127.0.0.1:6379/0 job-1
    python examples/emit_events.py --url redis://127.0.0.1:6379/0 job-1
"""

from __future__ import print_function

import argparse
import logging
import os
import sys
import time

from job_notifier import Notifier, WaitTimeout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_id")
    parser.add_argument("--url", default=os.environ.get("JOB_NOTIFIER_URL",
                                                       "redis://127.0.0.1:6379/0"),
                        help="notifier URL (default: $JOB_NOTIFIER_URL or "
                             "redis://127.0.0.1:6379/0)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait before giving up (default: 60)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    notifier = Notifier.from_url(args.url)
    try:
        with notifier.watch(args.job_id) as watch:
            print("waiting for job %s" % args.job_id)
            sys.stdout.flush()
            try:
                event = watch.wait(timeout=args.timeout)
            except WaitTimeout as exc:
                print(exc)
                return 2
        print("job %s %s at %.6f%s" % (
            args.job_id, event, time.time(),
            " (%s)" % event.extras if event.extras else ""))
        return 0 if event == "finished" else 1
    finally:
        notifier.close()


if __name__ == "__main__":
    sys.exit(main())
