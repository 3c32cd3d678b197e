"""Sender cost: ``notify()`` calls per second against the raw client's send.

Each loop sends one message per call from one thread and waits for the
server's reply where the protocol has one (PUBLISH and ``pg_notify()`` do,
a WebSocket text frame does not); no process listens on the channel.
"""

from __future__ import absolute_import, division, unicode_literals

from job_notifier import Notifier

from .raw import SENDERS
from .stats import now


def calls_per_second(send, count):
    """Call ``send(index)`` ``count`` times; return the calls per second.

    A warm-up of up to 100 calls runs first and is not counted.
    """
    for index in range(min(100, count)):
        send(index)
    started = now()
    for index in range(count):
        send(index)
    elapsed = now() - started
    return round(count / elapsed) if elapsed > 0 else None


def raw_rate(transport, url, channel, count):
    """Return the calls per second of the raw client of ``transport``."""
    send, close = SENDERS[transport](url, channel)
    try:
        return calls_per_second(
            lambda index: send('[%d,"finished"]' % index), count)
    finally:
        close()


def notify_rate(url, channel, count):
    """Return the calls per second of ``Notifier.notify()``."""
    notifier = Notifier.from_url(url, channel=channel)
    try:
        return calls_per_second(
            lambda index: notifier.notify(index, "finished"), count)
    finally:
        notifier.close()
