"""The interface that every transport implements."""

from __future__ import absolute_import, unicode_literals

import errno
import select

from .._compat import monotonic
from ..urls import redact_url


class Transport(object):
    """Send payloads to a channel and open subscriptions to it.

    ``send()`` may be called from any thread. ``open_subscription()`` is
    called by the listener thread only, and the subscription it returns is
    used by that thread alone.
    """

    #: Name used in log lines and in ``Notifier.health()``.
    name = "base"

    #: Largest payload, in bytes, that the server accepts (None: no limit).
    max_payload_bytes = None

    def __init__(self, url, channel):
        self.url = url
        self.channel = channel

    def describe(self):
        """Return the URL and channel for a log line, without a password."""
        return "%s channel %s" % (redact_url(self.url), self.channel)

    def send(self, payload, **options):
        raise NotImplementedError

    def open_subscription(self):
        raise NotImplementedError

    def reset_after_fork(self):
        """Drop connections inherited from the parent without closing them."""

    def close(self):
        """Close the connections used for sending."""

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.describe())


class Subscription(object):
    """A live subscription, owned by the listener thread."""

    def receive(self, timeout, wake_fd):
        """Return the payloads that arrived, waiting up to ``timeout`` seconds.

        Return an empty list when the timeout passes or ``wake_fd`` becomes
        readable. Raise an exception when the connection is broken.
        """
        raise NotImplementedError

    def close(self):
        raise NotImplementedError


def wait_readable(fds, timeout):
    """Return the subset of ``fds`` that is readable within ``timeout``."""
    try:
        readable, _, _ = select.select(fds, [], [], timeout)
    except (OSError, select.error) as exc:
        if exc.args and exc.args[0] == errno.EINTR:
            return []
        raise
    return readable


class PingSchedule(object):
    """Liveness timing of a listening connection.

    A ping is due once the connection has been idle for ``interval``
    seconds, and the reply is overdue ``timeout`` seconds after the ping, so
    a dead server is noticed within ``interval + timeout`` seconds.
    """

    def __init__(self, interval, timeout):
        self.interval = interval
        self.timeout = timeout
        self.last_activity = monotonic()
        self.ping_sent_at = None
        self._activity_unrecorded = False

    def record_activity(self):
        """Note that the server sent something, a reply included.

        The time is read by the next method that needs it. So a listener
        reads no clock between receiving an event and delivering it, which
        matters on Python 2.7, where monotonic() is a ctypes call that took
        about 12 us on a cold cache (2-core VM).
        """
        self._activity_unrecorded = True
        self.ping_sent_at = None

    def record_ping(self):
        self.ping_sent_at = self._now()

    def _now(self):
        now = monotonic()
        if self._activity_unrecorded:
            self.last_activity = now
            self._activity_unrecorded = False
        return now

    def seconds_until_action(self):
        """Return how long to wait before ``ping_due()`` or ``reply_overdue()``."""
        now = self._now()
        if self.ping_sent_at is not None:
            return self.ping_sent_at + self.timeout - now
        return self.last_activity + self.interval - now

    def ping_due(self):
        return (self.ping_sent_at is None
                and self._now() - self.last_activity >= self.interval)

    def reply_overdue(self):
        return (self.ping_sent_at is not None
                and self._now() - self.ping_sent_at >= self.timeout)
