"""Flask extension: one notifier per app, blocking views and event streams.

::

    from flask import Flask
    from job_notifier.contrib.flask import JobNotifier

    app = Flask(__name__)
    app.config["JOB_NOTIFIER_URL"] = "redis://127.0.0.1:6379/0"
    job_notifier = JobNotifier(app)        # or JobNotifier() + init_app(app)

    @app.route("/jobs/<job_id>/events")
    def job_events(job_id):
        return job_notifier.event_stream(job_id)

Configuration keys, read by ``init_app()``:

``JOB_NOTIFIER_URL``
    Notifier URL; None (the default) reads the ``JOB_NOTIFIER_URL``
    environment variable, then uses ``memory://``.
``JOB_NOTIFIER_CHANNEL``
    Channel name (default ``job_notifier``).
``JOB_NOTIFIER_TRANSPORT_OPTIONS``
    Dict of keyword options for the transport, such as ``ping_interval``.
``JOB_NOTIFIER_WAIT_TIMEOUT``
    Seconds a blocking view waits before it responds with 504 (default 30).
``JOB_NOTIFIER_HEARTBEAT_INTERVAL``
    Seconds between heartbeat comments on an event stream (default 10).
``JOB_NOTIFIER_STREAM_TIMEOUT``
    Seconds after which an event stream ends if its job has not ended
    (default None: no limit).
``JOB_NOTIFIER_SUBSCRIBE_TIMEOUT``
    Seconds a view waits for the listener to subscribe before it responds
    with 503 (default 10).

The notifier is created by ``init_app()`` but listens only from its first
use in a request. So under ``gunicorn --preload`` the master process never
listens and each worker starts its own listener after the fork, and under
the Werkzeug reloader only the serving child listens.
"""

from __future__ import absolute_import, unicode_literals

import json
import logging

from flask import Response, current_app
from werkzeug.exceptions import GatewayTimeout, ServiceUnavailable

from ..exceptions import ConfigurationError, NotifierError, WaitTimeout
from ..notifier import DEFAULT_CHANNEL, Notifier
from ..sse import (DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_SUBSCRIBE_TIMEOUT,
                   HEADERS, MIMETYPE, JobEventStream, validate_seconds)
from ..wire import TERMINAL_EVENTS

__all__ = ["JobNotifier"]

log = logging.getLogger(__name__)

EXTENSION_NAME = "job_notifier"
CONFIG_PREFIX = "JOB_NOTIFIER_"

