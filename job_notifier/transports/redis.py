"""Redis pub/sub transport: SUBSCRIBE to listen, PUBLISH to send.

The listener owns one dedicated connection; sending goes through a separate
redis-py client with its own connection pool. Liveness is checked by sending
PING on the subscribed connection when it has been idle for
``ping_interval`` seconds and closing it if no reply comes within
``ping_timeout`` seconds.
"""

from __future__ import absolute_import, unicode_literals

import logging
import time

from six.moves.urllib.parse import urlsplit

from .._compat import monotonic
from ..exceptions import ConfigurationError, MissingDependencyError, TransportError
from .base import PingSchedule, Subscription, Transport, wait_readable

log = logging.getLogger(__name__)

try:
    import redis as redis_module
except ImportError as _import_error:  # pragma: no cover - depends on the venv
    redis_module = None
    _redis_import_error = _import_error


def _require_redis():
    if redis_module is None:
        raise MissingDependencyError("redis", "redis", _redis_import_error)
    return redis_module


# The listener hands the messages of one receive() to the dispatcher
# together. A cap keeps waiters and close() from waiting behind a flood
# that never pauses; the rest stays buffered for the next receive().
MAX_REPLIES_PER_RECEIVE = 100


def _check_port(url):
    """Raise ``ValueError`` for a port outside 1 to 65535 in ``url``.

    Python 2.7's ``urlsplit()`` returns None for such a port, and redis-py
    3.5 then connects to 6379, the default port.
    """
    host = urlsplit(url).netloc.rpartition("@")[2]
    if "]" in host:
        host = host.rpartition("]")[2]
    port = host.rpartition(":")[2] if ":" in host else ""
    if ":" in host and not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError("port %s is not a number from 1 to 65535" % port)


class LivenessError(Exception):
    """The server did not reply to PING in time."""


