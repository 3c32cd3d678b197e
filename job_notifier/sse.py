"""Server-Sent Events: stream one job's events to a browser.

``JobEventStream`` is a WSGI response body; any framework can return it with
the ``text/event-stream`` content type and the ``HEADERS`` below. The Flask
extension wraps it in a ``Response``. A browser reads it with
``EventSource``::

    event: dequeue
    data: {"event":"dequeue","extras":{},"job_id":"42","replayed":false}

    : heartbeat

    event: finished
    data: {"event":"finished","extras":{},"job_id":"42","replayed":false}

The stream ends after ``finished`` or ``failed``. ``EventSource`` reconnects
to a stream that ended, so the page should call ``close()`` on it then.
"""

from __future__ import absolute_import, unicode_literals

import collections
import json
import logging
import threading

from ._compat import Wakeup, integer_types, monotonic
from .exceptions import ConfigurationError
from .wire import TERMINAL_EVENTS, normalize_job_id

log = logging.getLogger(__name__)

MIMETYPE = "text/event-stream"

# Headers that keep browsers and proxies such as nginx from caching or
# buffering the stream.
HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))

DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_SUBSCRIBE_TIMEOUT = 10.0

# Position of each event in a job's life. An event that the stored status
# already reported is dropped when its notification arrives afterwards.
_POSITION = {"enqueue": 0, "dequeue": 1, "finished": 2, "failed": 2}


