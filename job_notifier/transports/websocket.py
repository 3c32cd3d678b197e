"""WebSocket transport for a Mercury-style bus: ``ws://host:port/bus/<topic>``.

A bus sends every text message that a peer sends on ``/bus/<topic>`` to
every other peer on that topic, and back to the sender too when the URL has
``?echo=1``. ``job-notifier broker`` is such a bus, and so is Perl's Mercury.

Each process keeps two persistent connections to the bus: the listener
thread owns one and reads every frame from it, and ``send()`` uses the other
under a lock. Because the listening connection is a different peer from the
sending one, the bus delivers a process's own notifications to its listener
exactly once, with or without ``?echo=1``. With ``?echo=1`` the sending
connection also gets its own message back, and ``send()`` discards
everything that arrives on that connection.

The bus gives no reply to a text frame, so ``send()`` follows each message
with a ping and waits for the pong: the bus reads frames in order, so the
pong shows that it received the message.
"""

from __future__ import absolute_import, unicode_literals

import itertools
import logging
import os
import socket
import ssl
import struct
import threading
import time

from six.moves.urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from .._compat import binary_type, ensure_text, monotonic, string_types
from ..exceptions import ConfigurationError, MissingDependencyError, TransportError
from ..notifier import DEFAULT_CHANNEL
from ..urls import redact_url
from .base import PingSchedule, Subscription, Transport, wait_readable

log = logging.getLogger(__name__)

try:
    import websocket as websocket_module
except ImportError as _import_error:  # pragma: no cover - depends on the venv
    websocket_module = None
    _websocket_import_error = _import_error

# The default maximum message size of ``job-notifier broker``; a bus drops
# or rejects larger messages, so notify() refuses them up front.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024

# The path that a URL without one gets, before the channel is appended.
DEFAULT_BUS_PATH = "/bus/"

# Query parameters that are safe to show in a log line; the values of all
# others (such as ?token=) are replaced by ***.
_VISIBLE_QUERY_PARAMETERS = ("echo",)

# How long closing a connection may spend sending the close frame.
CLOSE_TIMEOUT = 0.5

# The listener returns to its loop after this many frames in a row, so
# that close() is not held up by a busy bus.
MAX_FRAMES_PER_RECEIVE = 100


def _require_websocket():
    if websocket_module is None:
        raise MissingDependencyError("websocket-client", "websocket",
                                     _websocket_import_error)
    if not hasattr(websocket_module, "create_connection"):
        # Another distribution on PyPI also installs a "websocket" module.
        raise MissingDependencyError(
            "websocket-client", "websocket",
            "the installed 'websocket' module is not websocket-client")
    return websocket_module


class LivenessError(Exception):
    """The bus sent no pong in time."""


class BusClosedConnection(Exception):
    """The bus sent a close frame."""


class HandshakeRejected(TransportError):
    """The bus rejected the WebSocket handshake with an HTTP error status."""


def redact_query(url):
    """Return ``url`` without its password and with query values hidden.

    Only the values of the parameters in ``_VISIBLE_QUERY_PARAMETERS`` stay,
    so a ``?token=`` never reaches a log line.
    """
    url = redact_url(url)
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _VISIBLE_QUERY_PARAMETERS:
            value = "***"
        pairs.append("%s=%s" % (name, value))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(pairs),
                       parts.fragment))


def _without_query_parameter(url, name):
    # The other parameters keep their exact bytes: decoding and encoding
    # them again could change a token.
    parts = urlsplit(url)
    kept = [item for item in parts.query.split("&")
            if item and item.split("=", 1)[0] != name]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept),
                       parts.fragment))


def _has_buffered_data(sock):
    # An SSL socket may hold decrypted bytes that select() cannot see.
    pending = getattr(sock, "pending", None)
    return pending is not None and pending() > 0


def _close_code(frame):
    data = frame.data or b""
    if len(data) < 2:
        return None
    return struct.unpack("!H", data[:2])[0]


