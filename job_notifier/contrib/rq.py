"""RQ integration: workers and queues that send job events, and a safe wait.

Run a worker that reports every job it runs::

    rq worker -w job_notifier.contrib.rq.NotifyingWorker

and wait for a job in another process::

    from job_notifier.contrib.rq import NotifyingQueue, get_notifier, wait_for_job

    queue = NotifyingQueue(connection=redis_connection)
    job = queue.enqueue(count_words, "https://example.com")
    event = wait_for_job(get_notifier(redis_connection), job, timeout=30)

Workers and queues send through the notifier for ``notifier_url`` (a class
attribute), else ``JOB_NOTIFIER_URL``, else their own Redis server. The
code that differs between RQ versions is in ``_rq_compat``.
"""

from __future__ import absolute_import, unicode_literals

import functools
import logging
import os
import sys
import traceback

from redis.connection import SSLConnection, UnixDomainSocketConnection
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.worker import SimpleWorker, Worker
from six.moves.urllib.parse import quote

from .._compat import binary_type, ensure_text
from ..exceptions import ConfigurationError
from ..notifier import DEFAULT_CHANNEL, URL_ENVIRONMENT_VARIABLE, Notifier
from . import _rq_compat
from ._rq_compat import fetch_return_value

__all__ = [
    "NotifyingQueue",
    "NotifyingSimpleWorker",
    "NotifyingWorker",
    "NotifyingWorkerMixin",
    "fetch_return_value",
    "get_notifier",
    "redis_url_for",
    "wait_for_job",
]

log = logging.getLogger(__name__)

# Maximum size of the failure reason sent in the extras, in UTF-8 bytes. It
# keeps a failed message far below PostgreSQL's 8000-byte NOTIFY limit even
# with a long job id.
MAX_REASON_BYTES = 1000

# Maximum size of the queue and worker names sent in the extras.
MAX_NAME_BYTES = 200

# The event that each stored RQ status ending a wait maps to.
_EVENT_FOR_STATUS = {
    "finished": "finished",
    "failed": "failed",
    "stopped": "failed",
    "canceled": "failed",
}

# Statuses a job has after a failure when RQ will run it again.
_RETRY_STATUSES = ("queued", "scheduled", "deferred")

_shared_notifiers = {}


def get_notifier(connection=None, url=None, channel=DEFAULT_CHANNEL):
    """Return the notifier that this process shares for one server and channel.

    The URL is ``url``, else the ``JOB_NOTIFIER_URL`` environment variable,
    else the Redis server that ``connection`` talks to. Workers, queues and
    callers that ask for the same URL and channel get the same notifier; a
    closed one is replaced by a new one.
    """
    options = {}
    if url is None:
        url = os.environ.get(URL_ENVIRONMENT_VARIABLE) or None
    if url is None:
        if connection is None:
            raise ConfigurationError(
                "no notifier URL: pass url=, set %s, or pass the RQ Redis "
                "connection to send through its server" % URL_ENVIRONMENT_VARIABLE)
        url, options = redis_url_for(connection)
    key = (url, channel, repr(sorted(options.items())))
    notifier = _shared_notifiers.get(key)
    if notifier is None or notifier.closed:
        transport_options = {"redis_options": options} if options else {}
        notifier = Notifier.from_url(url, channel=channel, **transport_options)
        # Two threads may both get here; the notifier of the one that loses
        # stays unused and is closed at exit.
        _shared_notifiers[key] = notifier
    return notifier