def format_event(event, data):
    """Return one SSE message: an ``event:`` line and a ``data:`` line of JSON.

    ``json.dumps`` escapes newlines, so the data always fits on one line.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "event: %s\ndata: %s\n\n" % (event, text)


def format_comment(text):
    """Return an SSE comment, which ``EventSource`` ignores."""
    return ": %s\n\n" % text


class JobEventStream(object):
    """The ``text/event-stream`` body that carries one job's events.

    The constructor subscribes to ``job:<job_id>`` and blocks until the
    listener is subscribed, then runs ``check(job_id)``. ``check`` has the
    contract of ``Notifier.wait_for``'s: it returns the event that the job
    has already reached according to the queue's stored status, or None.
    Together this makes the stream race-free: an event sent after the
    subscription arrives as a notification, and a state reached before it
    is reported from the stored status (with ``"replayed": true``). So build
    the stream in the view, and start the job only after that if you can.

    Each job event becomes one SSE event named after it, whose data is a
    JSON object with ``job_id``, ``event``, ``extras`` (sent with the
    notification), ``replayed`` and whatever ``details(job_id, event)``
    returns, such as the job's result. A comment is sent as a heartbeat
    every ``heartbeat_interval`` seconds, so a proxy keeps the connection
    open and the server finds out that a client went away. After
    ``timeout`` seconds (None: no limit) the stream sends a ``timeout``
    event and ends.

    The WSGI server calls ``close()`` when the stream ends or the client
    disconnects. It removes the subscription, so the notifier's callbacks
    are back as they were before the stream began.

    Raise ``NotifierError`` if the listener does not subscribe within
    ``subscribe_timeout`` seconds; the subscription is removed first.
    """

    def __init__(self, notifier, job_id, check=None, details=None,
                 heartbeat_interval=DEFAULT_HEARTBEAT_INTERVAL, timeout=None,
                 subscribe_timeout=DEFAULT_SUBSCRIBE_TIMEOUT):
        validate_seconds("heartbeat_interval", heartbeat_interval)
        validate_seconds("subscribe_timeout", subscribe_timeout)
        if timeout is not None:
            validate_seconds("timeout", timeout)
        self.notifier = notifier
        self.job_id = normalize_job_id(job_id)
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self._check = check
        self._details = details
        self._buffer = _EventBuffer()
        self._subscription = "job:%s" % self.job_id
        self._close_lock = threading.Lock()
        self._closed = False
        self._iterated = False
        self._last_position = None
        self._replayed_position = None

        notifier.on(self._subscription, self._on_event, with_extras=True)
        try:
            notifier.start(subscribe_timeout)
            self._reconnects = notifier.health()["reconnects"]
            self._initial_state = self._run_check()
        except BaseException:
            self.close()
            raise

    def _on_event(self, notifier, job_id, event, extras=None):
        # Runs on the notifier's callback thread.
        self._buffer.put((event, extras or {}))

    def __iter__(self):
        if self._iterated:
            raise RuntimeError("the event stream of job %s was already "
                               "iterated: build a new JobEventStream for each "
                               "response" % self.job_id)
        self._iterated = True
        return self._generate()

    def _generate(self):
        try:
            for chunk in self._stream():
                yield chunk
        finally:
            # Runs on GeneratorExit too, when the server closes the
            # generator of a client that went away.
            self.close()

    def _stream(self):
        yield format_comment("subscribed to job %s" % self.job_id)
        if self._initial_state is not None:
            yield self._replay(self._initial_state)
            if self._initial_state in TERMINAL_EVENTS:
                return

        started = monotonic()
        deadline = None if self.timeout is None else started + self.timeout
        heartbeat_at = started + self.heartbeat_interval
        while True:
            now = monotonic()
            if deadline is not None and now >= deadline:
                log.info("Event stream of job %s: no final event within %s "
                         "seconds; closing it", self.job_id, self.timeout)
                yield format_event("timeout", {"job_id": self.job_id,
                                               "timeout": self.timeout})
                return
            wait = heartbeat_at - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            item = self._buffer.get(max(0.0, wait))

            if item is not None:
                event, extras = item
                chunk = self._live(event, extras)
                if chunk is None:
                    continue
                yield chunk
                if event in TERMINAL_EVENTS:
                    return
                heartbeat_at = monotonic() + self.heartbeat_interval
                continue

            if monotonic() < heartbeat_at:
                continue
            if self.notifier.closed:
                log.info("Event stream of job %s: the notifier was closed; "
                         "closing the stream", self.job_id)
                return
            state = self._recheck_after_reconnect()
            if state is not None and self._is_ahead(state):
                yield self._replay(state)
                if state in TERMINAL_EVENTS:
                    return
            else:
                yield format_comment("heartbeat")
            heartbeat_at = monotonic() + self.heartbeat_interval

    def _live(self, event, extras):
        """Return the SSE text of a notification, or None for a duplicate."""
        position = _POSITION[event]
        if (self._replayed_position is not None
                and position <= self._replayed_position):
            # The stored status reported this state before the notification
            # that was already on its way arrived.
            # NOTE: this also drops a second "enqueue" or "dequeue" of a job
            # that is retried right after a replay; the final event still
            # arrives.
            return None
        self._replayed_position = None
        self._last_position = position
        return self._message(event, extras, replayed=False)

    def _replay(self, state):
        position = _POSITION[state]
        self._replayed_position = position
        self._last_position = position
        return self._message(state, {}, replayed=True)

    def _is_ahead(self, state):
        return (self._last_position is None
                or _POSITION[state] > self._last_position)

    def _message(self, event, extras, replayed):
        data = {}
        if self._details is not None:
            try:
                data.update(self._details(self.job_id, event) or {})
            except Exception:
                log.exception("Event stream of job %s: details hook %r "
                              "raised for event %s; sending the event "
                              "without details", self.job_id, self._details,
                              event)
        # The keys set here win over the details hook's.
        data["job_id"] = self.job_id
        data["event"] = event
        data["extras"] = extras
        data["replayed"] = replayed
        return format_event(event, data)

    def _run_check(self):
        if self._check is None:
            return None
        state = self._check(self.job_id)
        if state is not None and state not in _POSITION:
            raise ConfigurationError(
                "check %r returned %r for job %s: return one of %s or None"
                % (self._check, state, self.job_id,
                   ", ".join(sorted(_POSITION))))
        return state

    def _recheck_after_reconnect(self):
        # Notifications sent while the listener was reconnecting are lost,
        # so the stored status is read again once it has subscribed again.
        if self._check is None:
            return None
        reconnects = self.notifier.health()["reconnects"]
        if reconnects == self._reconnects:
            return None
        self._reconnects = reconnects
        try:
            return self._run_check()
        except Exception:
            log.exception("Event stream of job %s: check %r raised after a "
                          "reconnect; it runs again after the next one",
                          self.job_id, self._check)
            return None

    def close(self):
        """Remove the subscription; calling it again does nothing."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.notifier.unsubscribe(self._subscription, self._on_event)

    @property
    def closed(self):
        return self._closed


class _EventBuffer(object):
    """Queue from the callback thread to the streaming thread.

    ``queue.Queue.get(timeout=...)`` polls with sleeps of up to 50 ms on
    Python 2.7; a ``Wakeup`` per wait delivers an event without that delay.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._items = collections.deque()
        self._wakeup = None

    def put(self, item):
        with self._lock:
            self._items.append(item)
            wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    def get(self, timeout):
        """Return the next item, or None if none arrives within ``timeout``."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            wakeup = self._wakeup = Wakeup()
        wakeup.wait(timeout)
        with self._lock:
            self._wakeup = None
            if self._items:
                return self._items.popleft()
        return None


def validate_seconds(name, value):
    """Raise ``ConfigurationError`` unless ``value`` is a finite number > 0."""
    if (isinstance(value, bool)
            or not isinstance(value, integer_types + (float,))
            or not 0 < value < float("inf")):
        raise ConfigurationError(
            "invalid %s %r: use a finite number of seconds > 0"
            % (name, value))