class RedisTransport(Transport):
    """Transport for ``redis://``, ``rediss://`` and ``unix://`` URLs."""

    name = "redis"

    def __init__(self, url, channel, ping_interval=10.0, ping_timeout=5.0,
                 connect_timeout=5.0, send_retries=2, redis_options=None):
        super(RedisTransport, self).__init__(url, channel)
        _require_redis()
        for option, value in (("ping_interval", ping_interval),
                              ("ping_timeout", ping_timeout),
                              ("connect_timeout", connect_timeout)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(
                    "invalid %s %r: use a number of seconds greater than 0"
                    % (option, value))
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.connect_timeout = float(connect_timeout)
        self.send_retries = int(send_retries)
        self._redis_options = dict(redis_options or {})
        self._client = None
        try:
            # Parse the URL now, so that a bad URL fails in from_url() and
            # not later in a background thread.
            self._make_client(socket_timeout=self.connect_timeout)
        except ValueError as exc:
            raise ConfigurationError(
                "invalid Redis URL %s (%s): use redis://[:password@]host:port/db,"
                " rediss://... or unix:///path/to/redis.sock" % (self.describe_url(), exc))

    def describe_url(self):
        from ..urls import redact_url
        return redact_url(self.url)

    def _make_client(self, **overrides):
        redis = _require_redis()
        _check_port(self.url)
        options = {}
        if not self.url.lower().startswith("unix:"):
            # redis-py's Unix socket connections reject both options.
            options["socket_connect_timeout"] = self.connect_timeout
            options["socket_keepalive"] = True
        if int(redis.__version__.split(".")[0]) < 4:
            # redis-py 3.5 leaves %XX escapes in the password without it.
            options["decode_components"] = True
        options.update(self._redis_options)
        options.update(overrides)
        return redis.Redis.from_url(self.url, **options)

    def _sender(self):
        client = self._client
        if client is None:
            # The pool checks os.getpid() itself and starts afresh in a
            # forked child, so one client serves the parent and its children.
            client = self._client = self._make_client(
                socket_timeout=self.connect_timeout, health_check_interval=30)
        return client

    def send(self, payload, **options):
        if options:
            raise TypeError("redis:// takes no send options, got %s"
                            % ", ".join(sorted(options)))
        errors = _require_redis().exceptions
        attempt = 0
        while True:
            try:
                return self._sender().publish(self.channel, payload)
            except errors.AuthenticationError as exc:
                raise TransportError(
                    "PUBLISH to %s was rejected: %s; check the password in "
                    "the URL" % (self.describe(), exc))
            except (errors.ConnectionError, errors.TimeoutError) as exc:
                # A pooled connection may be stale after a server restart;
                # the pool replaces it on the next attempt. A retry can
                # deliver a message twice if only the reply was lost.
                attempt += 1
                if attempt > self.send_retries:
                    raise TransportError(
                        "PUBLISH to %s failed after %d attempts: %s; check "
                        "that the Redis server is running"
                        % (self.describe(), attempt, exc))
                log.warning("Transport %s: PUBLISH failed (%s); retrying",
                            self.describe(), exc)
                time.sleep(0.05 * attempt)
            except errors.RedisError as exc:
                # For example WRONGPASS or NOAUTH, which redis-py 3.5 raises
                # as a plain ResponseError: retrying cannot help.
                raise TransportError(
                    "PUBLISH to %s failed: %s; check the URL's password, "
                    "database and the server's ACL" % (self.describe(), exc))

    def open_subscription(self):
        return _RedisSubscription(self)

    def reset_after_fork(self):
        # redis-py's pool discards its connections itself in a new process.
        pass

    def close(self):
        client, self._client = self._client, None
        if client is not None:
            client.connection_pool.disconnect()


class _RedisSubscription(Subscription):
    def __init__(self, transport):
        self._transport = transport
        # socket_timeout bounds a read that started on a readable socket but
        # stalls halfway through a reply.
        client = transport._make_client(
            socket_timeout=max(transport.ping_timeout, transport.connect_timeout))
        self._client = client
        self._pubsub = client.pubsub()
        try:
            self._subscribe()
        except Exception:
            self.close()
            raise
        self._schedule = PingSchedule(transport.ping_interval,
                                      transport.ping_timeout)

    def _subscribe(self):
        self._pubsub.subscribe(self._transport.channel)
        deadline = monotonic() + self._transport.connect_timeout
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise LivenessError(
                    "no SUBSCRIBE confirmation within %.1f seconds"
                    % self._transport.connect_timeout)
            message = self._pubsub.get_message(timeout=remaining)
            if message is not None and message.get("type") == "subscribe":
                return

    def _socket(self):
        connection = self._pubsub.connection
        sock = getattr(connection, "_sock", None) if connection else None
        if sock is None:
            raise _require_redis().exceptions.ConnectionError(
                "the subscribed connection was closed")
        return sock

    def _drain(self, max_replies=MAX_REPLIES_PER_RECEIVE):
        """Return the payloads already received, reading at most ``max_replies``."""
        payloads = []
        replies = 0
        while replies < max_replies:
            message = self._pubsub.get_message(timeout=0)
            if message is None:
                break
            replies += 1
            if message.get("type") == "message":
                payloads.append(message["data"])
        if replies:
            self._schedule.record_activity()
        return payloads

    def receive(self, timeout, wake_fd):
        payloads = self._drain()
        if payloads:
            return payloads
        sock = self._socket()
        # An SSL socket may hold decrypted data that select() cannot see.
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return self._drain()
        wait = min(timeout, self._schedule.seconds_until_action())
        readable = wait_readable([sock, wake_fd], max(wait, 0))
        if sock in readable:
            # One reply is enough to return: the usual wake-up brings one
            # event, and a further get_message() that finds nothing would
            # delay its delivery. The next receive() starts with a drain,
            # so replies that redis-py has buffered are not left behind.
            payloads = self._drain(max_replies=1)
            if not payloads and self._pubsub.connection is None:
                raise _require_redis().exceptions.ConnectionError(
                    "the subscribed connection was closed")
            return payloads
        self._check_liveness()
        return []

    def _check_liveness(self):
        if self._schedule.reply_overdue():
            raise LivenessError(
                "no reply to PING within %.1f seconds"
                % self._transport.ping_timeout)
        if self._schedule.ping_due():
            self._pubsub.ping()
            self._schedule.record_ping()

    def close(self):
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            finally:
                self._client.connection_pool.disconnect()
