"""Run the ``job-notifier`` command as ``python -m job_notifier``."""

from __future__ import absolute_import

import sys

from job_notifier.cli import main

if __name__ == "__main__":
    sys.exit(main())
