"""Sender cost: ``notify()`` calls per second against the raw client's send.

Each loop sends one message per call and waits for the server's reply, as
a worker does; no process listens on the channel.
"""

from __future__ import absolute_import, division, unicode_literals

from .stats import now


def calls_per_second(send, count):
    """Call ``send(index)`` ``count`` times; return the calls per second."""
    for index in range(min(100, count)):
        send(index)
    started = now()
    for index in range(count):
        send(index)
    elapsed = now() - started
    return round(count / elapsed) if elapsed > 0 else None


def raw_redis_sender(url, channel):
    """Return ``(send, close)`` for redis-py's PUBLISH."""
    import redis
    client = redis.Redis.from_url(url)

    def send(index):
        client.publish(channel, '[%d,"finished"]' % index)

    return send, client.connection_pool.disconnect


def raw_postgres_sender(url, channel):
    """Return ``(send, close)`` for psycopg2's ``SELECT pg_notify()``."""
    import psycopg2
    connection = psycopg2.connect(url)
    connection.autocommit = True
    cursor = connection.cursor()

    def send(index):
        cursor.execute("SELECT pg_notify(%s, %s)",
                       (channel, '[%d,"finished"]' % index))

    return send, connection.close


def raw_websocket_sender(url, channel):
    """Return ``(send, close)`` for websocket-client's ``send()``."""
    import websocket
    connection = websocket.create_connection(
        "%s/%s" % (url.rstrip("/"), channel), timeout=10)

    def send(index):
        connection.send('[%d,"finished"]' % index)

    return send, connection.close


RAW_SENDERS = {
    "redis": raw_redis_sender,
    "postgres": raw_postgres_sender,
    "websocket": raw_websocket_sender,
}
