"""The asyncio server behind ``job-notifier broker`` (Python 3.9+ only).

``broker.py`` imports this module only after checking the interpreter, so
the Python 3 syntax here never reaches Python 2.7. The WebSocket protocol is
websockets' (13 or newer); this module adds topics, access checks, HTTP
``POST /bus/<topic>`` and ``GET /stats``.
"""

import asyncio
import hmac
import http
import json
import logging
import re
import signal
import ssl
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from .exceptions import ConfigurationError, NotifierError
from .wire import RateLimitedLog

log = logging.getLogger("job_notifier.broker")

# websockets logs every handshake header at debug level; secrets are
# masked before they reach a handler.
websockets_log = logging.getLogger("websockets.server")

BUS_PREFIX = "/bus/"
STATS_PATH = "/stats"

# A peer whose unsent data grows beyond this many bytes is disconnected:
# websockets' broadcast() queues without limit for a peer that stops
# reading, and the broker would grow until the ping timeout drops the peer.
DEFAULT_MAX_BUFFER_BYTES = 4 * 1024 * 1024

# Largest HTTP request head of a POST that the broker reads.
MAX_POST_HEAD_BYTES = 16 * 1024

# How much of a rejected POST body is read and dropped before closing.
MAX_DISCARDED_BODY_BYTES = 1024 * 1024


class RedactingFilter(logging.Filter):
    """Mask Authorization values and ``token=`` query values in log records.

    websockets logs each request header as a record ``< Name: value``. The
    values of headers outside ``_PLAIN_HEADERS`` are masked too, because a
    client or a proxy may send credentials in a header of any name, such
    as ``X-Api-Key`` or ``Cookie``.
    """

    _SECRETS = re.compile(r"(?i)(authorization:\s*)\S.*|(token=)[^&\s]*")
    _REQUEST_HEADER = re.compile(r"^(< ([^:\s]+):\s*)\S.*$")
    _PLAIN_HEADERS = frozenset([
        "host", "upgrade", "connection", "origin", "user-agent",
        "sec-websocket-key", "sec-websocket-version",
        "sec-websocket-extensions", "content-length", "content-type",
    ])

    def filter(self, record):
        message = record.getMessage()
        redacted = self._SECRETS.sub(self._mask, message)
        header = self._REQUEST_HEADER.match(redacted)
        if (header is not None
                and header.group(2).lower() not in self._PLAIN_HEADERS):
            redacted = header.group(1) + "***"
        if redacted != message:
            record.msg = redacted
            record.args = ()
        return True

    @staticmethod
    def _mask(match):
        return (match.group(1) or match.group(2)) + "***"


websockets_log.addFilter(RedactingFilter())


def peer_name(connection):
    """Return ``host:port`` of a connection's remote end for log lines."""
    address = getattr(connection, "remote_address", None)
    if not address:
        return "unknown peer"
    return "%s:%s" % (address[0], address[1])


