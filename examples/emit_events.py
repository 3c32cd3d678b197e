"""Report a job's life cycle as a worker would: dequeue, then finished.

    python examples/emit_events.py --url redis://127.0.0.1:6379/0 job-1
    python examples/emit_events.py --fail job-2
"""

from __future__ import print_function

import argparse
import os
import sys
import time

from job_notifier import Notifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_id")
    parser.add_argument("--url", default=os.environ.get("JOB_NOTIFIER_URL",
                                                       "redis://127.0.0.1:6379/0"),
                        help="notifier URL (default: $JOB_NOTIFIER_URL or "
                             "redis://127.0.0.1:6379/0)")
    parser.add_argument("--fail", action="store_true",
                        help="report the job as failed instead of finished")
    parser.add_argument("--work", type=float, default=0.5,
                        help="seconds of pretend work between the events")
    args = parser.parse_args()

    notifier = Notifier.from_url(args.url)
    try:
        notifier.notify(args.job_id, "dequeue")
        time.sleep(args.work)
        if args.fail:
            notifier.notify(args.job_id, "failed",
                            extras={"error": "RuntimeError: pretend failure"})
            event = "failed"
        else:
            notifier.notify(args.job_id, "finished")
            event = "finished"
        print("sent %s for job %s at %.6f" % (event, args.job_id, time.time()))
        return 0
    finally:
        notifier.close()


if __name__ == "__main__":
    sys.exit(main())
