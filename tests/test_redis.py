"""The shared behaviour tests and fault handling on a real Redis."""

from __future__ import absolute_import, unicode_literals

import os
import subprocess
import threading
import time

import pytest
from six.moves.urllib.parse import quote

from behaviour import NotifierBehaviour, Recorder
from job_notifier import Notifier
from job_notifier.exceptions import ConfigurationError
from servers import RedisServer, wait_for_port


class TestRedisTransport(NotifierBehaviour):

    @pytest.fixture
    def url(self, redis_server):
        return redis_server.url


class TestRedisUnixSocket(object):
    def test_unix_url_is_accepted(self):
        notifier = Notifier.from_url("unix:///tmp/no-such-redis.sock?db=0")
        assert notifier.transport.name == "redis"
        notifier.close()


def test_notify_after_restart_is_not_lost(fresh_redis_server):
    """A stale pooled sender connection is replaced, not reported as sent."""
    server = fresh_redis_server
    notifier = Notifier.from_url(server.url, channel="stale")
    sender = Notifier.from_url(server.url, channel="stale")
    try:
        sender.notify(0, "finished")
        server.restart()
        notifier.start(timeout=5)
        on_finished = notifier.on("finished", Recorder())
        sender.notify(1, "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "1")]
    finally:
        notifier.close()
        sender.close()


def test_idle_connection_does_not_churn(redis_server, caplog):
    """Pings keep an idle subscription without reconnects or log noise."""
    import logging
    caplog.set_level(logging.WARNING, logger="job_notifier")
    notifier = Notifier.from_url(redis_server.url, channel="idle",
                                 ping_interval=0.2, ping_timeout=1.0)
    try:
        notifier.start()
        time.sleep(2.0)
        health = notifier.health()
        assert health["connected"]
        assert health["reconnects"] == 0
        assert health["last_error"] is None
        assert caplog.text == ""
    finally:
        notifier.close()


def test_process_exits_promptly_without_close(redis_server):
    import subprocess
    import sys
    script = (
        "from job_notifier import Notifier\n"
        "notifier = Notifier.from_url(%r, channel='exit')\n"
        "notifier.on('finished', lambda notifier, job_id: None)\n"
        "notifier.start()\n"
        "notifier.notify(1, 'finished')\n" % redis_server.url)
    started = time.time()
    process = subprocess.Popen([sys.executable, "-c", script],
                               stderr=subprocess.PIPE)
    _, error = process.communicate()
    assert process.returncode == 0, error
    assert time.time() - started < 5
    assert b"Traceback" not in error


class _UnixSocketRedisServer(RedisServer):
    """A redis-server that also listens on a Unix socket in its directory."""

    @property
    def socket_path(self):
        return os.path.join(self.directory, "redis.sock")

    def start(self):
        command = [self.executable, "--port", str(self.port),
                   "--bind", "127.0.0.1", "--dir", self.directory,
                   "--save", "", "--appendonly", "no",
                   "--unixsocket", self.socket_path]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)
        wait_for_port(self.port)
        return self


def test_unix_socket_url_delivers_events():
    server = _UnixSocketRedisServer().start()
    notifier = None
    try:
        notifier = Notifier.from_url("unix://%s?db=0" % server.socket_path,
                                     channel="unix")
        notifier.start(timeout=5)
        threading.Timer(0.2, notifier.notify, ("over-unix", "finished")).start()
        assert notifier.wait_for("over-unix", timeout=5) == "finished"
    finally:
        if notifier is not None:
            notifier.close()
        server.cleanup()


def test_percent_encoded_password_is_decoded():
    """A password with URL delimiters works when percent-encoded, as in RFC 3986."""
    password = "p@ss:w/rd#?%x"
    server = RedisServer(password=password).start()
    notifier = None
    try:
        url = "redis://:%s@127.0.0.1:%d/0" % (quote(password, safe=""),
                                              server.port)
        notifier = Notifier.from_url(url, channel="encoded")
        notifier.start(timeout=5)
        on_finished = notifier.on("finished", Recorder())
        notifier.notify("encoded", "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "encoded")]
    finally:
        if notifier is not None:
            notifier.close()
        server.cleanup()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:99999/0",
                                 "rediss://127.0.0.1:0/0",
                                 "redis://127.0.0.1:port/0"])
def test_invalid_port_is_rejected(url):
    """Python 2.7's urlsplit() reads port 99999 as None, which meant 6379."""
    with pytest.raises(ConfigurationError) as info:
        Notifier.from_url(url)
    assert "invalid Redis URL" in str(info.value)