class AccessDenied(Exception):
    """A request failed the token or Origin check."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Broker:
    """A Mercury-style bus: topics of WebSocket peers that relay text.

    ``topics`` maps each topic to the set of its connections. A connection
    leaves the set when it is closed, and ``peers()`` and ``publish()``
    skip it as soon as it starts closing.
    """

    def __init__(self, host="127.0.0.1", port=8080, max_message_bytes=256 * 1024,
                 token=None, allowed_origins=(), ping_interval=20.0,
                 ping_timeout=20.0, max_buffer_bytes=DEFAULT_MAX_BUFFER_BYTES,
                 certfile=None, keyfile=None):
        if not isinstance(max_message_bytes, int) or max_message_bytes < 64:
            raise ConfigurationError(
                "invalid maximum message size %r: use at least 64 bytes"
                % (max_message_bytes,))
        for name, value in (("ping interval", ping_interval),
                            ("ping timeout", ping_timeout)):
            if value is None or value <= 0:
                raise ConfigurationError(
                    "invalid %s %r: use a number of seconds greater than 0"
                    % (name, value))
        if keyfile is not None and certfile is None:
            raise ConfigurationError(
                "a key file was given without a certificate: pass certfile "
                "too, or neither")
        self.host = host
        self.requested_port = port
        self.max_message_bytes = max_message_bytes
        self.token = token
        self.allowed_origins = frozenset(allowed_origins or ())
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_buffer_bytes = max_buffer_bytes
        self.ssl_context = _server_ssl_context(certfile, keyfile)
        self.topics = {}
        self.messages_published = 0
        self.binary_dropped = 0
        self.rejected = 0
        self._binary_log = RateLimitedLog(log)
        self._server = None

    # Lifecycle.

    async def start(self):
        """Start listening; return once the socket is bound."""
        connection_class = type("BusConnection", (_BusConnection,),
                                {"broker": self})
        try:
            self._server = await serve(
                self._handle, self.host, self.requested_port,
                process_request=self._process_request,
                create_connection=connection_class,
                max_size=self.max_message_bytes,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                compression=None, ssl=self.ssl_context,
                server_header="job-notifier-broker", logger=websockets_log)
        except OSError as exc:
            raise NotifierError(
                "cannot listen on %s:%s (%s): pick another --port or stop "
                "the process that uses it" % (self.host, self.requested_port,
                                              exc))
        log.info("Broker listening on %s://%s:%d (token %s, origins %s, "
                 "maximum message %d bytes)",
                 "wss" if self.ssl_context else "ws", self.host, self.port,
                 "required" if self.token else "not required",
                 ", ".join(sorted(self.allowed_origins)) or "any",
                 self.max_message_bytes)

    @property
    def port(self):
        """The bound TCP port (useful after starting on port 0)."""
        if self._server is None:
            return self.requested_port
        return self._server.sockets[0].getsockname()[1]

    async def close(self):
        """Stop listening and close every peer with code 1001."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        log.info("Broker stopped")

    # Topics.

    def peers(self, topic):
        """Return the sorted ``host:port`` names of the peers of ``topic``.

        A peer leaves the list as soon as its connection starts closing,
        which may be up to the close timeout before its handler ends.
        """
        return sorted(peer_name(peer) for peer in self.topics.get(topic, ())
                      if peer.protocol.state is State.OPEN)

    def stats(self):
        """Return the peers of every topic and the message counters."""
        return {
            "topics": dict((topic, peers) for topic, peers in
                           ((topic, self.peers(topic)) for topic in self.topics)
                           if peers),
            "peers": sum(len(self.peers(topic)) for topic in self.topics),
            "messages_published": self.messages_published,
            "binary_dropped": self.binary_dropped,
            "rejected": self.rejected,
        }

    def publish(self, topic, message, sender=None):
        """Send the text ``message`` to every peer of ``topic`` but ``sender``.

        Return the number of peers it was queued for.
        """
        targets = []
        for peer in list(self.topics.get(topic, ())):
            if peer is sender:
                continue
            if peer.transport.get_write_buffer_size() > self.max_buffer_bytes:
                self._drop_slow_peer(topic, peer)
                continue
            targets.append(peer)
        broadcast(targets, message)
        self.messages_published += 1
        return len(targets)

    def _add_peer(self, topic, connection):
        peers = self.topics.setdefault(topic, set())
        peers.add(connection)
        return len(peers)

    def _remove_peer(self, topic, connection):
        peers = self.topics.get(topic)
        if peers is None or connection not in peers:
            return False
        peers.discard(connection)
        if not peers:
            del self.topics[topic]
        return True

    def _drop_slow_peer(self, topic, peer):
        self._remove_peer(topic, peer)
        log.warning("Broker: disconnecting peer %s on topic %s: more than %d "
                    "bytes wait to be sent to it", peer_name(peer), topic,
                    self.max_buffer_bytes)
        # Its buffer is full, so a close frame would wait behind it.
        peer.transport.abort()

    # Requests.

    def check_access(self, origin, authorization, query):
        """Raise ``AccessDenied`` unless the Origin and the token are valid.

        A request without an Origin header comes from a program rather than
        a browser page and passes the Origin check.
        """
        if (self.allowed_origins and origin is not None
                and origin not in self.allowed_origins):
            raise AccessDenied(403, "Origin is not allowed")
        if self.token is None:
            return
        supplied = None
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                supplied = credentials.strip()
        if supplied is None:
            supplied = query.get("token")
        if supplied is None or not hmac.compare_digest(
                supplied.encode("utf-8"), self.token.encode("utf-8")):
            raise AccessDenied(401, "missing or invalid token")

    def route(self, target):
        """Return ``(kind, topic, query)`` for a request target.

        ``kind`` is ``"bus"``, ``"stats"`` or None for an unknown path.
        """
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if parts.path == STATS_PATH:
            return "stats", None, query
        if parts.path.startswith(BUS_PREFIX):
            topic = unquote(parts.path[len(BUS_PREFIX):])
            if topic:
                return "bus", topic, query
        return None, None, query

    def log_rejection(self, peer, target, status, reason):
        self.rejected += 1
        # The path only, because the query may contain a token.
        log.warning("Broker: rejected %s on %s with HTTP %d: %s", peer,
                    urlsplit(target).path, status, reason)

    def _process_request(self, connection, request):
        kind, topic, query = self.route(request.path)
        peer = peer_name(connection)
        if kind is None:
            self.log_rejection(peer, request.path, 404, "unknown path")
            return connection.respond(
                http.HTTPStatus.NOT_FOUND,
                "Not found: use /bus/<topic> or /stats\n")
        try:
            self.check_access(request.headers.get("Origin"),
                              request.headers.get("Authorization"), query)
        except AccessDenied as denied:
            self.log_rejection(peer, request.path, denied.status,
                               denied.reason)
            return connection.respond(denied.status, denied.reason + "\n")
        if kind == "stats":
            response = connection.respond(
                http.HTTPStatus.OK, json.dumps(self.stats(), sort_keys=True))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        connection.bus_topic = topic
        # Perl's Mercury treats any true value as a request for echo.
        connection.bus_echo = query.get("echo", "") not in ("", "0")
        return None

    async def _handle(self, connection):
        topic = connection.bus_topic
        peer = peer_name(connection)
        sender = None if connection.bus_echo else connection
        count = self._add_peer(topic, connection)
        log.info("Broker: peer %s joined topic %s (%d peers)", peer, topic,
                 count)
        try:
            async for message in connection:
                if isinstance(message, str):
                    self.publish(topic, message, sender)
                    continue
                self.binary_dropped += 1
                self._binary_log.warning(
                    "Broker: dropped a binary message of %d bytes from peer "
                    "%s on topic %s: the bus relays text messages only",
                    len(message), peer, topic)
        except ConnectionClosed as exc:
            sent = getattr(exc, "sent", None)
            if sent is not None and sent.code == 1009:
                log.warning("Broker: disconnected peer %s on topic %s: it "
                            "sent a message over the maximum of %d bytes",
                            peer, topic, self.max_message_bytes)
        finally:
            if self._remove_peer(topic, connection):
                log.info("Broker: peer %s left topic %s (close code %s, %d "
                         "peers remain)", peer, topic,
                         getattr(connection, "close_code", None),
                         len(self.topics.get(topic, ())))


