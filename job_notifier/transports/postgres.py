"""PostgreSQL transport: LISTEN to listen, ``pg_notify()`` to send.

Both connections are psycopg2 connections in asynchronous mode. Such a
connection is always in autocommit mode, so the listening connection is
never left idle in a transaction. The transport waits for the server
(connecting, LISTEN, a keepalive query, a notification sent on its own
connection) under a deadline of its own. NOTE: libpq resolves host names
before the first poll, without that deadline.

The listener owns one dedicated connection. It waits in ``select()`` on
that socket and the listener's wake-up pipe, calls ``poll()`` when the
socket is readable and then takes every queued notification. When the
connection has been idle for ``ping_interval`` seconds it sends
``SELECT 1`` and closes the connection if no reply comes within
``ping_timeout`` seconds.

Sending goes through one persistent connection per process, guarded by a
lock, or through a cursor that the caller passes so that the notification
is part of the caller's transaction.
"""

from __future__ import absolute_import, unicode_literals

import errno
import logging
import os
import select
import threading

from .._compat import binary_type, ensure_text, monotonic
from ..exceptions import (ConfigurationError, MessageTooLarge,
                          MissingDependencyError, TransportError)
from .base import PingSchedule, Subscription, Transport, wait_readable

log = logging.getLogger(__name__)

try:
    import psycopg2
    import psycopg2.extensions
    import psycopg2.sql
except ImportError as _import_error:  # pragma: no cover - depends on the venv
    psycopg2 = None
    _psycopg2_import_error = _import_error

#: Maximum NOTIFY payload in bytes. A server built with the default block
#: size rejects 8000 bytes or more (NOTIFY_PAYLOAD_MAX_LENGTH in
#: src/backend/commands/async.c; checked on PostgreSQL 15). The server
#: counts bytes in the database encoding and the transport counts UTF-8
#: bytes, which is the same count or a larger one for common encodings.
MAX_PAYLOAD_BYTES = 7999

#: Maximum identifier length in bytes with the default NAMEDATALEN of 64.
#: LISTEN truncates a longer name and pg_notify() rejects it, so the two
#: would never match.
MAX_CHANNEL_BYTES = 63

NOTIFY_QUERY = "SELECT pg_notify(%s, %s)"
KEEPALIVE_QUERY = "SELECT 1"


def _require_psycopg2():
    if psycopg2 is None:
        raise MissingDependencyError("psycopg2-binary", "postgres",
                                     _psycopg2_import_error)
    return psycopg2


class ServerTimeout(Exception):
    """The server did not reply within a deadline."""


def validate_channel(channel):
    """Return ``channel`` as text if PostgreSQL can LISTEN on it, else raise.

    A channel is an identifier: 1 to 63 bytes of UTF-8 with no NUL
    character. LISTEN quotes it, so upper case letters and punctuation are
    kept as they are.
    """
    try:
        text = ensure_text(channel)
    except UnicodeDecodeError:
        text = None
    if (not text or "\x00" in text
            or len(text.encode("utf-8")) > MAX_CHANNEL_BYTES):
        raise ConfigurationError(
            "invalid PostgreSQL channel %r: use a name of 1 to %d bytes of "
            "UTF-8 without NUL characters, such as 'job_notifier'"
            % (channel, MAX_CHANNEL_BYTES))
    return text


def _wait_writable(fd, timeout):
    try:
        _, writable, _ = select.select([], [fd], [], timeout)
    except (OSError, select.error) as exc:
        if exc.args and exc.args[0] == errno.EINTR:
            return False
        raise
    return bool(writable)


def _poll_until_done(connection, deadline, activity):
    """Drive ``connection`` until its connect or query completes.

    Raise ``ServerTimeout`` naming ``activity`` when ``deadline`` (a
    ``monotonic()`` time) passes first.
    """
    extensions = psycopg2.extensions
    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise ServerTimeout("%s timed out" % activity)
        # libpq may switch to another socket while it tries the addresses
        # of a host, so the descriptor is read again on every round.
        if state == extensions.POLL_READ:
            wait_readable([connection.fileno()], remaining)
        elif state == extensions.POLL_WRITE:
            _wait_writable(connection.fileno(), remaining)
        else:
            raise psycopg2.OperationalError(
                "unexpected poll() state %r while %s" % (state, activity))


