"""The baselines: each transport's client library used directly.

Every raw channel opens two connections, one to send and one to receive,
as job_notifier does, and exposes ``send(payload)``, ``receive(timeout)``
(a list of the text payloads that arrived, empty when ``timeout`` passes)
and ``close()``.
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


class RawRedis(object):
    """redis-py: PUBLISH on one connection, SUBSCRIBE and ``get_message``."""

    def __init__(self, url, channel):
        import redis
        self.channel = channel
        self.sender = redis.Redis.from_url(url)
        self._receiver_client = redis.Redis.from_url(url)
        self.pubsub = self._receiver_client.pubsub()
        self.pubsub.subscribe(channel)
        deadline = time.time() + 10
        while time.time() < deadline:
            message = self.pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                return
        raise RuntimeError("no SUBSCRIBE confirmation from %s within 10 "
                           "seconds" % url)

    def send(self, payload):
        self.sender.publish(self.channel, payload)

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
        self._receiver_client.connection_pool.disconnect()
        self.sender.connection_pool.disconnect()


class RawPostgres(object):
    """psycopg2: ``SELECT pg_notify()`` on one connection; LISTEN, ``poll()``."""

    def __init__(self, url, channel):
        import psycopg2
        self.channel = channel
        self.listen_connection = psycopg2.connect(url)
        self.listen_connection.autocommit = True
        self.listen_connection.cursor().execute(
            'LISTEN "%s"' % channel.replace('"', '""'))
        self.send_connection = psycopg2.connect(url)
        self.send_connection.autocommit = True
        self._cursor = self.send_connection.cursor()

    def send(self, payload):
        self._cursor.execute("SELECT pg_notify(%s, %s)",
                             (self.channel, payload))

    def receive(self, timeout):
        connection = self.listen_connection
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
        self.listen_connection.close()
        self.send_connection.close()


class RawWebSocket(object):
    """websocket-client: send on one connection, receive on another.

    Both connect to the same broker topic, so the measured round trip is
    sender, broker and receiver, as for the notifier.
    """

    def __init__(self, url, channel):
        import websocket
        topic_url = "%s/%s" % (url.rstrip("/"), channel)
        self.receiver = websocket.create_connection(topic_url, timeout=10)
        self.sender = websocket.create_connection(topic_url, timeout=10)

    def send(self, payload):
        self.sender.send(payload)

    def receive(self, timeout):
        import websocket
        self.receiver.settimeout(timeout)
        try:
            return [ensure_text(self.receiver.recv())]
        except websocket.WebSocketTimeoutException:
            return []

    def close(self):
        self.sender.close()
        self.receiver.close()


RAW_CHANNELS = {
    "redis": RawRedis,
    "postgres": RawPostgres,
    "websocket": RawWebSocket,
}