def _server_ssl_context(certfile, keyfile):
    if certfile is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            "cannot load the certificate %s and key %s (%s): pass PEM files"
            % (certfile, keyfile, exc))
    return context


class _BusConnection(ServerConnection):
    """A connection that also serves ``POST /bus/<topic>``.

    websockets reads only requests without a body, so the first bytes wait
    until the request method is known. This class handles a POST itself,
    and passes any other request to websockets unchanged.
    """

    broker = None  # set on the subclass that Broker.start() makes
    bus_topic = None
    bus_echo = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self._first_bytes = bytearray()
        self._post = None
        self._is_websocket = False

    def data_received(self, data):
        if self._is_websocket:
            super().data_received(data)
            return
        if self._post is not None:
            self._post.feed(data)
            return
        self._first_bytes += data
        method = b"POST "
        if (len(self._first_bytes) < len(method)
                and method.startswith(bytes(self._first_bytes))):
            return
        first_bytes, self._first_bytes = bytes(self._first_bytes), None
        if first_bytes.startswith(method):
            self._post = _PostRequest(self.broker, self.transport,
                                      peer_name(self))
            self._post.feed(first_bytes)
        else:
            self._is_websocket = True
            super().data_received(first_bytes)


class _PostRequest:
    """One ``POST /bus/<topic>`` request; the response closes the connection.

    When a request is rejected before its body has arrived, up to
    ``MAX_DISCARDED_BODY_BYTES`` of the body are read and dropped before the
    connection closes: closing a socket with unread data makes the kernel
    send a reset, and the client could lose the response.
    """

    def __init__(self, broker, transport, peer):
        self.broker = broker
        self.transport = transport
        self.peer = peer
        self.buffer = bytearray()
        self.target = None
        self.topic = None
        self.length = None
        self.head_read = False
        self.discarding = 0
        self.done = False

    def feed(self, data):
        if self.discarding:
            self.discarding -= len(data)
            if self.discarding <= 0:
                self.transport.close()
            return
        if self.done:
            return
        self.buffer += data
        if not self.head_read:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_POST_HEAD_BYTES:
                    self.reject(431, "request head too large")
                return
            head = bytes(self.buffer[:end])
            del self.buffer[:end + 4]
            self.head_read = True
            if not self.read_head(head):
                return
        if len(self.buffer) >= self.length:
            self.finish(bytes(self.buffer[:self.length]))

    def read_head(self, head):
        """Parse and check the request head.

        Return False after sending an error response for an invalid head.
        """
        lines = head.decode("latin-1").split("\r\n")
        request_line = lines[0].split(" ")
        if len(request_line) != 3:
            self.reject(400, "invalid request line")
            return False
        self.target = request_line[1]

        headers = {}
        for line in lines[1:]:
            name, separator, value = line.partition(":")
            if not separator:
                self.reject(400, "invalid header line")
                return False
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers or "content-length" not in headers:
            self.reject(411, "send the body with a Content-Length header")
            return False
        try:
            self.length = int(headers["content-length"])
        except ValueError:
            self.length = -1
        if self.length < 0:
            self.length = None
            self.reject(400, "invalid Content-Length")
            return False

        kind, self.topic, query = self.broker.route(self.target)
        if kind != "bus":
            self.reject(404, "unknown path: POST to /bus/<topic>")
            return False
        try:
            self.broker.check_access(headers.get("origin"),
                                     headers.get("authorization"), query)
        except AccessDenied as denied:
            self.reject(denied.status, denied.reason)
            return False

        if self.length > self.broker.max_message_bytes:
            self.reject(413, "body over the maximum of %d bytes"
                        % self.broker.max_message_bytes)
            return False
        if headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def finish(self, body):
        try:
            message = body.decode("utf-8")
        except UnicodeDecodeError:
            self.broker.binary_dropped += 1
            self.reject(400, "the body is not UTF-8 text; the bus relays "
                             "text only")
            return
        count = self.broker.publish(self.topic, message)
        self.respond(200, "delivered to %d peers" % count)

    def reject(self, status, reason):
        self.broker.log_rejection(self.peer, self.target or "?", status,
                                  reason)
        self.respond(status, reason)

    def respond(self, status, text):
        body = (text + "\n").encode("utf-8")
        head = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, http.HTTPStatus(status).phrase, len(body)))
        self.transport.write(head.encode("latin-1") + body)
        self.done = True
        unread = 0
        if self.length is not None:
            unread = self.length - len(self.buffer)
        if 0 < unread <= MAX_DISCARDED_BODY_BYTES:
            self.discarding = unread
        else:
            self.transport.close()


async def _serve(broker):
    await broker.start()
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()

    def stop(signal_number):
        if not stopping.done():
            stopping.set_result(signal_number)

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop, signal_number)
    signal_number = await stopping
    log.info("Broker stopping on %s", signal.Signals(signal_number).name)
    await broker.close()


def run(**options):
    """Run a ``Broker`` with ``options`` until SIGINT or SIGTERM."""
    asyncio.run(_serve(Broker(**options)))
