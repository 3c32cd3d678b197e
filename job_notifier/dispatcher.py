"""Thread-safe routing of decoded messages to waiters and callbacks.

The listener thread calls ``deliver_all()`` with the messages of one
receive. Waiters of each message's job id are found by a dictionary lookup
and woken on the spot, which costs the same however many other jobs are
waited on. Callbacks are queued and run on the dispatcher's own thread, so
a slow callback cannot stall the socket.
"""

from __future__ import absolute_import, unicode_literals

import collections
import logging
import threading

from ._compat import Wakeup, monotonic
from .exceptions import NotifierClosed

log = logging.getLogger(__name__)

# The callback thread logs a warning when this many messages wait for it.
QUEUE_WARNING_THRESHOLD = 1000

_STOP = object()

# One shared frozenset per set of events that waiters wait for, because a
# frozenset takes over 200 bytes, a fifth of a waiter. Events are validated
# first, so there are at most 16 sets: the subsets of the four events.
_event_sets = {}


class _CallbackQueue(object):
    """FIFO of messages for the callback thread.

    ``put_all()`` wakes the callback thread only when it is blocked, once
    per batch: a busy listener and a busy callback thread then hand over
    the GIL once per receive instead of once per message, as with
    ``queue.Queue``. ``get()`` blocks without a timeout, because on Python
    2.7 a timed wait polls with sleeps of up to 50 ms.
    """

    def __init__(self):
        self._items = collections.deque()
        self._lock = threading.Lock()
        self._consumer_blocked = False
        # Held except between put_all() waking the consumer and the
        # consumer taking it again; Lock allows release from another thread.
        self._ready = threading.Lock()
        self._ready.acquire()

    def put_all(self, items):
        with self._lock:
            self._items.extend(items)
            wake = self._consumer_blocked
            self._consumer_blocked = False
        if wake:
            self._ready.release()

    def get(self):
        """Remove and return the oldest item, blocking until there is one."""
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                self._consumer_blocked = True
            self._ready.acquire()

    def qsize(self):
        return len(self._items)


class Waiter(object):
    """A thread waiting for one of ``events`` on one job id."""

    __slots__ = ("job_id", "events", "result", "extras", "error",
                 "recheck", "wakeup")

    def __init__(self, job_id, events):
        self.job_id = job_id
        self.events = events
        self.result = None
        self.extras = None
        self.error = None
        self.recheck = False
        self.wakeup = Wakeup()


class _Subscription(object):
    __slots__ = ("callback", "once", "with_extras", "fired")

    def __init__(self, callback, once, with_extras):
        self.callback = callback
        self.once = once
        self.with_extras = with_extras
        self.fired = False