def redis_url_for(connection):
    """Return ``(url, redis_options)`` for the server of a redis-py client.

    The URL carries the host and port or the Unix socket path, the database,
    the user name and the password. ``redis_options`` contains the TLS
    settings of a ``rediss://`` connection and the options redis-py needs
    to decode the URL.
    Raise ``ConfigurationError`` for a client without a host or a socket
    path, such as a Sentinel client, or with a credential provider.
    """
    pool = connection.connection_pool
    kwargs = pool.connection_kwargs
    connection_class = pool.connection_class
    if kwargs.get("credential_provider") is not None:
        raise ConfigurationError(
            "cannot build a notifier URL from a Redis client that uses a "
            "credential provider: set %s" % URL_ENVIRONMENT_VARIABLE)
    userinfo = _userinfo(kwargs.get("username"), kwargs.get("password"))
    database = int(kwargs.get("db") or 0)
    options = dict(_rq_compat.REDIS_URL_OPTIONS)

    if issubclass(connection_class, UnixDomainSocketConnection):
        path = _quote(kwargs["path"], safe="/")
        return "unix://%s%s?db=%d" % (userinfo, path, database), options

    host = kwargs.get("host")
    if not host:
        raise ConfigurationError(
            "cannot build a notifier URL from Redis connection class %s, "
            "which has no host: set %s"
            % (connection_class.__name__, URL_ENVIRONMENT_VARIABLE))
    scheme = "redis"
    if issubclass(connection_class, SSLConnection):
        # NOTE: TLS settings are copied but no test runs against a TLS server.
        scheme = "rediss"
        options.update((name, value) for name, value in kwargs.items()
                       if name.startswith("ssl_"))
    host = ensure_text(host)
    if ":" in host:
        host = "[%s]" % host
    port = int(kwargs.get("port") or 6379)
    return ("%s://%s%s:%d/%d" % (scheme, userinfo, host, port, database),
            options)


def _userinfo(username, password):
    if not username and not password:
        return ""
    userinfo = _quote(username or "")
    if password:
        # NOTE: redis-py 3.5 decodes %-escapes as Latin-1 on Python 2, so a
        # password with non-ASCII characters does not work there.
        userinfo += ":" + _quote(password)
    return userinfo + "@"


def _quote(value, safe=""):
    if not isinstance(value, binary_type):
        value = ensure_text(value).encode("utf-8")
    return ensure_text(quote(value, safe=safe))


class _NotifierOwner(object):
    """Base of the worker and queue classes: finds the notifier lazily."""

    #: Notifier URL; None falls back to JOB_NOTIFIER_URL, then to the
    #: Redis server of the RQ connection.
    notifier_url = None

    #: Channel the events are sent on.
    notifier_channel = DEFAULT_CHANNEL

    _notifier = None

    @property
    def notifier(self):
        """The ``Notifier`` that events are sent through."""
        if self._notifier is None:
            self._notifier = get_notifier(self.connection, url=self.notifier_url,
                                          channel=self.notifier_channel)
        return self._notifier

    @notifier.setter
    def notifier(self, notifier):
        self._notifier = notifier


