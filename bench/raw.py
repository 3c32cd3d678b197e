"""The baselines: each transport's client library used directly.

A raw receiver has ``receive(timeout)``, which returns the list of text
payloads that arrived (empty when ``timeout`` seconds pass), and
``close()``. A raw sender is a pair ``(send, close)`` where
``send(payload)`` sends one payload and waits for whatever reply the
protocol gives.
"""

from __future__ import absolute_import, unicode_literals

import select
import time

from job_notifier._compat import ensure_text


def _wait_readable(connection, timeout):
    try:
        readable, _, _ = select.select([connection], [], [], timeout)
    except (OSError, select.error):
        return False
    return bool(readable)


def _topic_url(url, channel):
    return "%s/%s" % (url.rstrip("/"), channel)


class RedisReceiver(object):
    """redis-py: SUBSCRIBE, then ``get_message(timeout=...)``."""

    def __init__(self, url, channel):
        import redis
        self._client = redis.Redis.from_url(url)
        self.pubsub = self._client.pubsub()
        self.pubsub.subscribe(channel)
        deadline = time.time() + 10
        while time.time() < deadline:
            message = self.pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                return
        raise RuntimeError("no SUBSCRIBE confirmation from %s within 10 "
                           "seconds" % url)

    def receive(self, timeout):
        deadline = time.time() + timeout
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                return []
            message = self.pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == "message":
                return [ensure_text(message["data"])]

    def close(self):
        self.pubsub.close()
        self._client.connection_pool.disconnect()


class PostgresReceiver(object):
    """psycopg2: LISTEN on an autocommit connection, ``select()`` and ``poll()``."""

    def __init__(self, url, channel):
        import psycopg2
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True
        self.connection.cursor().execute(
            'LISTEN "%s"' % channel.replace('"', '""'))

    def receive(self, timeout):
        connection = self.connection
        deadline = time.time() + timeout
        while True:
            if connection.notifies:
                payloads = [ensure_text(notify.payload)
                            for notify in connection.notifies]
                del connection.notifies[:]
                return payloads
            remaining = deadline - time.time()
            if remaining <= 0:
                return []
            if _wait_readable(connection, remaining):
                connection.poll()

    def close(self):
        self.connection.close()


class WebSocketReceiver(object):
    """websocket-client: one connection to the broker topic, ``recv()``."""

    def __init__(self, url, channel):
        import websocket
        self._websocket = websocket
        self.connection = websocket.create_connection(
            _topic_url(url, channel), timeout=10)

    def receive(self, timeout):
        self.connection.settimeout(timeout)
        try:
            return [ensure_text(self.connection.recv())]
        except self._websocket.WebSocketTimeoutException:
            return []

    def close(self):
        self.connection.close()


def redis_sender(url, channel):
    """Return ``(send, close)`` for redis-py's PUBLISH."""
    import redis
    client = redis.Redis.from_url(url)

    def send(payload):
        client.publish(channel, payload)

    return send, client.connection_pool.disconnect


def postgres_sender(url, channel):
    """Return ``(send, close)`` for psycopg2's ``SELECT pg_notify()``."""
    import psycopg2
    connection = psycopg2.connect(url)
    connection.autocommit = True
    cursor = connection.cursor()

    def send(payload):
        cursor.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    return send, connection.close


def websocket_sender(url, channel):
    """Return ``(send, close)`` for websocket-client's ``send()``.

    The bus sends no reply to a text frame, so ``send()`` returns once the
    frame is written to the socket.
    """
    import websocket
    connection = websocket.create_connection(_topic_url(url, channel),
                                             timeout=10)

    def send(payload):
        connection.send(payload)

    return send, connection.close


RECEIVERS = {
    "redis": RedisReceiver,
    "postgres": PostgresReceiver,
    "websocket": WebSocketReceiver,
}

SENDERS = {
    "redis": redis_sender,
    "postgres": postgres_sender,
    "websocket": websocket_sender,
}