class WebSocketTransport(Transport):
    """Transport for ``ws://`` and ``wss://`` URLs of a Mercury-style bus.

    The URL path names the topic: ``ws://host:8080/bus/jobs`` uses the topic
    ``jobs`` and ignores ``channel``. When the path ends with a slash, as in
    ``ws://host:8080/bus/``, the channel is appended to it, and a URL with no
    path gets ``/bus/<channel>``.
    """

    name = "websocket"

    def __init__(self, url, channel, ping_interval=10.0, ping_timeout=5.0,
                 connect_timeout=5.0, send_retries=2, headers=None, token=None,
                 origin=None, tls_verify=True, tls_ca_file=None,
                 tls_cert_file=None, tls_key_file=None, sslopt=None,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES):
        super(WebSocketTransport, self).__init__(url, channel)
        _require_websocket()
        for option, value in (("ping_interval", ping_interval),
                              ("ping_timeout", ping_timeout),
                              ("connect_timeout", connect_timeout)):
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or value <= 0):
                raise ConfigurationError(
                    "invalid %s %r: use a number of seconds greater than 0"
                    % (option, value))
        if not isinstance(send_retries, int) or send_retries < 0:
            raise ConfigurationError(
                "invalid send_retries %r: use an integer >= 0" % (send_retries,))
        if not isinstance(max_message_bytes, int) or max_message_bytes < 64:
            raise ConfigurationError(
                "invalid max_message_bytes %r: use an integer of at least 64"
                % (max_message_bytes,))
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.connect_timeout = float(connect_timeout)
        self.send_retries = send_retries
        self.max_payload_bytes = max_message_bytes
        self.listen_url, self.topic = self._bus_url(url, channel)
        # With ?echo=1 the bus would send every message of this process back
        # on the sending connection, only for send() to discard it.
        self.send_url = _without_query_parameter(self.listen_url, "echo")
        self._headers, self._origin = self._handshake_headers(headers, token,
                                                              origin)
        self._sslopt = self._tls_options(tls_verify, tls_ca_file,
                                         tls_cert_file, tls_key_file, sslopt)
        self._send_lock = threading.Lock()
        self._sender = None
        self._pid = os.getpid()
        self._ping_counter = itertools.count(1)

    # Configuration.

    def _bus_url(self, url, channel):
        try:
            parts = urlsplit(url)
            parts.port  # raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ConfigurationError(
                "invalid WebSocket URL %s (%s): use ws://host:port/bus/<topic> "
                "or wss://..." % (redact_query(url), exc))
        if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
            raise ConfigurationError(
                "invalid WebSocket URL %s: use ws://host:port/bus/<topic> or "
                "wss://host:port/bus/<topic>" % (redact_query(url),))
        path = parts.path or DEFAULT_BUS_PATH
        if path == "/":
            path = DEFAULT_BUS_PATH
        quoted_channel = quote(ensure_text(channel).encode("utf-8"), safe=b"")
        if path.endswith("/"):
            path += quoted_channel
            topic = quoted_channel
        else:
            topic = path[len(DEFAULT_BUS_PATH):] if path.startswith(
                DEFAULT_BUS_PATH) else path.lstrip("/")
            if channel != DEFAULT_CHANNEL and topic != quoted_channel:
                log.warning("Transport %s: channel %s is ignored because the "
                            "URL path names the topic; end the path with / "
                            "to use the channel as the topic",
                            redact_query(url), channel)
        listen_url = urlunsplit((parts.scheme.lower(), parts.netloc, path,
                                 parts.query, ""))
        return listen_url, topic

    @staticmethod
    def _handshake_headers(headers, token, origin):
        if headers is None:
            headers = {}
        if not isinstance(headers, dict):
            raise ConfigurationError(
                "invalid headers %r: pass a dict of header names to values"
                % (type(headers).__name__,))
        lines = []
        for header_name, value in sorted(headers.items()):
            lowered = header_name.lower()
            if lowered == "origin":
                if origin is not None:
                    raise ConfigurationError(
                        "Origin is set twice, in headers and in origin: keep one")
                origin = value
                continue
            if lowered == "authorization" and token is not None:
                raise ConfigurationError(
                    "Authorization is set twice, in headers and by token: "
                    "keep one")
            lines.append((header_name, value))
        if token is not None:
            lines.append(("Authorization", "Bearer %s" % (token,)))
        if origin is not None:
            lines.append(("Origin", origin))
        for header_name, value in lines:
            # The values may be secrets, so the messages name only the header.
            if not isinstance(value, string_types):
                raise ConfigurationError(
                    "invalid value for header %s: use a string" % (header_name,))
            if any(character in header_name + value
                   for character in ("\r", "\n")):
                raise ConfigurationError(
                    "invalid header %s: names and values must not contain "
                    "line breaks" % (header_name.strip(),))
        header_lines = ["%s: %s" % (header_name, value)
                        for header_name, value in lines
                        if header_name != "Origin"]
        return header_lines, origin

    def _tls_options(self, verify, ca_file, cert_file, key_file, sslopt):
        secure = self.listen_url.startswith("wss:")
        options = {}
        if not verify:
            options["cert_reqs"] = ssl.CERT_NONE
            options["check_hostname"] = False
        if ca_file is not None:
            options["ca_certs"] = ca_file
        if cert_file is not None:
            options["certfile"] = cert_file
        if key_file is not None:
            options["keyfile"] = key_file
        if sslopt:
            options.update(sslopt)
        if options and not secure:
            raise ConfigurationError(
                "TLS options were given for %s, which does not use TLS: use "
                "a wss:// URL or drop the TLS options" % redact_query(self.url))
        return options

    def describe(self):
        """Return the bus URL for a log line, with secrets replaced by ***."""
        return redact_query(self.listen_url)

    # Connections.

    def connect(self, url):
        """Open a WebSocket connection to ``url`` and return it.

        Raise ``HandshakeRejected`` when the bus replies with an HTTP error,
        such as 401 for a missing token or 403 for an Origin it rejects.
        """
        websocket = _require_websocket()
        try:
            connection = websocket.create_connection(
                url, timeout=self.connect_timeout, header=list(self._headers),
                origin=self._origin, suppress_origin=self._origin is None,
                sslopt=dict(self._sslopt), skip_utf8_validation=True)
        except websocket.WebSocketBadStatusException as exc:
            status = getattr(exc, "status_code", None)
            raise HandshakeRejected(
                "the bus at %s rejected the WebSocket handshake with HTTP %s: "
                "check the token, headers and origin options"
                % (redact_query(url), status))
        # Reads and writes of one frame must not block longer than this.
        connection.settimeout(self.ping_timeout)
        return connection

    def open_subscription(self):
        return _WebSocketSubscription(self)

    # Sending.

    def send(self, payload, **options):
        """Send ``payload`` as one text frame (bytes: one binary frame).

        Return once the bus has sent the pong to the ping that follows the
        message.
        Raise ``TransportError`` when that fails ``send_retries + 1`` times.
        """
        if options:
            raise TypeError("ws:// takes no send options, got %s"
                            % ", ".join(sorted(options)))
        if self._pid != os.getpid():
            self.reset_after_fork()
        websocket = _require_websocket()
        errors = (websocket.WebSocketException, socket.error, OSError,
                  LivenessError, BusClosedConnection)
        with self._send_lock:
            attempt = 0
            while True:
                try:
                    self._send_confirmed(payload)
                    return
                except HandshakeRejected:
                    raise
                except errors as exc:
                    self._drop_sender()
                    attempt += 1
                    if attempt > self.send_retries:
                        raise TransportError(
                            "sending to %s failed after %d attempts (%s: %s): "
                            "check that the bus is running"
                            % (self.describe(), attempt, type(exc).__name__,
                               exc))
                    # A retry can deliver a message twice when only the pong
                    # was lost.
                    log.warning("Transport %s: sending failed (%s: %s); "
                                "retrying", self.describe(),
                                type(exc).__name__, exc)
                    time.sleep(0.05 * attempt)

    def _send_confirmed(self, payload):
        connection = self._sender_connection()
        websocket = _require_websocket()
        if isinstance(payload, binary_type):
            connection.send(payload, websocket.ABNF.OPCODE_BINARY)
        else:
            connection.send(payload)
        marker = ("job-notifier-%d" % next(self._ping_counter)).encode("ascii")
        connection.ping(marker)
        deadline = monotonic() + self.ping_timeout
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise LivenessError("no pong within %.1f seconds"
                                    % self.ping_timeout)
            connection.settimeout(remaining)
            opcode, frame = connection.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_PONG and frame.data == marker:
                connection.settimeout(self.ping_timeout)
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise BusClosedConnection(
                    "the bus closed the connection with code %s"
                    % (_close_code(frame),))

    def _sender_connection(self):
        connection = self._sender
        if connection is not None and not self._discard_incoming(connection):
            log.debug("Transport %s: the bus closed the idle sending "
                      "connection; opening a new one", self.describe())
            self._drop_sender()
            connection = None
        if connection is None:
            connection = self._sender = self.connect(self.send_url)
        return connection

    def _discard_incoming(self, connection):
        """Read and drop what the bus sent since the last send.

        Return False if the bus closed the connection meanwhile, which it
        does to idle peers that send no pongs to its pings.
        """
        websocket = _require_websocket()
        sock = connection.sock
        if sock is None:
            return False
        try:
            while _has_buffered_data(sock) or wait_readable([sock], 0):
                opcode, frame = connection.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return False
        except (websocket.WebSocketException, socket.error, OSError):
            return False
        return True

    def _drop_sender(self):
        connection, self._sender = self._sender, None
        if connection is not None:
            close_connection(connection, send_close=False)

    def reset_after_fork(self):
        # The parent still uses its sending connection: forget it without
        # sending anything on it, and replace a lock that another thread of
        # the parent may have held at the moment of the fork.
        self._sender = None
        self._send_lock = threading.Lock()
        self._pid = os.getpid()

    def close(self):
        if self._pid != os.getpid():
            self.reset_after_fork()
            return
        with self._send_lock:
            connection, self._sender = self._sender, None
        if connection is not None:
            close_connection(connection, send_close=True)