# Option name, default value and whether None is allowed. The config key is
# CONFIG_PREFIX + the name in upper case.
_SETTINGS = (
    ("url", None, True),
    ("channel", DEFAULT_CHANNEL, False),
    ("transport_options", None, True),
    ("wait_timeout", 30.0, True),
    ("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL, False),
    ("stream_timeout", None, True),
    ("subscribe_timeout", DEFAULT_SUBSCRIBE_TIMEOUT, False),
)

_SECONDS = ("wait_timeout", "heartbeat_interval", "stream_timeout",
            "subscribe_timeout")


class JobNotifier(object):
    """Give a Flask app a ``Notifier`` configured from ``app.config``.

    Keyword ``options`` are defaults for the configuration keys, named
    without the prefix in lower case: ``JobNotifier(app, url="redis://...")``
    sets the default of ``JOB_NOTIFIER_URL``. A value in ``app.config``
    wins. One extension object can serve several apps, each with its own
    notifier, stored in ``app.extensions["job_notifier"]``.
    """

    def __init__(self, app=None, **options):
        names = [name for name, _, _ in _SETTINGS]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigurationError(
                "unknown JobNotifier option %s: use %s"
                % (", ".join(unknown), ", ".join(names)))
        self._defaults = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        """Read the app's configuration and create its notifier.

        Raise ``ConfigurationError`` for an invalid configuration value and
        ``MissingDependencyError`` when the transport's client library is
        not installed, so a mistake shows when the app starts.
        """
        if EXTENSION_NAME in app.extensions:
            raise ConfigurationError(
                "a JobNotifier is already registered on app %r: call "
                "init_app() once per app" % app.name)

        settings = {}
        for name, default, nullable in _SETTINGS:
            key = CONFIG_PREFIX + name.upper()
            app.config.setdefault(key, self._defaults.get(name, default))
            settings[name] = _validate(key, name, app.config[key], nullable)

        try:
            notifier = Notifier.from_url(settings["url"],
                                         channel=settings["channel"],
                                         **settings["transport_options"])
        except ConfigurationError as exc:
            raise ConfigurationError(
                "invalid JOB_NOTIFIER_URL, JOB_NOTIFIER_CHANNEL or "
                "JOB_NOTIFIER_TRANSPORT_OPTIONS of app %r: %s" % (app.name, exc))
        if notifier.transport.name == "memory":
            log.warning("JobNotifier: app %r uses %s, which carries only the "
                        "events sent by this process; set JOB_NOTIFIER_URL to "
                        "receive events from workers", app.name,
                        notifier.transport.describe())
        else:
            log.info("JobNotifier: app %r uses %s", app.name,
                     notifier.transport.describe())
        app.extensions[EXTENSION_NAME] = _State(notifier, settings)

    @staticmethod
    def _state(app=None):
        if app is None:
            app = current_app._get_current_object()
        try:
            return app.extensions[EXTENSION_NAME]
        except KeyError:
            raise ConfigurationError(
                "no JobNotifier is registered on app %r: call "
                "JobNotifier(app) or init_app(app) when creating it" % app.name)

    @property
    def notifier(self):
        """The ``Notifier`` of the current app."""
        return self._state().notifier

    def event_stream(self, job_id, check=None, details=None):
        """Return a ``text/event-stream`` response of ``job_id``'s events.

        ``check(job_id)`` returns the event that the job has already reached
        according to its stored status, or None. ``details(job_id, event)``
        returns a dict of fields to add to an event's data, such as the
        result. ``job_notifier.sse.JobEventStream`` describes the format.

        The subscription is made before this returns, so a job started after
        this call cannot end unseen. Abort with 503 if the listener cannot
        subscribe within ``JOB_NOTIFIER_SUBSCRIBE_TIMEOUT`` seconds.
        """
        state = self._state()
        try:
            stream = JobEventStream(
                state.notifier, job_id, check=check, details=details,
                heartbeat_interval=state.settings["heartbeat_interval"],
                timeout=state.settings["stream_timeout"],
                subscribe_timeout=state.settings["subscribe_timeout"])
        except ConfigurationError:
            # An invalid argument is a bug in the view, not an outage.
            raise
        except NotifierError as exc:
            log.error("JobNotifier: cannot stream events of job %s: %s",
                      job_id, exc)
            raise ServiceUnavailable(
                "Cannot follow job %s right now because the notifier is not "
                "connected. Try again in a few seconds." % job_id)
        response = Response(stream, mimetype=MIMETYPE)
        for name, value in HEADERS:
            response.headers[name] = value
        return response

    def wait_for_or_504(self, job_id, timeout=None, check=None,
                        events=TERMINAL_EVENTS):
        """Block until ``job_id`` reaches one of ``events``; return the event.

        Work as ``Notifier.wait_for()``, with ``timeout`` defaulting to
        ``JOB_NOTIFIER_WAIT_TIMEOUT``, and abort with HTTP 504 Gateway
        Timeout when it passes.
        """
        state = self._state()
        if timeout is None:
            timeout = state.settings["wait_timeout"]
        try:
            return state.notifier.wait_for(job_id, timeout=timeout,
                                           events=events, check=check)
        except WaitTimeout as exc:
            raise _gateway_timeout(exc)


    # RQ jobs. RQ is imported on first use, so apps without it can use the
    # methods above.

    def job_event_stream(self, job, connection=None):
        """Return a ``text/event-stream`` response of an RQ job's events.

        ``job`` is an RQ ``Job``, or a job id together with ``connection``,
        the queue's Redis client. The job need not exist yet: build the
        stream first and enqueue the job with that id afterwards, and no
        event can be missed. Its stored status is read after subscribing
        and after every reconnect. The ``finished`` event's data carries
        the job's return value as ``result`` (its ``repr()`` if it is not
        JSON).
        """
        job_id, job_class, connection = _rq_job_parts(job, connection)

        def check(job_id):
            return _rq_event_for_status(connection, job_class, job_id)

        def details(job_id, event):
            if event != "finished":
                return None
            return {"result": _rq_result(job_class.fetch(job_id,
                                                         connection=connection))}

        return self.event_stream(job_id, check=check, details=details)

    def wait_for_job_or_504(self, job, timeout=None, connection=None):
        """Block until an RQ job finishes or fails; return the event.

        Work as ``job_notifier.contrib.rq.wait_for_job()``, with ``timeout``
        defaulting to ``JOB_NOTIFIER_WAIT_TIMEOUT``, and abort with HTTP 504
        Gateway Timeout when it passes.
        """
        from .rq import wait_for_job

        state = self._state()
        if timeout is None:
            timeout = state.settings["wait_timeout"]
        try:
            return wait_for_job(state.notifier, job, timeout=timeout,
                                connection=connection)
        except WaitTimeout as exc:
            raise _gateway_timeout(exc)


class _State(object):
    """Per-app notifier and settings, in ``app.extensions["job_notifier"]``."""

    def __init__(self, notifier, settings):
        self.notifier = notifier
        self.settings = settings

    def __repr__(self):
        return "<JobNotifier state %r>" % self.notifier


def _gateway_timeout(exc):
    return GatewayTimeout(
        "Job %s did not finish within %s seconds. It may still be queued or "
        "running; ask for its result again later." % (exc.job_id, exc.timeout))


# The event that each stored RQ status shows a job has reached. "deferred",
# "scheduled" and RQ 2.x's "created" are before the job enters its queue.
_RQ_EVENT_FOR_STATUS = {
    "queued": "enqueue",
    "started": "dequeue",
    "finished": "finished",
    "failed": "failed",
    "stopped": "failed",
    "canceled": "failed",
}


def _rq_job_parts(job, connection):
    from rq.job import Job

    if isinstance(job, Job):
        return job.id, type(job), connection or job.connection
    if connection is None:
        raise ConfigurationError(
            "job id %r was passed without a connection: pass "
            "connection=<the queue's Redis client> or pass the Job" % (job,))
    return job, Job, connection


def _rq_event_for_status(connection, job_class, job_id):
    from .rq import _stored_status

    return _RQ_EVENT_FOR_STATUS.get(
        _stored_status(connection, job_class, job_id))


def _rq_result(job):
    from .rq import fetch_return_value

    result = fetch_return_value(job)
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return repr(result)
    return result


def _validate(key, name, value, nullable):
    if value is None:
        if nullable:
            return {} if name == "transport_options" else None
        raise ConfigurationError("%s is None: set it or remove it to use the "
                                 "default" % key)
    if name in _SECONDS:
        validate_seconds(key, value)
    elif name == "transport_options":
        if not isinstance(value, dict):
            raise ConfigurationError(
                "invalid %s %r: set it to a dict of keyword options for the "
                "transport" % (key, value))
        return dict(value)
    return value
