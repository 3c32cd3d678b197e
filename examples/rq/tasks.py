"""Job functions for the RQ example; the worker imports this module."""

from __future__ import absolute_import, unicode_literals

import time


def count_words(text):
    """Count the words of ``text``.

    The result also contains the time at which the function returned, so the
    waiting script can print how long the event took to reach it.
    """
    words = text.split()
    if not words:
        raise ValueError("no words to count in %r" % (text,))
    return {"words": len(words), "returned_at": time.time()}
