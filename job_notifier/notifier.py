"""The ``Notifier``: the public face of job_notifier."""

from __future__ import absolute_import, unicode_literals

import atexit
import logging
import os
import threading
import weakref

from ._compat import monotonic, quote, text_type
from .backoff import Backoff
from .dispatcher import Dispatcher
from .exceptions import (ConfigurationError, MessageTooLarge, NotifierClosed,
                         NotifierError, WaitTimeout)
from .listener import Listener
from .transports import transport_class
from .wire import EVENTS, TERMINAL_EVENTS, encode, normalize_job_id, validate_event

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "job_notifier"
DEFAULT_URL = "memory://"
URL_ENVIRONMENT_VARIABLE = "JOB_NOTIFIER_URL"

_live_notifiers = weakref.WeakSet()


class JobEvent(text_type):
    """The event name returned by a wait, with the job id and the extras.

    It compares equal to the plain event name, so ``event == "finished"``
    works; ``event.extras`` is the dict sent with the event (empty if none).
    """

    def __new__(cls, event, job_id, extras=None):
        self = super(JobEvent, cls).__new__(cls, event)
        self.job_id = job_id
        self.extras = extras if extras is not None else {}
        return self

    def __reduce__(self):
        return (JobEvent, (text_type(self), self.job_id, self.extras))


