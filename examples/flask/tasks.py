"""Job functions of the Flask example; the rq worker imports this module."""

from __future__ import absolute_import, unicode_literals

import time


def add(a, b, seconds=1.0, fail=False):
    """Sleep for ``seconds``, then return ``a + b`` or raise ``ValueError``."""
    time.sleep(seconds)
    if fail:
        raise ValueError("failed on purpose after %s seconds" % seconds)
    return a + b
