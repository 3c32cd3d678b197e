"""In-process transport: every notifier of one process on a channel shares it.

It carries the same JSON payloads as the network transports, so code tested
on ``memory://`` exercises the same decoding and dispatch.
"""

from __future__ import absolute_import, unicode_literals

import collections
import os
import threading

from .._compat import drain_pipe, nonblocking_pipe
from .base import Subscription, Transport, wait_readable

_buses_lock = threading.Lock()
_buses = {}
_buses_pid = os.getpid()


class _Bus(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.subscriptions = set()


def _bus(name):
    global _buses, _buses_lock, _buses_pid
    if _buses_pid != os.getpid():
        # Forked child: the parent's subscribers live in another process.
        _buses_lock = threading.Lock()
        _buses = {}
        _buses_pid = os.getpid()
    with _buses_lock:
        bus = _buses.get(name)
        if bus is None:
            bus = _buses[name] = _Bus()
        return bus


class MemoryTransport(Transport):
    """Transport for ``memory://`` and ``memory://NAME`` URLs.

    Notifiers with the same URL name and channel in one process share a bus.
    """

    name = "memory"

    def __init__(self, url, channel):
        super(MemoryTransport, self).__init__(url, channel)
        self._bus_name = (url.split("://", 1)[1].strip("/"), channel)

    def send(self, payload, **options):
        if options:
            raise TypeError("memory:// takes no send options, got %s"
                            % ", ".join(sorted(options)))
        bus = _bus(self._bus_name)
        with bus.lock:
            subscriptions = list(bus.subscriptions)
        for subscription in subscriptions:
            subscription.push(payload)

    def open_subscription(self):
        subscription = _MemorySubscription(_bus(self._bus_name))
        return subscription


class _MemorySubscription(Subscription):
    def __init__(self, bus):
        self._bus = bus
        self._pending = collections.deque()
        self._read_fd, self._write_fd = nonblocking_pipe()
        with bus.lock:
            bus.subscriptions.add(self)

    def push(self, payload):
        self._pending.append(payload)
        try:
            os.write(self._write_fd, b"x")
        except OSError:
            pass

    def receive(self, timeout, wake_fd):
        if not self._pending:
            readable = wait_readable([self._read_fd, wake_fd], timeout)
            if self._read_fd in readable:
                drain_pipe(self._read_fd)
        payloads = []
        while self._pending:
            payloads.append(self._pending.popleft())
        return payloads

    def close(self):
        with self._bus.lock:
            self._bus.subscriptions.discard(self)
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
