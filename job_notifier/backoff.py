"""Reconnect delays for the supervised listener."""

from __future__ import absolute_import, unicode_literals

import random


class Backoff(object):
    """Capped exponential backoff with jitter, as an immutable value.

    ``compute(failures)`` returns ``min(cap, base * factor ** (failures - 1))``
    multiplied by a random factor in ``[1 - jitter, 1 + jitter]``. With the
    defaults (base 0.1 s, factor 2, cap 2 s) the delays before the first
    attempts are about 0.1, 0.2, 0.4, 0.8, 1.6, 2, 2, ... seconds, so a
    restarted server is found again within about 2 seconds of coming back.
    """

    __slots__ = ("base", "factor", "cap", "jitter")

    def __init__(self, base=0.1, factor=2.0, cap=2.0, jitter=0.1):
        if base <= 0 or factor < 1 or cap < base or not 0 <= jitter < 1:
            raise ValueError(
                "invalid backoff base=%r factor=%r cap=%r jitter=%r: use "
                "base > 0, factor >= 1, cap >= base and 0 <= jitter < 1"
                % (base, factor, cap, jitter))
        self.base = base
        self.factor = factor
        self.cap = cap
        self.jitter = jitter

    def compute(self, failures):
        """Return the delay in seconds after ``failures`` failures in a row."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, 64)
        delay = min(self.cap, self.base * self.factor ** exponent)
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    def __repr__(self):
        return "Backoff(base=%r, factor=%r, cap=%r, jitter=%r)" % (
            self.base, self.factor, self.cap, self.jitter)