def close_connection(connection, send_close):
    """Close a websocket-client connection without waiting for the bus.

    ``send_close`` sends a close frame first, so the bus drops the peer
    at once even if a forked child still has a copy of the socket.
    """
    sock = connection.sock
    if sock is None:
        return
    if send_close:
        try:
            connection.settimeout(CLOSE_TIMEOUT)
            connection.send_close()
        except Exception:
            log.debug("could not send the close frame", exc_info=True)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (socket.error, OSError):
        pass
    connection.shutdown()


class _WebSocketSubscription(Subscription):
    """The listening connection, read by the listener thread only."""

    def __init__(self, transport):
        self._transport = transport
        self._connection = transport.connect(transport.listen_url)
        self._schedule = PingSchedule(transport.ping_interval,
                                      transport.ping_timeout)
        self._broken = False

    def receive(self, timeout, wake_fd):
        try:
            return self._receive(timeout, wake_fd)
        except Exception:
            self._broken = True
            raise

    def _receive(self, timeout, wake_fd):
        sock = self._connection.sock
        if sock is None:
            raise BusClosedConnection("the listening connection was closed")
        if not _has_buffered_data(sock):
            wait = min(timeout, self._schedule.seconds_until_action())
            readable = wait_readable([sock, wake_fd], max(wait, 0))
            if sock not in readable:
                self._check_liveness()
                return []
        return self._read_frames(sock)

    def _read_frames(self, sock):
        websocket = _require_websocket()
        payloads = []
        for _ in range(MAX_FRAMES_PER_RECEIVE):
            opcode, frame = self._connection.recv_data_frame(True)
            self._schedule.record_activity()
            if opcode in (websocket.ABNF.OPCODE_TEXT,
                          websocket.ABNF.OPCODE_BINARY):
                payloads.append(frame.data)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                raise BusClosedConnection(
                    "the bus closed the connection with code %s"
                    % (_close_code(frame),))
            if not (_has_buffered_data(sock) or wait_readable([sock], 0)):
                break
        return payloads

    def _check_liveness(self):
        if self._schedule.reply_overdue():
            raise LivenessError("no pong within %.1f seconds of a ping"
                                % self._schedule.timeout)
        if self._schedule.ping_due():
            self._connection.ping(b"")
            self._schedule.record_ping()

    def close(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            close_connection(connection, send_close=not self._broken)