class NotifyingWorkerMixin(_NotifierOwner):
    """Send ``dequeue``, ``finished`` and ``failed`` from an RQ worker.

    Put it before an RQ worker class, as ``NotifyingWorker`` and
    ``NotifyingSimpleWorker`` do. Each event is sent after RQ has saved the
    job's status in Redis: ``dequeue`` when the job has status started,
    ``finished`` when the result is saved, and ``failed`` when the failure
    is saved. That covers an exception, a ``job_timeout``, a work horse that
    died, a stopped job and a job out of retries (the last two not on RQ
    1.3). A failure that RQ retries sends no ``failed``.

    ``failed`` carries the extras ``error`` (exception type and message, at
    most ``MAX_REASON_BYTES`` bytes) and ``status`` (RQ's stored status, or
    ``"deleted"`` if the job is gone). All events carry ``queue`` and
    ``worker``. An ``Exception`` while sending is logged with the job id on
    the worker's logger, and the job and the worker carry on.

    The worker's queue class becomes ``NotifyingQueue`` unless another
    custom queue class was given, so jobs that the worker enqueues, such
    as dependents and retries, send ``enqueue`` too.
    """

    def __init__(self, *args, **kwargs):
        notifier = kwargs.pop("notifier", None)
        super(NotifyingWorkerMixin, self).__init__(*args, **kwargs)
        if notifier is not None:
            self.notifier = notifier
        if self.queue_class is Queue:
            self.queue_class = NotifyingQueue

    def register_birth(self, *args, **kwargs):
        super(NotifyingWorkerMixin, self).register_birth(*args, **kwargs)
        # Resolving the notifier here makes a bad URL stop the worker at
        # start, not at its first job.
        self.log.info("Worker %s: sending job events to %s", self.name,
                      self.notifier.transport.describe())

    def prepare_job_execution(self, job, *args, **kwargs):
        super(NotifyingWorkerMixin, self).prepare_job_execution(
            job, *args, **kwargs)
        self._send(job, "dequeue")

    def handle_job_success(self, job, *args, **kwargs):
        super(NotifyingWorkerMixin, self).handle_job_success(job, *args, **kwargs)
        self._send(job, "finished")

    def handle_job_failure(self, job, *args, **kwargs):
        # Read the exception before RQ's own handling can replace it.
        exc_info = sys.exc_info()
        super(NotifyingWorkerMixin, self).handle_job_failure(job, *args, **kwargs)
        reason = _failure_reason(exc_info, kwargs.get("exc_string") or "")
        self._send_failure(job, reason)

    def handle_job_retry(self, job, *args, **kwargs):
        # Only RQ 2.x calls this, for a job that returned a Retry object.
        # Retries configured at enqueue time go through handle_job_failure().
        super(NotifyingWorkerMixin, self).handle_job_retry(job, *args, **kwargs)
        self._send_failure(job, "the job returned Retry and has no retries left")

    def _send_failure(self, job, reason):
        try:
            status = _stored_status(self.connection, type(job), job.id)
        except Exception:
            self.log.error("Worker %s: cannot read the status of job %s, so "
                           "no failed event was sent", self.name, job.id,
                           exc_info=True)
            return
        if status in _RETRY_STATUSES:
            self.log.debug("Worker %s: job %s will run again (status %s); "
                           "no failed event", self.name, job.id, status)
            return
        if status is not None and _EVENT_FOR_STATUS.get(status) != "failed":
            self.log.error("Worker %s: RQ did not save the failure of job %s "
                           "(stored status %s), so no failed event was sent",
                           self.name, job.id, status)
            return
        extras = {"status": status or "deleted"}
        if reason:
            extras["error"] = reason
        self._send(job, "failed", extras)

    def _send(self, job, event, extras=None):
        message_extras = {
            "queue": _truncate(ensure_text(job.origin or ""), MAX_NAME_BYTES),
            "worker": _truncate(ensure_text(self.name), MAX_NAME_BYTES),
        }
        message_extras.update(extras or {})
        try:
            self.notifier.notify(job.id, event, extras=message_extras)
        except Exception:
            self.log.error("Worker %s: sending %s for job %s failed; the job "
                           "is not affected", self.name, event, job.id,
                           exc_info=True)


class NotifyingWorker(NotifyingWorkerMixin, Worker):
    """RQ's forking ``Worker`` that sends job events.

    ``dequeue``, ``finished`` and the failures of a running job are sent
    from the work horse. The parent process reports a stopped job and a
    horse that was killed by a signal or for running past ``job_timeout``.
    """


class NotifyingSimpleWorker(NotifyingWorkerMixin, SimpleWorker):
    """RQ's ``SimpleWorker``, which runs jobs in its own process, sending job events."""


class NotifyingQueue(_NotifierOwner, Queue):
    """RQ ``Queue`` that sends ``enqueue`` when a job enters the queue.

    The event is sent once the job is saved and pushed: at once, or when
    the caller executes the Redis pipeline it passed. Deferred jobs send it
    when their dependencies are met and a ``NotifyingQueue`` enqueues them.
    Pass ``notifier=`` to use a notifier of your own; an error while sending
    is logged and the job stays enqueued.

    NOTE: jobs from ``enqueue_at()`` and ``enqueue_in()`` send no
    ``enqueue``, because RQ's scheduler moves them into the queue with the
    plain ``Queue`` class. Queues with ``is_async=False`` send nothing.
    """

    def __init__(self, *args, **kwargs):
        notifier = kwargs.pop("notifier", None)
        super(NotifyingQueue, self).__init__(*args, **kwargs)
        if notifier is not None:
            self.notifier = notifier

    if _rq_compat.ENQUEUE_METHOD == "_enqueue_job":
        def _enqueue_job(self, job, pipeline=None, *args, **kwargs):
            job = super(NotifyingQueue, self)._enqueue_job(
                job, pipeline, *args, **kwargs)
            self._schedule_enqueue_event(job, pipeline)
            return job
    else:
        def enqueue_job(self, job, pipeline=None, *args, **kwargs):
            job = super(NotifyingQueue, self).enqueue_job(
                job, pipeline, *args, **kwargs)
            self._schedule_enqueue_event(job, pipeline)
            return job

    def _schedule_enqueue_event(self, job, pipeline):
        if not self.is_async:
            return
        if pipeline is None:
            self._send_enqueue(job)
        else:
            _call_after_execute(pipeline,
                                functools.partial(self._send_enqueue, job))

    def _send_enqueue(self, job):
        extras = {"queue": _truncate(ensure_text(self.name), MAX_NAME_BYTES)}
        try:
            self.notifier.notify(job.id, "enqueue", extras=extras)
        except Exception:
            log.error("Queue %s: sending enqueue for job %s failed; the job "
                      "is enqueued all the same", self.name, job.id,
                      exc_info=True)


