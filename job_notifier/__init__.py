"""Tell listeners when a background job is enqueued, started, finished or failed."""

from __future__ import absolute_import, unicode_literals

import logging

from .backoff import Backoff
from .exceptions import (ConfigurationError, MalformedMessage, MessageTooLarge,
                         MissingDependencyError, NotifierClosed, NotifierError,
                         TransportError, WaitTimeout)
from .notifier import DEFAULT_CHANNEL, JobEvent, Notifier, Watch
from .wire import EVENTS, TERMINAL_EVENTS

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "ConfigurationError",
    "DEFAULT_CHANNEL",
    "EVENTS",
    "JobEvent",
    "MalformedMessage",
    "MessageTooLarge",
    "MissingDependencyError",
    "Notifier",
    "NotifierClosed",
    "NotifierError",
    "TERMINAL_EVENTS",
    "TransportError",
    "WaitTimeout",
    "Watch",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
