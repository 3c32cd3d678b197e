from __future__ import absolute_import, unicode_literals

import pytest

from broker_server import start_broker
from pg_server import PostgresServer
from servers import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server for the whole session; tests must not leave it down."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def fresh_redis_server():
    """A redis-server of the test's own, for tests that restart or freeze it."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole session; tests must not stop it."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def fresh_postgres_server():
    """A PostgreSQL server of the test's own, for restarts and freezes."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def broker_server():
    """One job-notifier broker for the session; skips without Python 3.9+."""
    server = start_broker()
    yield server
    server.cleanup()
