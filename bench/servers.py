"""Servers for the benchmarks, started on free ports of 127.0.0.1.

The Redis and PostgreSQL servers are the test suite's own helpers in
``tests/``; each is started in a temporary directory and stopped by pid.
"""

from __future__ import absolute_import, unicode_literals

import logging
import os
import subprocess
import sys

from .subprocesses import REPOSITORY

TESTS = os.path.join(REPOSITORY, "tests")

log = logging.getLogger("bench")

BROKER_VERSION = ("import sys, websockets; print('(Python %d.%d.%d, websockets "
                  "%s)' % (sys.version_info[:3] + (websockets.__version__,)))")


def _import_test_helper(module_name):
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    return __import__(module_name)


class Servers(object):
    """The servers of one benchmark run; ``stop()`` stops all of them."""

    def __init__(self):
        self.urls = {}
        self.versions = {}
        self.skipped = {}
        self._running = []

    def start_redis(self):
        server = _import_test_helper("servers").RedisServer().start()
        self._running.append(server)
        client = server.client()
        try:
            # A fast flood can outrun a slow subscriber by megabytes; lift
            # the pub/sub output buffer limit so Redis never drops it.
            client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
            self.versions["redis-server"] = client.info("server")[
                "redis_version"]
        finally:
            client.connection_pool.disconnect()
        self.urls["redis"] = server.url
        log.info("redis-server %s on %s", self.versions["redis-server"],
                 server.url)

    def start_postgres(self):
        try:
            helper = _import_test_helper("pg_server")
        except ImportError as exc:
            self.skipped["postgres"] = "tests/pg_server.py is missing: %s" % exc
            return
        server = helper.PostgresServer()
        self._running.append(server)
        server.start()
        self.versions["PostgreSQL"] = server.query(
            "SHOW server_version")[0][0]
        self.urls["postgres"] = server.url
        log.info("PostgreSQL %s on %s", self.versions["PostgreSQL"],
                 server.url)

    def start_broker(self):
        helper = _import_test_helper("broker_server")
        if helper.broker_python() is None:
            self.skipped["websocket"] = (
                "no Python 3.9+ with websockets 13+ to run the broker")
            return
        server = helper.BrokerServer()
        # The test helper logs every frame at debug level; a benchmark
        # would measure the logging.
        server.arguments[server.arguments.index("--log-level") + 1] = "warning"
        self._running.append(server)
        server.start()
        self.versions["job-notifier broker"] = subprocess.check_output(
            [server.python, "-c", BROKER_VERSION]).decode("ascii").strip()
        self.urls["websocket"] = server.url
        log.info("job-notifier broker on %s", server.url)

    def start(self, transports):
        self.start_redis()
        if "postgres" in transports:
            self.start_postgres()
        if "websocket" in transports:
            self.start_broker()

    def stop(self):
        while self._running:
            server = self._running.pop()
            try:
                server.cleanup()
            except Exception:
                log.exception("failed to stop %r", server)