class Dispatcher(object):
    """Registry of callbacks and waiters, and the thread that runs callbacks.

    ``owner`` is the ``Notifier`` passed as the first argument to every
    callback.
    """

    def __init__(self, owner, name="job-notifier"):
        self._owner = owner
        self._name = name
        self._lock = threading.Lock()
        # Lists are replaced, never changed in place, so delivery can
        # iterate a snapshot without holding the lock.
        self._callbacks = {}
        self._waiters = {}
        self._queue = _CallbackQueue()
        self._queue_warned = False
        self._thread = None
        self._closed = False
        self._error = None
        self.messages_received = 0
        self.last_message_at = None
        self.callback_errors = 0

    # Callbacks.

    def add_callback(self, name, callback, once=False, with_extras=False):
        entry = _Subscription(callback, once, with_extras)
        with self._lock:
            self._callbacks[name] = self._callbacks.get(name, ()) + (entry,)
        return entry

    def remove_callback(self, name, callback=None):
        """Remove ``callback`` from ``name``, or all of them if it is None.

        Return the number of callbacks removed.
        """
        with self._lock:
            entries = self._callbacks.get(name, ())
            if callback is None:
                kept = ()
            else:
                kept = tuple(entry for entry in entries
                             if entry.callback != callback)
            if kept:
                self._callbacks[name] = kept
            else:
                self._callbacks.pop(name, None)
        return len(entries) - len(kept)

    def _remove_entry(self, name, entry):
        with self._lock:
            kept = tuple(other for other in self._callbacks.get(name, ())
                         if other is not entry)
            if kept:
                self._callbacks[name] = kept
            else:
                self._callbacks.pop(name, None)

    def callback_count(self):
        with self._lock:
            return sum(len(entries) for entries in self._callbacks.values())

    def has_callbacks(self):
        return bool(self._callbacks)

    def copy_callbacks_from(self, other):
        """Take over the callbacks of ``other`` (used in a forked child)."""
        # The other dispatcher's lock may have been copied into the child
        # while another thread held it, so it is not taken here.
        self._callbacks = dict(other._callbacks)

    # Waiters.

    def add_waiter(self, job_id, events):
        event_set = frozenset(events)
        event_set = _event_sets.setdefault(event_set, event_set)
        waiter = Waiter(job_id, event_set)
        with self._lock:
            if self._closed:
                raise NotifierClosed(
                    "the notifier is closed: create a new one to wait for "
                    "job %s" % job_id)
            self._waiters.setdefault(job_id, set()).add(waiter)
        return waiter

    def remove_waiter(self, waiter):
        with self._lock:
            waiters = self._waiters.get(waiter.job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.job_id]

    def waiter_count(self):
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def resolve(self, waiter, event, extras=None):
        """Complete ``waiter`` with ``event`` unless it already has a result."""
        with self._lock:
            if waiter.result is not None or waiter.error is not None:
                return
            waiter.result = event
            waiter.extras = extras
            wakeup = waiter.wakeup
        wakeup.set()

    def prepare_wait(self, waiter):
        """Return ``(wakeup, recheck)`` for the next round of a wait.

        ``wakeup`` is None when the waiter already has a result or an error.
        ``recheck`` is True when the listener subscribed again since the last
        round, so the waiter should run its check. The request is cleared
        under the lock, so a reconnect after this call wakes the next round.
        """
        with self._lock:
            if waiter.result is not None or waiter.error is not None:
                return None, False
            recheck = waiter.recheck
            if recheck or not waiter.wakeup.is_pending():
                waiter.wakeup = Wakeup()
            waiter.recheck = False
            return waiter.wakeup, recheck

    def _wake_all(self, error=None, recheck=False):
        with self._lock:
            waiters = [waiter for group in self._waiters.values()
                       for waiter in group]
            wakeups = []
            for waiter in waiters:
                if waiter.result is not None or waiter.error is not None:
                    continue
                if error is not None:
                    waiter.error = error
                if recheck:
                    waiter.recheck = True
                wakeups.append(waiter.wakeup)
        for wakeup in wakeups:
            wakeup.set()

    # Events from the listener.

    def deliver(self, message):
        """Wake the waiters of ``message.job_id`` and queue its callbacks."""
        self.deliver_all((message,))

    def deliver_all(self, messages):
        """Wake the waiters of every message in order and queue its callbacks.

        The callback thread is woken at most once for the whole sequence.
        """
        if not messages:
            return
        self.messages_received += len(messages)
        woken = []
        with self._lock:
            for message in messages:
                for waiter in self._waiters.get(message.job_id, ()):
                    if (message.event in waiter.events
                            and waiter.result is None
                            and waiter.error is None):
                        waiter.result = message.event
                        waiter.extras = message.extras
                        woken.append(waiter.wakeup)
            has_callbacks = bool(self._callbacks)
        for wakeup in woken:
            wakeup.set()
        if has_callbacks:
            self._ensure_thread()
            self._queue.put_all(messages)
            self._check_queue_size()
        # Read last, because Python 2.7's monotonic() is a slow ctypes call.
        self.last_message_at = monotonic()

    def connected(self, reconnected):
        """Ask every pending waiter to run its ``check`` again."""
        self._wake_all(recheck=True)

    def close(self, error):
        """Wake every waiter with ``error`` and stop the callback thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake_all(error=error)
        if thread is not None:
            self._queue.put_all((_STOP,))
        return thread

    def fail_waiters(self, error):
        """Wake every pending waiter with ``error``; the dispatcher stays open."""
        self._wake_all(error=error)

    # The callback thread.

    def _ensure_thread(self):
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run,
                                      name="%s-callbacks" % self._name)
            thread.daemon = True
            self._thread = thread
        thread.start()

    def _check_queue_size(self):
        size = self._queue.qsize()
        if size >= QUEUE_WARNING_THRESHOLD and not self._queue_warned:
            self._queue_warned = True
            log.warning("Dispatcher %s: %d messages are waiting for slow "
                        "callbacks; none is dropped, but callbacks run late",
                        self._name, size)
        elif size < QUEUE_WARNING_THRESHOLD // 2:
            self._queue_warned = False

    def queue_size(self):
        return self._queue.qsize()

    def _run(self):
        while True:
            # A blocking get with no timeout: on Python 2.7 a timed get
            # would poll with sleeps of up to 50 ms.
            message = self._queue.get()
            if message is _STOP:
                return
            self._run_callbacks(message)

    def _run_callbacks(self, message):
        callbacks = self._callbacks
        names = (("job", True), ("job:%s" % message.job_id, True),
                 (message.event, False))
        for name, with_event in names:
            for entry in callbacks.get(name, ()):
                if entry.once:
                    with self._lock:
                        if entry.fired:
                            continue
                        entry.fired = True
                    self._remove_entry(name, entry)
                self._call(name, entry, message, with_event)

    def _call(self, name, entry, message, with_event):
        args = (self._owner, message.job_id)
        if with_event:
            args += (message.event,)
        kwargs = {"extras": message.extras} if entry.with_extras else {}
        try:
            entry.callback(*args, **kwargs)
        except (Exception, SystemExit):
            # sys.exit() in a callback must not end the callback thread, or
            # every later callback would silently stop running.
            self.callback_errors += 1
            log.exception("Dispatcher %s: callback %r for %r raised on job %s "
                          "event %s; other callbacks still run",
                          self._name, entry.callback, name, message.job_id,
                          message.event)
