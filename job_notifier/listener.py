"""The supervised listener thread that owns a transport's subscription."""

from __future__ import absolute_import, unicode_literals

import logging
import os
import threading

from ._compat import drain_pipe, monotonic, nonblocking_pipe, sleep_until
from .exceptions import MalformedMessage, NotifierClosed
from .wire import RateLimitedLog, decode, preview

log = logging.getLogger(__name__)

# How long one receive() call may block. It bounds nothing that users see:
# close() interrupts a receive at once through the wake-up pipe.
RECEIVE_TIMEOUT = 5.0


class ListenerStats(object):
    """Counters that ``Notifier.health()`` reports."""

    def __init__(self):
        self.connected = False
        self.connected_since = None
        self.last_error = None
        self.last_error_at = None
        self.reconnects = 0
        self.connections = 0
        self.malformed_dropped = 0


class Listener(object):
    """Receive messages through ``transport`` and pass them to ``dispatcher``.

    The thread never ends on an error while the notifier is open: it logs
    the error, closes the broken subscription, waits according to
    ``backoff``, subscribes again and has the dispatcher re-check every
    pending waiter.
    """

    def __init__(self, transport, dispatcher, backoff, name="job-notifier"):
        self.transport = transport
        self.dispatcher = dispatcher
        self.backoff = backoff
        self.stats = ListenerStats()
        self.pid = os.getpid()
        self._name = name
        self._stopping = False
        self._dead = False
        self._subscription = None
        self._state_lock = threading.Lock()
        self._connected_cond = threading.Condition(self._state_lock)
        self._wake_read, self._wake_write = nonblocking_pipe()
        self._malformed_log = RateLimitedLog(log)
        self._thread = threading.Thread(target=self._run,
                                        name="%s-listener" % name)
        self._thread.daemon = True

    def start(self):
        self._thread.start()

    def is_alive(self):
        """Return True while the thread runs and has not begun to fail."""
        return self._thread.is_alive() and not self._dead

    def stop(self, timeout=1.0):
        """Stop the thread and close the subscription; wait up to ``timeout``."""
        self._stopping = True
        self._signal_wakeup()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if stopped:
            for fd in (self._wake_read, self._wake_write):
                try:
                    os.close(fd)
                except OSError:
                    pass
        return stopped

    def abandon(self):
        """Forget the subscription without closing it (in a forked child).

        The parent still owns the sockets; closing or shutting them down from
        the child would break the parent's listener.
        """
        self._stopping = True
        self._subscription = None
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass

    def wait_connected(self, timeout):
        """Block until subscribed; return False if ``timeout`` passes first."""
        deadline = monotonic() + timeout
        with self._connected_cond:
            while not (self.stats.connected or self._stopping or self._dead):
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
                self._connected_cond.wait(min(remaining, 0.05))
            return self.stats.connected

    def _signal_wakeup(self):
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass

    def _run(self):
        try:
            self._supervise()
        except BaseException as exc:
            log.critical("Listener %s: thread stopped by an unexpected error "
                         "on %s", self._name, self.transport.describe(),
                         exc_info=True)
            raise
        finally:
            self._dead = True
            self._set_connected(False)
            if not self._stopping:
                self.dispatcher.fail_waiters(NotifierClosed(
                    "the listener of %s stopped unexpectedly; see the log for "
                    "the error" % self.transport.describe()))

    def _supervise(self):
        failures = 0
        log.info("Listener %s: starting on %s", self._name,
                 self.transport.describe())
        while not self._stopping:
            subscription = None
            try:
                subscription = self.transport.open_subscription()
                self._subscription = subscription
                if self._stopping:
                    break
                self._on_connected()
                failures = 0
                self._receive_loop(subscription)
            except Exception as exc:
                if self._stopping:
                    break
                failures += 1
                # Close the broken connection before the backoff sleep, so
                # the server is not left waiting for a close handshake.
                self._subscription = None
                if subscription is not None:
                    self._close_quietly(subscription)
                    subscription = None
                self._on_failure(exc, failures)
            finally:
                self._subscription = None
                if subscription is not None:
                    self._close_quietly(subscription)
        log.info("Listener %s: stopped on %s", self._name,
                 self.transport.describe())

    def _on_connected(self):
        stats = self.stats
        if stats.connections:
            stats.reconnects += 1
            log.info("Listener %s: subscribed again on %s after %d "
                     "reconnects", self._name, self.transport.describe(),
                     stats.reconnects)
        else:
            log.info("Listener %s: subscribed on %s", self._name,
                     self.transport.describe())
        stats.connections += 1
        stats.connected_since = monotonic()
        self._set_connected(True)
        # Events sent while no subscription existed were lost on the server,
        # so every pending waiter runs its check again.
        self.dispatcher.connected(reconnected=stats.connections > 1)

    def _on_failure(self, exc, failures):
        was_connected = self.stats.connected
        self._set_connected(False)
        self.stats.last_error = "%s: %s" % (type(exc).__name__, exc)
        self.stats.last_error_at = monotonic()
        delay = self.backoff.compute(failures)
        if was_connected:
            log.warning("Listener %s: connection to %s lost (%s); "
                        "reconnecting in %.2f seconds", self._name,
                        self.transport.describe(), self.stats.last_error,
                        delay)
        else:
            log.error("Listener %s: cannot subscribe on %s (%s); retrying in "
                      "%.2f seconds (attempt %d)", self._name,
                      self.transport.describe(), self.stats.last_error,
                      delay, failures)
        self._sleep(delay)

    def _receive_loop(self, subscription):
        while not self._stopping:
            payloads = subscription.receive(RECEIVE_TIMEOUT, self._wake_read)
            messages = []
            for payload in payloads:
                message = self._decode(payload)
                if message is not None:
                    messages.append(message)
            self.dispatcher.deliver_all(messages)
            if self._stopping:
                return

    def _decode(self, payload):
        """Return the decoded message, or None after logging a malformed one."""
        try:
            return decode(payload)
        except MalformedMessage as exc:
            self.stats.malformed_dropped += 1
            self._malformed_log.warning(
                "Listener %s: dropped a malformed message on %s (%s): %s",
                self._name, self.transport.describe(), exc, preview(payload))
            return None

    def _sleep(self, seconds):
        if sleep_until(self._wake_read, seconds):
            self._drain_wakeups()

    def _drain_wakeups(self):
        drain_pipe(self._wake_read)

    def _set_connected(self, connected):
        with self._connected_cond:
            self.stats.connected = connected
            self._connected_cond.notify_all()

    def _close_quietly(self, subscription):
        try:
            subscription.close()
        except Exception:
            log.debug("Listener %s: error while closing the subscription on "
                      "%s", self._name, self.transport.describe(),
                      exc_info=True)
