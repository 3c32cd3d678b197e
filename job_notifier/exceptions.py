"""Exceptions raised by job_notifier; all derive from ``NotifierError``."""

from __future__ import absolute_import, unicode_literals

from ._compat import BuiltinTimeoutError


class NotifierError(Exception):
    """Base class of every error that job_notifier raises."""


class ConfigurationError(NotifierError, ValueError):
    """An invalid URL, option, channel name or event name."""


class MissingDependencyError(NotifierError, ImportError):
    """The client library of a transport is not installed."""

    def __init__(self, package, extra, cause=None):
        message = ("the %s package is required for this transport but is not "
                   "installed: run pip install 'job_notifier[%s]'"
                   % (package, extra))
        if cause is not None:
            message += " (import failed: %s)" % (cause,)
        super(MissingDependencyError, self).__init__(message)
        self.package = package
        self.extra = extra


class WaitTimeout(NotifierError, BuiltinTimeoutError):
    """``wait_for()`` or ``Watch.wait()`` timed out before the job ended.

    On Python 3 this is also a built-in ``TimeoutError``.
    """

    def __init__(self, job_id, timeout):
        super(WaitTimeout, self).__init__(
            "job %s did not finish or fail within %s seconds" % (job_id, timeout))
        self.job_id = job_id
        self.timeout = timeout


class NotifierClosed(NotifierError):
    """The notifier was closed, or its listener stopped, during a wait."""


class MessageTooLarge(NotifierError, ValueError):
    """A notification does not fit in the transport's payload limit."""


class MalformedMessage(NotifierError, ValueError):
    """A payload on the channel is not a valid ``[id, event, extras]`` array."""


class TransportError(NotifierError):
    """The transport failed to send a notification to its server."""
