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


def _numsub(server, channel):
    result = server.client().pubsub_numsub(channel)
    return dict((name.decode() if isinstance(name, bytes) else name, count)
                for name, count in result).get(channel, 0)


def test_restart_resubscribes_and_rechecks(fresh_redis_server):
    """After a restart, events arrive within 5 s and NUMSUB shows us again."""
    server = fresh_redis_server
    notifier = Notifier.from_url(server.url, channel="restart")
    sender = Notifier.from_url(server.url, channel="restart")
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        assert _numsub(server, "restart") == 1
        checks = []

        def check(job_id):
            checks.append(job_id)
            return None

        waiter_result = []
        waiter = threading.Thread(target=lambda: waiter_result.append(
            notifier.wait_for("after", timeout=20, check=check)))
        waiter.start()

        server.restart(down_seconds=0.5)
        restarted_at = time.time()
        deadline = restarted_at + 5
        while time.time() < deadline and not notifier.health()["connected"]:
            time.sleep(0.02)
        assert notifier.health()["connected"]
        assert notifier.health()["reconnects"] >= 1
        assert _numsub(server, "restart") == 1

        sender.notify("after", "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "after")]
        waiter.join(5)
        assert waiter_result == ["finished"]
        assert time.time() - restarted_at < 5
        # Checked once on subscribe and again after the reconnect.
        assert len(checks) >= 2
    finally:
        notifier.close()
        sender.close()


def test_listener_started_while_redis_is_down(fresh_redis_server):
    server = fresh_redis_server
    server.stop()
    notifier = Notifier.from_url(server.url, channel="late")
    sender = Notifier.from_url(server.url, channel="late")
    try:
        on_finished = notifier.on("finished", Recorder())
        time.sleep(0.5)
        assert not notifier.health()["connected"]
        assert notifier.health()["last_error"]
        server.start()
        notifier.start(timeout=5)
        sender.notify(5, "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "5")]
    finally:
        notifier.close()
        sender.close()


def test_frozen_server_is_detected(fresh_redis_server):
    """A server that stops answering is replaced within interval + timeout."""
    server = fresh_redis_server
    notifier = Notifier.from_url(server.url, channel="frozen",
                                 ping_interval=0.5, ping_timeout=0.5)
    try:
        notifier.start()
        server.freeze()
        try:
            deadline = time.time() + 5
            while time.time() < deadline and notifier.health()["connected"]:
                time.sleep(0.05)
            assert not notifier.health()["connected"]
            assert "PING" in (notifier.health()["last_error"] or "")
        finally:
            server.thaw()
        notifier.start(timeout=5)
        sender = Notifier.from_url(server.url, channel="frozen")
        on_failed = notifier.on("failed", Recorder())
        sender.notify(1, "failed")
        assert on_failed.wait_for_calls(1) == [(notifier, "1")]
        sender.close()
    finally:
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


def test_client_kill_is_noticed_and_replaced(redis_server):
    """A subscription killed by the server is replaced; later events arrive."""
    channel = "killed"
    notifier = Notifier.from_url(redis_server.url, channel=channel)
    sender = Notifier.from_url(redis_server.url, channel=channel)
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        killed = redis_server.client().client_kill_filter(_type="pubsub")
        assert killed >= 1
        deadline = time.time() + 5
        while time.time() < deadline and notifier.health()["reconnects"] < 1:
            time.sleep(0.02)
        assert notifier.health()["reconnects"] >= 1
        notifier.start(timeout=5)
        sender.notify("after-kill", "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "after-kill")]
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
