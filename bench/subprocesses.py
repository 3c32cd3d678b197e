"""The environment of the processes the benchmarks start."""

from __future__ import absolute_import, unicode_literals

import os

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_environment():
    """Return this process's environment with the repository on PYTHONPATH.

    Child processes then import ``bench`` and ``job_notifier`` from this
    checkout, whether or not the package is installed in their virtualenv.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [REPOSITORY] + [path for path in [environment.get("PYTHONPATH")]
                        if path])
    return environment