def _call_after_execute(pipeline, callback):
    """Run ``callback()`` after ``pipeline.execute()`` next succeeds.

    RQ writes jobs into a pipeline that its caller executes later, and after
    a WATCH conflict the caller writes them again and retries. Only the
    pipeline's own ``execute`` returns right after the write succeeds, so
    this wraps it. A failed execute drops the callbacks, because the retry
    registers them again.
    """
    pending = pipeline.__dict__.get("_job_notifier_callbacks")
    if pending is None:
        pending = []
        execute = pipeline.execute

        def execute_then_call(*args, **kwargs):
            try:
                result = execute(*args, **kwargs)
            except Exception:
                del pending[:]
                raise
            callbacks = list(pending)
            del pending[:]
            for queued_callback in callbacks:
                queued_callback()
            return result

        pipeline._job_notifier_callbacks = pending
        pipeline.execute = execute_then_call
    pending.append(callback)


def wait_for_job(notifier, job, timeout=None, connection=None):
    """Block until an RQ job finishes or fails; return the event name.

    ``job`` is an RQ ``Job``, or a job id together with ``connection``.
    The wait subscribes first, then reads the status that RQ stored, and
    reads it again after every reconnect, so a job that ended before the
    call or while the listener was disconnected returns at once. RQ's
    ``finished`` status gives "finished"; ``failed``, ``stopped`` and
    ``canceled`` give "failed".

    The result is a ``JobEvent``: the event name with ``.extras``, which
    are empty when the stored status ended the wait. Raise ``WaitTimeout``
    after ``timeout`` seconds (None waits for ever) and RQ's
    ``NoSuchJobError`` if the job is not in Redis when the wait starts,
    because it expired or was deleted (a job with ``result_ttl=0`` is
    deleted as soon as it finishes).
    """
    if isinstance(job, Job):
        job_id = job.id
        job_class = type(job)
        if connection is None:
            connection = job.connection
    else:
        if connection is None:
            raise ConfigurationError(
                "wait_for_job() got job id %r without a connection: pass "
                "connection=<the queue's Redis client> or pass the Job" % (job,))
        job_id = ensure_text(job)
        job_class = Job

    def check(checked_id):
        status = _stored_status(connection, job_class, checked_id)
        if status is None:
            raise NoSuchJobError(
                "job %s is not in Redis: it expired or was deleted, so there "
                "is no end to wait for" % checked_id)
        return _EVENT_FOR_STATUS.get(status)

    return notifier.wait_for(job_id, timeout=timeout, check=check)


def _stored_status(connection, job_class, job_id):
    status = connection.hget(job_class.key_for(job_id), "status")
    if status is None:
        return None
    return _text(status)


def _failure_reason(exc_info, exc_string):
    """Return "ExceptionType: message" for a failed job, truncated.

    ``exc_info`` is the exception being handled, if any, and ``exc_string``
    is what RQ saves for the failure. The exception is used only if RQ's
    text names its type, because Python 2 keeps the last handled exception
    around after its ``except`` block has ended. Otherwise the last line of
    RQ's text is used, such as "Work-horse terminated unexpectedly; waitpid
    returned 9".
    """
    exc_type, exc_value = exc_info[0], exc_info[1]
    exc_string = _text(exc_string)
    if exc_type is not None and exc_type.__name__ in exc_string:
        lines = traceback.format_exception_only(exc_type, exc_value)
        reason = _text("".join(lines))
    else:
        lines = [line for line in exc_string.splitlines() if line.strip()]
        reason = lines[-1] if lines else ""
    return _truncate(reason.strip(), MAX_REASON_BYTES)


def _text(value):
    if isinstance(value, binary_type):
        return value.decode("utf-8", "replace")
    return ensure_text(value)


def _truncate(text, max_bytes):
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes - 3].decode("utf-8", "ignore") + "..."