def _run_query(connection, cursor, query, parameters, deadline, activity):
    cursor.execute(query, parameters)
    _poll_until_done(connection, deadline, activity)


def _positive_seconds(option, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not value > 0:
        raise ConfigurationError(
            "invalid %s %r: use a number of seconds greater than 0"
            % (option, value))
    return float(value)


class PostgresTransport(Transport):
    """Transport for ``postgresql://`` and ``postgres://`` URLs.

    The URL is a libpq connection URI; its query parameters, such as
    ``sslmode`` or ``host`` for a Unix socket directory, reach libpq as
    they are. Options:

    - ``ping_interval``: seconds of silence on the listening connection
      before a keepalive query is sent (default 10).
    - ``ping_timeout``: seconds to wait for the keepalive reply before the
      connection is replaced (default 5).
    - ``connect_timeout``: seconds to wait for a connection (default: the
      URL's ``connect_timeout``, else 5).
    - ``send_timeout``: seconds to wait for the server to confirm a
      notification sent on the transport's own connection (default 5).
    """

    name = "postgres"
    max_payload_bytes = MAX_PAYLOAD_BYTES

    def __init__(self, url, channel, ping_interval=10.0, ping_timeout=5.0,
                 connect_timeout=None, send_timeout=5.0):
        super(PostgresTransport, self).__init__(url, validate_channel(channel))
        _require_psycopg2()
        try:
            # Parse the URL now, so that a bad URL fails in from_url() and
            # not later in a background thread.
            self._url_parameters = psycopg2.extensions.parse_dsn(url)
        except psycopg2.ProgrammingError as exc:
            raise ConfigurationError(
                "invalid PostgreSQL URL %s (%s): use postgresql://[user"
                "[:password]@][host][:port][/dbname][?param=value&...]"
                % (self.describe_url(), exc))
        if connect_timeout is None:
            connect_timeout = self._url_connect_timeout()
        self.ping_interval = _positive_seconds("ping_interval", ping_interval)
        self.ping_timeout = _positive_seconds("ping_timeout", ping_timeout)
        self.connect_timeout = _positive_seconds("connect_timeout",
                                                 connect_timeout)
        self.send_timeout = _positive_seconds("send_timeout", send_timeout)
        self._sender = None
        self._sender_cursor = None
        self._sender_pid = os.getpid()
        self._send_lock = threading.Lock()

    def describe_url(self):
        from ..urls import redact_url
        return redact_url(self.url)

    def _url_connect_timeout(self):
        value = self._url_parameters.get("connect_timeout")
        if value is None:
            return 5.0
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0
        if seconds <= 0:
            # libpq reads 0 or less as "wait for ever"; a listener that
            # hangs for ever on a dead server never reconnects.
            raise ConfigurationError(
                "invalid connect_timeout=%s in %s: use a number of seconds "
                "greater than 0" % (value, self.describe_url()))
        return seconds

    def connection_parameters(self, role):
        """Return the libpq parameters added to the URL for ``role``.

        ``role`` is ``"listener"`` or ``"sender"``. The URL's own values
        win, except for ``client_encoding``: the wire format is UTF-8.
        """
        defaults = {
            "application_name": "job_notifier %s" % role,
            # TCP keepalives find a dead peer that is silent, such as a host
            # that lost power, even on the idle sending connection. libpq
            # ignores them on Unix sockets.
            "keepalives": 1,
            "keepalives_idle": max(1, int(self.ping_interval)),
            "keepalives_interval": max(1, int(self.ping_timeout)),
            "keepalives_count": 3,
        }
        parameters = dict((key, value) for key, value in defaults.items()
                          if key not in self._url_parameters)
        parameters["client_encoding"] = "UTF8"
        return parameters

    def connect(self, role, deadline):
        """Open an asynchronous connection; raise if ``deadline`` passes."""
        connection = _require_psycopg2().connect(
            self.url, async_=True, **self.connection_parameters(role))
        try:
            _poll_until_done(connection, deadline, "connecting to %s"
                             % self.describe_url())
        except BaseException:
            connection.close()
            raise
        return connection

    # Sending.

    def send(self, payload, cursor=None, **options):
        """Send ``payload`` with ``SELECT pg_notify(channel, payload)``.

        With ``cursor``, a DB-API cursor of the caller's connection, the
        notification becomes part of the caller's transaction: PostgreSQL
        delivers it when that transaction commits and drops it on rollback.
        Errors of that cursor are the driver's own exceptions, because they
        belong to the caller's transaction. Without ``cursor``, the
        transport's own connection sends it at once and errors raise
        ``TransportError``.
        """
        if options:
            raise TypeError("postgresql:// takes only the cursor send "
                            "option, got %s" % ", ".join(sorted(options)))
        payload = self._check_payload(payload)
        if cursor is not None:
            if not callable(getattr(cursor, "execute", None)):
                raise ConfigurationError(
                    "invalid cursor %r: pass a DB-API cursor of the "
                    "connection whose transaction should send the "
                    "notification" % (cursor,))
            cursor.execute(NOTIFY_QUERY, (self.channel, payload))
            return
        self._send_own(payload)

    def _check_payload(self, payload):
        if isinstance(payload, binary_type):
            try:
                payload = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigurationError(
                    "payload %r is not valid UTF-8: PostgreSQL notifications "
                    "carry text only" % (payload[:40],))
        size = len(payload.encode("utf-8"))
        if size > MAX_PAYLOAD_BYTES:
            raise MessageTooLarge(
                "payload of %d bytes is over the PostgreSQL NOTIFY limit of "
                "%d bytes: send less data with the event" % (
                    size, MAX_PAYLOAD_BYTES))
        return payload

    def _send_own(self, payload):
        errors = _require_psycopg2()
        self._forget_inherited_sender()
        with self._send_lock:
            attempt = 0
            while True:
                attempt += 1
                reused = self._sender is not None
                try:
                    self._notify_on_sender(payload)
                    return
                except ServerTimeout as exc:
                    # The server may have received the notification, so it
                    # is not sent again.
                    self._discard_sender()
                    raise TransportError(
                        "pg_notify on %s failed: %s; the notification may "
                        "or may not have been delivered; check that the "
                        "PostgreSQL server is responsive"
                        % (self.describe(), exc))
                except (errors.OperationalError, errors.InterfaceError) as exc:
                    self._discard_sender()
                    # A connection that worked before may be stale after a
                    # server restart; one new connection is tried. A retry
                    # can deliver a notification twice if only the reply
                    # was lost.
                    if not reused or attempt > 1:
                        # libpq ends its messages with a newline.
                        raise TransportError(
                            "pg_notify on %s failed after %d attempts: %s; "
                            "check that the PostgreSQL server is running "
                            "and the URL's database, user and password"
                            % (self.describe(), attempt,
                               ("%s" % exc).strip()))
                    log.warning("Transport %s: pg_notify failed on a reused "
                                "connection (%s); retrying on a new one",
                                self.describe(), exc)
                except errors.Error as exc:
                    raise TransportError("pg_notify on %s failed: %s"
                                         % (self.describe(), exc))

    def _notify_on_sender(self, payload):
        if self._sender is None:
            deadline = monotonic() + self.connect_timeout
            self._sender = self.connect("sender", deadline)
            self._sender_cursor = self._sender.cursor()
        deadline = monotonic() + self.send_timeout
        _run_query(self._sender, self._sender_cursor, NOTIFY_QUERY,
                   (self.channel, payload), deadline, "pg_notify")

    def _discard_sender(self):
        connection, self._sender = self._sender, None
        self._sender_cursor = None
        if connection is not None and not connection.closed:
            try:
                connection.close()
            except psycopg2.Error:
                log.debug("Transport %s: error while closing the sending "
                          "connection", self.describe(), exc_info=True)

    def _forget_inherited_sender(self):
        if self._sender_pid != os.getpid():
            self.reset_after_fork()

    def reset_after_fork(self):
        # close() would end the parent's session, because libpq sends the
        # server a Terminate message. Dropping the reference is safe,
        # because psycopg2 closes a connection on garbage collection only
        # in the process that opened it (checked with psycopg2 2.8.6 and
        # 2.9). The lock may have been held by a thread that the child
        # does not have, so it is replaced too.
        self._sender = None
        self._sender_cursor = None
        self._send_lock = threading.Lock()
        self._sender_pid = os.getpid()

    def close(self):
        self._forget_inherited_sender()
        with self._send_lock:
            self._discard_sender()

    # Listening.

    def open_subscription(self):
        return _PostgresSubscription(self)


class _PostgresSubscription(Subscription):
    def __init__(self, transport):
        self._transport = transport
        self._connection = None
        self._want_write = False
        deadline = monotonic() + transport.connect_timeout
        try:
            self._connection = transport.connect("listener", deadline)
            self._cursor = self._connection.cursor()
            # A native str: on Python 2.7 a unicode SQL string cannot be
            # joined with the UTF-8 bytes of a non-ASCII identifier.
            listen = psycopg2.sql.SQL(str("LISTEN {}")).format(
                psycopg2.sql.Identifier(transport.channel))
            _run_query(self._connection, self._cursor, listen, None, deadline,
                       "LISTEN")
        except BaseException:
            self.close()
            raise
        self._schedule = PingSchedule(transport.ping_interval,
                                      transport.ping_timeout)

    def _take_notifications(self):
        # The connection listens on one channel only, so every
        # notification is ours.
        notifications = self._connection.notifies
        if not notifications:
            return []
        payloads = [notification.payload for notification in notifications]
        del notifications[:]
        return payloads

    def receive(self, timeout, wake_fd):
        payloads = self._take_notifications()
        if payloads:
            return payloads
        fd = self._connection.fileno()
        wait = max(0, min(timeout, self._schedule.seconds_until_action()))
        write_fds = [fd] if self._want_write else []
        try:
            readable, writable, _ = select.select([fd, wake_fd], write_fds,
                                                  [], wait)
        except (OSError, select.error) as exc:
            if exc.args and exc.args[0] == errno.EINTR:
                return []
            raise
        if fd in readable or fd in writable:
            # While the keepalive query runs, only its reply counts: the
            # query must complete before the next one can be sent.
            if fd in readable and self._schedule.ping_sent_at is None:
                self._schedule.record_activity()
            self._poll()
            return self._take_notifications()
        self._check_liveness()
        return []

    def _poll(self):
        extensions = psycopg2.extensions
        connection = self._connection
        state = connection.poll()
        if (state == extensions.POLL_OK
                and self._schedule.ping_sent_at is not None):
            self._schedule.record_activity()
            # libpq may have read notifications together with the
            # keepalive reply without parsing them. They are no longer in
            # the socket, so select() would not report them; a second
            # poll() parses them.
            state = connection.poll()
        self._want_write = state == extensions.POLL_WRITE
        if connection.closed:
            raise psycopg2.OperationalError("the listening connection was "
                                            "closed")

    def _check_liveness(self):
        if self._schedule.reply_overdue():
            raise ServerTimeout(
                "no reply to the keepalive query within %.1f seconds"
                % self._schedule.timeout)
        if self._schedule.ping_due():
            self._cursor.execute(KEEPALIVE_QUERY)
            self._schedule.record_ping()
            self._poll()

    def close(self):
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection.close()
