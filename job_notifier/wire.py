"""Wire format: one compact UTF-8 JSON array per message.

``[job_id, "event"]`` or ``[job_id, "event", {extras}]``. Perl's
Minion::Notifier sends the two-element form with a numeric id, so receivers
accept a JSON number or a string as the id and return it as text.
"""

from __future__ import absolute_import, unicode_literals

import json
import logging
import threading

from ._compat import binary_type, integer_types, monotonic, quote, text_type
from .exceptions import ConfigurationError, MalformedMessage

log = logging.getLogger(__name__)

EVENTS = ("enqueue", "dequeue", "finished", "failed")
TERMINAL_EVENTS = ("finished", "failed")

# Payloads larger than this are dropped unread. PostgreSQL caps payloads at
# 8000 bytes; Redis and WebSocket have no such cap, so the bound is looser.
MAX_PAYLOAD_BYTES = 1024 * 1024

# Maximum length of a job id, in characters; RQ ids are 36 characters.
MAX_JOB_ID_LENGTH = 1024


class Message(object):
    """One decoded notification: job id as text, event name and extras."""

    __slots__ = ("job_id", "event", "extras")

    def __init__(self, job_id, event, extras=None):
        self.job_id = job_id
        self.event = event
        self.extras = extras if extras is not None else {}

    def __eq__(self, other):
        return (isinstance(other, Message) and self.job_id == other.job_id
                and self.event == other.event and self.extras == other.extras)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "Message(%r, %r, %r)" % (self.job_id, self.event, self.extras)


def normalize_job_id(job_id):
    """Return ``job_id`` as text, or raise ``ConfigurationError``.

    Integers, text and UTF-8 bytes are accepted; ``42``, ``"42"`` and
    ``b"42"`` all become ``"42"``.
    """
    if isinstance(job_id, bool) or job_id is None:
        raise ConfigurationError(
            "invalid job id %s: use a string or an integer" % (quote(job_id),))
    if isinstance(job_id, integer_types):
        try:
            text = text_type(job_id)
        except ValueError:
            # By default Python 3.11 and later raise ValueError when they
            # format an int of over 4300 digits.
            raise ConfigurationError(
                "invalid job id: an integer of over 4300 digits; the maximum "
                "is %d characters" % MAX_JOB_ID_LENGTH)
    elif isinstance(job_id, binary_type):
        try:
            text = job_id.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(
                "invalid job id %r: bytes must be UTF-8; pass text instead"
                % (job_id,))
    elif isinstance(job_id, text_type):
        text = job_id
    else:
        raise ConfigurationError(
            "invalid job id %s of type %s: use a string or an integer"
            % (quote(job_id), type(job_id).__name__))
    if not text:
        raise ConfigurationError("invalid job id '': the id must not be empty")
    if len(text) > MAX_JOB_ID_LENGTH:
        raise ConfigurationError(
            "invalid job id of %d characters: the maximum is %d"
            % (len(text), MAX_JOB_ID_LENGTH))
    return text


def validate_event(event):
    """Return ``event`` as text if it is a known event name, else raise."""
    if isinstance(event, binary_type):
        event = event.decode("utf-8", "replace")
    if event not in EVENTS:
        raise ConfigurationError(
            "unknown event %s: use one of %s" % (quote(event), ", ".join(EVENTS)))
    return text_type(event)


def encode(job_id, event, extras=None):
    """Return the compact JSON text of one message.

    A numeric job id stays a JSON number, as Minion::Notifier sends it;
    every other id is sent as a string.
    """
    event = validate_event(event)
    # Validated in both cases, so an id that receivers drop is never sent.
    wire_id = normalize_job_id(job_id)
    if isinstance(job_id, integer_types) and not isinstance(job_id, bool):
        wire_id = job_id
    message = [wire_id, event]
    if extras is not None and not isinstance(extras, dict):
        raise ConfigurationError(
            "invalid extras %r: pass a dict of JSON values, or None"
            % (extras,))
    if extras:
        message.append(extras)
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False,
                          sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            "extras %r cannot be encoded as JSON (%s): pass only strings, "
            "numbers, booleans, None, lists and dicts" % (extras, exc))


def decode(payload):
    """Decode one payload (bytes or text) into a ``Message``.

    Raise ``MalformedMessage`` with the reason for anything that is not a
    valid message.
    """
    if isinstance(payload, binary_type):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise MalformedMessage("payload of %d bytes exceeds the maximum of "
                                   "%d" % (len(payload), MAX_PAYLOAD_BYTES))
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("payload is not valid UTF-8")
    elif not isinstance(payload, text_type):
        raise MalformedMessage("payload of type %s is not text"
                               % type(payload).__name__)
    elif len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedMessage("payload of %d characters exceeds the maximum "
                               "of %d" % (len(payload), MAX_PAYLOAD_BYTES))
    try:
        data = json.loads(payload)
    except ValueError:
        raise MalformedMessage("payload is not JSON")
    except RuntimeError:
        # Deeply nested arrays exhaust the recursion limit of the decoder
        # (RecursionError on Python 3, RuntimeError on Python 2.7).
        raise MalformedMessage("payload is nested too deeply")
    if not isinstance(data, list) or len(data) not in (2, 3):
        raise MalformedMessage("payload is not a JSON array of 2 or 3 elements")
    raw_id, event = data[0], data[1]
    if isinstance(raw_id, bool) or not isinstance(
            raw_id, integer_types + (text_type, float)):
        raise MalformedMessage("job id is neither a string nor a number")
    if isinstance(raw_id, float):
        if raw_id != raw_id or not raw_id.is_integer():
            raise MalformedMessage("job id %r is not an integer" % (raw_id,))
        raw_id = int(raw_id)
    if not isinstance(event, text_type) or event not in EVENTS:
        raise MalformedMessage("unknown event %s" % (quote(event),))
    extras = data[2] if len(data) == 3 else None
    if extras is not None and not isinstance(extras, dict):
        raise MalformedMessage("third element is not a JSON object")
    job_id = text_type(raw_id)
    if not job_id or len(job_id) > MAX_JOB_ID_LENGTH:
        raise MalformedMessage("job id is empty or longer than %d characters"
                               % MAX_JOB_ID_LENGTH)
    return Message(job_id, text_type(event), extras)


class RateLimitedLog(object):
    """Log a repeated warning at most once per ``interval`` seconds.

    The warnings suppressed in between are counted and reported with the
    next one that is logged.
    """

    def __init__(self, logger, interval=10.0):
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._last = None
        self._suppressed = 0

    def warning(self, message, *args):
        now = monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last = now
        if suppressed:
            message += " (%d similar warnings suppressed)"
            args = args + (suppressed,)
        self._logger.warning(message, *args)


def preview(payload, limit=80):
    """Return a short printable excerpt of a payload for a log line."""
    text = repr(payload[:limit])
    if len(payload) > limit:
        text += "..."
    return text