class Notifier(object):
    """Send job events through a transport and deliver them to listeners.

    Build one with ``Notifier.from_url()``. Listening starts lazily, on the
    first ``on()``, ``once()``, ``wait_for()``, ``watch()`` or ``start()``,
    with one listener thread and one server connection per notifier, however
    many callbacks and waiters there are. A forked child that uses an
    inherited notifier gets its own thread and connections.
    """

    def __init__(self, transport, backoff=None, name=None):
        self.transport = transport
        self.backoff = backoff if backoff is not None else Backoff()
        self.name = name or "job-notifier-%s" % transport.name
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._dispatcher = Dispatcher(self, self.name)
        self._listener = None
        self._closed = False
        _live_notifiers.add(self)

    @classmethod
    def from_url(cls, url=None, channel=DEFAULT_CHANNEL, backoff=None,
                 **options):
        """Create a notifier for ``url``.

        ``url`` defaults to the ``JOB_NOTIFIER_URL`` environment variable,
        then to ``memory://``. Other keyword options go to the transport,
        for example ``ping_interval`` and ``ping_timeout`` on Redis.

        Raise ``ConfigurationError`` for an unsupported scheme or an invalid
        option and ``MissingDependencyError`` when the transport's client
        library is not installed.
        """
        if url is None:
            url = os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
        if not channel or not isinstance(channel, (text_type, str)):
            raise ConfigurationError(
                "invalid channel %s: use a non-empty string such as %s"
                % (quote(channel), quote(DEFAULT_CHANNEL)))
        transport_cls = transport_class(url)
        try:
            transport = transport_cls(url, channel, **options)
        except TypeError as exc:
            raise ConfigurationError(
                "invalid option for %s: %s" % (transport_cls.__name__, exc))
        return cls(transport, backoff=backoff)

    def __repr__(self):
        return "<Notifier %s>" % self.transport.describe()

    # Callbacks.

    def on(self, event, callback, with_extras=False):
        """Call ``callback`` for every ``event`` and return ``callback``.

        ``event`` is ``"enqueue"``, ``"dequeue"``, ``"finished"`` or
        ``"failed"`` (called as ``callback(notifier, job_id)``), ``"job"`` for
        every event of every job, or ``"job:<id>"`` for every event of one
        job (both called as ``callback(notifier, job_id, event)``). With
        ``with_extras=True`` the callback also gets ``extras=dict``.

        Callbacks run one at a time on the notifier's callback thread, never
        on the listener thread. Each runs on its own: an exception is logged
        with its traceback and the other callbacks still run.
        """
        self._validate_subscription(event, callback)
        self._check_fork()
        self._dispatcher.add_callback(text_type(event), callback,
                                      with_extras=with_extras)
        self._ensure_listener()
        return callback

    def once(self, event, callback, with_extras=False):
        """Like ``on()``, but the callback runs at most once."""
        self._validate_subscription(event, callback)
        self._check_fork()
        self._dispatcher.add_callback(text_type(event), callback, once=True,
                                      with_extras=with_extras)
        self._ensure_listener()
        return callback

    def unsubscribe(self, event, callback=None):
        """Remove ``callback`` from ``event``, or every callback if it is None.

        Return the number of callbacks removed.
        """
        self._check_fork()
        return self._dispatcher.remove_callback(text_type(event), callback)

    @staticmethod
    def _validate_subscription(event, callback):
        if not callable(callback):
            raise ConfigurationError(
                "callback %r for event %s is not callable: pass a function "
                "that takes (notifier, job_id[, event])" % (callback, quote(event)))
        if not isinstance(event, (text_type, str)):
            raise ConfigurationError(
                "invalid event %s: use one of %s, 'job' or 'job:<id>'"
                % (quote(event), ", ".join(EVENTS)))
        if event in EVENTS or event == "job":
            return
        if event.startswith("job:") and len(event) > 4:
            return
        raise ConfigurationError(
            "unknown event %s: use one of %s, 'job' or 'job:<id>'"
            % (quote(event), ", ".join(EVENTS)))

    # Sending.

    def notify(self, job_id, event, extras=None, **send_options):
        """Send ``event`` for ``job_id`` to every listener on the channel.

        ``extras`` is an optional small dict of JSON values that receivers
        get as ``JobEvent.extras`` or through ``with_extras=True`` callbacks.
        If the message is over the transport's payload limit, the extras are
        dropped with a warning; if it is still too large, ``MessageTooLarge``
        is raised. Transport errors raise ``TransportError``: a notification
        is never dropped without an exception.
        """
        self._check_fork()
        if self._closed:
            raise NotifierClosed("cannot notify job %s: the notifier is "
                                 "closed" % (job_id,))
        event = validate_event(event)
        payload = self._fit_payload(job_id, event, extras)
        self.transport.send(payload, **send_options)

    def _fit_payload(self, job_id, event, extras):
        payload = encode(job_id, event, extras)
        limit = self.transport.max_payload_bytes
        if limit is None or len(payload.encode("utf-8")) <= limit:
            return payload
        if extras:
            log.warning("Notifier %s: message for job %s event %s is %d bytes "
                        "with extras, over the limit of %d; sending it without "
                        "extras", self.name, job_id, event,
                        len(payload.encode("utf-8")), limit)
            payload = encode(job_id, event)
            if len(payload.encode("utf-8")) <= limit:
                return payload
        raise MessageTooLarge(
            "message for job id %r is %d bytes, over the %s limit of %d "
            "bytes: use a shorter job id" % (
                job_id, len(payload.encode("utf-8")), self.transport.name,
                limit))

    # Waiting.

    def wait_for(self, job_id, timeout=None, events=TERMINAL_EVENTS,
                 check=None):
        """Block until ``job_id`` reaches one of ``events``; return the event.

        The return value is a ``JobEvent``: the event name as text, with
        ``.job_id`` and ``.extras``. ``timeout`` is in seconds; None waits
        for ever. ``check(job_id)`` returns an event name or None; it runs
        after subscribing and again after every reconnect, so a state that
        was reached before the wait began, or while the listener was
        disconnected, is not missed.

        Raise ``WaitTimeout`` when the timeout passes and ``NotifierClosed``
        when the notifier is closed during the wait.
        """
        job_id, events = self._prepare_wait(job_id, events, timeout, check)
        self._ensure_listener()
        waiter = self._dispatcher.add_waiter(job_id, events)
        try:
            return self._wait(waiter, timeout, check)
        finally:
            self._dispatcher.remove_waiter(waiter)

    def watch(self, job_id, events=TERMINAL_EVENTS, check=None,
              subscribe_timeout=10.0):
        """Return a context manager that subscribes before the job starts.

        ``__enter__`` registers the waiter and blocks until the listener is
        subscribed (raising ``NotifierError`` after ``subscribe_timeout``
        seconds), so an event sent by a job started inside the block cannot
        be missed::

            with notifier.watch(job_id) as watch:
                start_the_job()
                event = watch.wait(timeout=30)
        """
        job_id, events = self._prepare_wait(job_id, events, None, check)
        return Watch(self, job_id, events, check, subscribe_timeout)

    def _prepare_wait(self, job_id, events, timeout, check):
        job_id = normalize_job_id(job_id)
        if isinstance(events, (text_type, str)):
            events = (events,)
        if not isinstance(events, (tuple, list, set, frozenset)):
            raise ConfigurationError(
                "invalid events %s: pass a tuple of event names such as "
                "('finished', 'failed')" % (quote(events),))
        if check is not None and not callable(check):
            raise ConfigurationError(
                "check %s is not callable: pass a function that takes the "
                "job id and returns an event name or None" % (quote(check),))
        events = tuple(validate_event(event) for event in events)
        if not events:
            raise ConfigurationError(
                "events is empty: pass at least one of %s" % ", ".join(EVENTS))
        if timeout is not None and (not isinstance(timeout, (int, float))
                                    or timeout < 0 or timeout != timeout):
            raise ConfigurationError(
                "invalid timeout %r: use a number of seconds >= 0, or None to "
                "wait for ever" % (timeout,))
        return job_id, events

    def _wait(self, waiter, timeout, check):
        deadline = None if timeout is None else monotonic() + timeout
        first_round = True
        while True:
            wakeup, recheck = self._dispatcher.prepare_wait(waiter)
            if wakeup is None:
                break
            if check is not None and (first_round or recheck):
                self._run_check(waiter, check, raise_errors=first_round)
                first_round = False
                continue
            first_round = False
            if deadline is None:
                wakeup.wait()
                continue
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise WaitTimeout(waiter.job_id, timeout)
            wakeup.wait(remaining)
        if waiter.error is not None:
            raise waiter.error
        return JobEvent(waiter.result, waiter.job_id, waiter.extras)

    def _run_check(self, waiter, check, raise_errors):
        try:
            state = check(waiter.job_id)
        except Exception:
            if raise_errors:
                raise
            log.exception("Notifier %s: check %r for job %s raised after a "
                          "reconnect; it runs again after the next one",
                          self.name, check, waiter.job_id)
            return
        if state is None:
            return
        if state not in waiter.events:
            if state in EVENTS:
                return
            raise ConfigurationError(
                "check %r returned %s for job %s: return one of %s or None"
                % (check, quote(state), waiter.job_id, ", ".join(EVENTS)))
        self._dispatcher.resolve(waiter, text_type(state))

    def start(self, timeout=10.0):
        """Start listening now and block until the listener is subscribed.

        Return the notifier. Raise ``NotifierError`` if the listener is not
        subscribed within ``timeout`` seconds; it keeps retrying in the
        background.
        """
        listener = self._ensure_listener()
        if not listener.wait_connected(timeout):
            raise NotifierError(
                "not subscribed on %s within %s seconds (last error: %s): "
                "check that the server is running and the URL is right"
                % (self.transport.describe(), timeout,
                   listener.stats.last_error))
        return self

    # Lifecycle.

    def _check_fork(self):
        if self._pid == os.getpid():
            return
        # In a forked child only the thread that forked exists. The parent's
        # listener thread and its sockets stay the parent's: forget them
        # without closing them, and start afresh on the next use.
        old_listener = self._listener
        if old_listener is not None:
            old_listener.abandon()
        self.transport.reset_after_fork()
        dispatcher = Dispatcher(self, self.name)
        dispatcher.copy_callbacks_from(self._dispatcher)
        self._dispatcher = dispatcher
        self._lock = threading.Lock()
        self._listener = None
        self._pid = os.getpid()

    def _ensure_listener(self):
        self._check_fork()
        listener = self._listener
        if listener is not None and listener.is_alive():
            return listener
        with self._lock:
            if self._closed:
                raise NotifierClosed("the notifier for %s is closed: create a "
                                     "new one" % self.transport.describe())
            listener = self._listener
            if listener is None or not listener.is_alive():
                listener = Listener(self.transport, self._dispatcher,
                                    self.backoff, self.name)
                listener.start()
                self._listener = listener
        return listener

    def close(self, timeout=1.0):
        """Stop the threads and close the connections.

        Every thread still waiting is woken with ``NotifierClosed``. Closing
        twice is harmless.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener = self._listener
        if self._pid != os.getpid():
            if listener is not None:
                listener.abandon()
            return
        callback_thread = self._dispatcher.close(NotifierClosed(
            "the notifier for %s was closed during the wait"
            % self.transport.describe()))
        deadline = monotonic() + timeout
        if listener is not None and not listener.stop(timeout):
            log.warning("Notifier %s: listener did not stop within %s seconds",
                        self.name, timeout)
        try:
            self.transport.close()
        except Exception:
            log.warning("Notifier %s: error while closing %s", self.name,
                        self.transport.describe(), exc_info=True)
        if (callback_thread is not None
                and callback_thread is not threading.current_thread()):
            callback_thread.join(max(0.0, deadline - monotonic()))
        _live_notifiers.discard(self)

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def health(self):
        """Return a dict describing the listener, for monitoring.

        Keys: ``transport``, ``url`` (without password), ``listening``
        (thread running), ``connected``, ``last_message_age`` (seconds, or
        None), ``last_error``, ``last_error_age``, ``reconnects``,
        ``messages_received``, ``malformed_dropped``, ``callback_errors``,
        ``callback_queue``, ``pending_waiters`` and ``callbacks``.
        """
        self._check_fork()
        now = monotonic()
        listener = self._listener
        stats = listener.stats if listener is not None else None
        dispatcher = self._dispatcher
        last_message = dispatcher.last_message_at

        def age(moment):
            return None if moment is None else now - moment

        return {
            "transport": self.transport.name,
            "url": self.transport.describe(),
            "listening": bool(listener is not None and listener.is_alive()),
            "connected": bool(stats and stats.connected),
            "last_message_age": age(last_message),
            "last_error": stats.last_error if stats else None,
            "last_error_age": age(stats.last_error_at) if stats else None,
            "reconnects": stats.reconnects if stats else 0,
            "messages_received": dispatcher.messages_received,
            "malformed_dropped": stats.malformed_dropped if stats else 0,
            "callback_errors": dispatcher.callback_errors,
            "callback_queue": dispatcher.queue_size(),
            "pending_waiters": dispatcher.waiter_count(),
            "callbacks": dispatcher.callback_count(),
            "closed": self._closed,
        }


class Watch(object):
    """Context manager returned by ``Notifier.watch()``."""

    def __init__(self, notifier, job_id, events, check, subscribe_timeout):
        self._notifier = notifier
        self.job_id = job_id
        self._events = events
        self._check = check
        self._subscribe_timeout = subscribe_timeout
        self._waiter = None
        self._dispatcher = None

    def __enter__(self):
        notifier = self._notifier
        listener = notifier._ensure_listener()
        self._dispatcher = notifier._dispatcher
        self._waiter = self._dispatcher.add_waiter(self.job_id, self._events)
        if not listener.wait_connected(self._subscribe_timeout):
            self._dispatcher.remove_waiter(self._waiter)
            raise NotifierError(
                "not subscribed on %s within %s seconds (last error: %s), so "
                "events of job %s could be missed: check that the server is "
                "running" % (notifier.transport.describe(),
                             self._subscribe_timeout,
                             listener.stats.last_error, self.job_id))
        return self

    def wait(self, timeout=None):
        """Block until the job reaches one of the events; return the event.

        Raise ``WaitTimeout`` after ``timeout`` seconds.
        """
        if self._waiter is None:
            raise NotifierError("Watch.wait() was called outside the with "
                                "block: use 'with notifier.watch(id) as w:'")
        return self._notifier._wait(self._waiter, timeout, self._check)

    def __exit__(self, exc_type, exc_value, traceback):
        if self._waiter is not None:
            self._dispatcher.remove_waiter(self._waiter)
            self._waiter = None


@atexit.register
def _close_at_exit():
    # Closing lets the servers see a clean disconnect and keeps Python 2.7
    # from printing errors of daemon threads torn down at exit.
    for notifier in list(_live_notifiers):
        try:
            notifier.close(timeout=0.5)
        except Exception:
            pass
