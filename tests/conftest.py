from __future__ import absolute_import, unicode_literals

import pytest

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
