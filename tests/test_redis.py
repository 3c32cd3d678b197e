"""The shared behaviour tests and fault handling on a real Redis."""

from __future__ import absolute_import, unicode_literals

import threading
import time

import pytest

from behaviour import NotifierBehaviour, Recorder
from job_notifier import Notifier


class TestRedisTransport(NotifierBehaviour):

    @pytest.fixture
    def url(self, redis_server):
        return redis_server.url


class TestRedisUnixSocket(object):
    def test_unix_url_is_accepted(self):
        notifier = Notifier.from_url("unix:///tmp/no-such-redis.sock?db=0")
        assert notifier.transport.name == "redis"
        notifier.close()


def test_close_stops_threads_within_a_second(redis_server):
    before = set(threading.enumerate())
    notifier = Notifier.from_url(redis_server.url, channel="close")
    notifier.on("finished", lambda notifier, job_id: None)
    notifier.start()
    notifier.notify(1, "finished")
    time.sleep(0.1)
    started = time.time()
    notifier.close()
    assert time.time() - started < 1.0
    leftover = [thread for thread in threading.enumerate()
                if thread not in before and thread.name.startswith("job-notifier")
                and thread.name != "job-notifier-deadlines"]
    assert leftover == []


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
