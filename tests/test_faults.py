"""Fault injection on real servers, for every network transport.

Each test gets servers of its own and injects one fault: a restart, a
server that is down when the listener starts, a server frozen with SIGSTOP
for longer than ``ping_interval + ping_timeout``, or the listening
connection dropped by the server. After the fault the listener must be
subscribed again, must have re-run the check of a pending ``wait_for()``,
and must deliver an event sent afterwards within 5 seconds.
"""

from __future__ import absolute_import, unicode_literals

import os
import random
import threading
import time

import pytest

from behaviour import DELIVERY_TIMEOUT
from broker_server import start_broker, wait_until
from fault_listener import ChildNotifier, WatchedNotifier
from job_notifier import Notifier, TransportError, WaitTimeout
from job_notifier.backoff import Backoff

pytestmark = pytest.mark.slow

TRANSPORTS = ["redis", "postgresql", "ws"]

# Small liveness settings, so a frozen server is noticed within 1 second.
LISTEN_OPTIONS = {"ping_interval": 0.5, "ping_timeout": 0.5,
                  "connect_timeout": 1}

# Longer than ping_interval + ping_timeout of LISTEN_OPTIONS.
FROZEN_SECONDS = 2.5

# Generous bound for a reconnect after a fault: the backoff is capped at
# 2 seconds, and another test run may be loading the machine.
RECOVERY_TIMEOUT = 10.0

WAITED_JOB = "waited"


def _unique(name):
    return "%s_%d_%d" % (name, os.getpid(), random.randint(0, 10 ** 9))


class RedisFaults(object):
    """Faults of a redis-server of the test's own."""

    #: Text of ``health()["last_error"]`` after a missed liveness deadline.
    liveness_error = "PING"
    #: Options of a sender that gives up on a frozen server within 2 seconds.
    quick_send_options = {"connect_timeout": 0.5}

    def __init__(self, request):
        self.server = request.getfixturevalue("fresh_redis_server")
        self.url = self.server.url

    def restart(self):
        self.server.restart(down_seconds=0.5)

    def kill_listening_connection(self, watched, channel):
        killed = self.server.client().client_kill_filter(_type="pubsub")
        assert killed == 1

    def listening_connections(self, channel):
        counts = dict(self.server.client().pubsub_numsub(channel))
        return counts.get(channel.encode("utf-8"), 0)

    def cleanup(self):
        pass


class PostgresFaults(object):
    """Faults of a PostgreSQL cluster of the test's own."""

    liveness_error = "keepalive"
    quick_send_options = {"connect_timeout": 1, "send_timeout": 0.5}

    def __init__(self, request):
        self.server = request.getfixturevalue("fresh_postgres_server")
        self.url = self.server.url

    def restart(self):
        self.server.stop()
        time.sleep(0.5)
        self.server.start()

    def listener_backends(self):
        rows = self.server.query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = "
            "'job_notifier listener'")
        return [row[0] for row in rows]

    def kill_listening_connection(self, watched, channel):
        [backend] = self.listener_backends()
        self.server.query("SELECT pg_terminate_backend(%s)", (backend,))
        self.killed_backend = backend

    def listening_connections(self, channel):
        return len(self.listener_backends())

    def cleanup(self):
        pass


class BrokerFaults(object):
    """Faults of a ``job-notifier broker`` of the test's own.

    The broker pings every peer each 0.5 seconds and drops a peer that
    sends no pong within 0.5 seconds, so a frozen client is dropped soon.
    """

    liveness_error = "pong"
    quick_send_options = {"connect_timeout": 0.5, "ping_timeout": 0.5}

    def __init__(self, request):
        self.server = start_broker(ping_interval=0.5, ping_timeout=0.5)
        self.url = self.server.url

    def restart(self):
        # SIGKILL, as a crash would: the broker sends no close frames.
        self.server.kill()
        time.sleep(0.5)
        self.server.start()

    def kill_listening_connection(self, watched, channel):
        # Only the broker can end the connection while the child is stopped.
        assert len(self.server.peers(channel)) == 1
        watched.freeze()
        try:
            assert wait_until(lambda: self.server.peers(channel) == [],
                              timeout=DELIVERY_TIMEOUT)
        finally:
            watched.thaw()

    def listening_connections(self, channel):
        # Before the first notify() the listener is the topic's only peer.
        return len(self.server.peers(channel))

    def cleanup(self):
        self.server.cleanup()


HARNESSES = {"redis": RedisFaults, "postgresql": PostgresFaults,
             "ws": BrokerFaults}


@pytest.fixture(params=TRANSPORTS)
def faults(request):
    harness = HARNESSES[request.param](request)
    yield harness
    harness.cleanup()


@pytest.fixture
def channel():
    return _unique("faults")


@pytest.fixture
def sender(faults, channel):
    sender = Notifier.from_url(faults.url, channel=channel)
    yield sender
    sender.close()


def _watch(faults, channel, in_child=False, subscribe_first=True):
    watched_class = ChildNotifier if in_child else WatchedNotifier
    return watched_class(faults.url, channel, LISTEN_OPTIONS, WAITED_JOB,
                         subscribe_first=subscribe_first)


def _wait_for_report(watched, condition, timeout):
    """Poll ``watched.report()`` until ``condition`` holds; return the last."""
    deadline = time.time() + timeout
    while True:
        report = watched.report()
        if condition(report) or time.time() > deadline:
            return report
        time.sleep(0.05)


def _wait_subscribed(watched):
    report = _wait_for_report(
        watched, lambda report: report["health"]["connected"]
        and report["checks"] >= 1, RECOVERY_TIMEOUT)
    assert report["health"]["connected"]
    assert report["checks"] == 1


def _assert_recovered(faults, watched, sender, reconnects=1):
    """Check the listener after a fault, then send and expect delivery.

    ``sender`` must not have sent anything yet, so that the broker counts
    the listening connection alone.
    """
    report = _wait_for_report(
        watched, lambda report: report["health"]["connected"]
        and report["checks"] >= 2, RECOVERY_TIMEOUT)
    health = report["health"]
    assert health["connected"]
    assert health["reconnects"] == reconnects
    assert health["last_error"]
    # Once when the wait began, again when the listener subscribed.
    assert report["checks"] >= 2
    assert report["result"] is None
    assert report["warnings"]
    # One subscription: none left behind by an earlier connection.
    assert wait_until(lambda: faults.listening_connections(
        sender.transport.channel) == 1, timeout=DELIVERY_TIMEOUT)

    sent_at = time.time()
    sender.notify("after-fault", "finished")
    sender.notify(WAITED_JOB, "finished")
    report = _wait_for_report(
        watched, lambda report: "after-fault" in report["finished"]
        and report["result"] is not None, DELIVERY_TIMEOUT)
    assert "after-fault" in report["finished"]
    assert report["result"] == "finished"
    assert time.time() - sent_at < DELIVERY_TIMEOUT + 1
    return report


def test_restart_is_recovered(faults, channel, sender):
    """After a server restart the listener subscribes again and re-checks."""
    watched = _watch(faults, channel)
    try:
        _wait_subscribed(watched)

        faults.restart()

        report = _assert_recovered(faults, watched, sender)
        assert any("lost" in warning for warning in report["warnings"])
    finally:
        watched.close()


def test_server_down_at_start(faults, channel, sender):
    """A listener started before its server keeps trying, then subscribes."""
    faults.server.stop()
    watched = _watch(faults, channel, subscribe_first=False)
    try:
        report = _wait_for_report(
            watched, lambda report: report["health"]["last_error"]
            and report["checks"] == 1, RECOVERY_TIMEOUT)
        assert report["health"]["last_error"]
        assert not report["health"]["connected"]
        assert report["checks"] == 1

        faults.server.start()

        # The first subscription is no reconnect, however many attempts
        # failed before it.
        report = _assert_recovered(faults, watched, sender, reconnects=0)
        assert any("cannot subscribe" in warning
                   for warning in report["warnings"])
    finally:
        watched.close()


def test_frozen_server_is_replaced(faults, channel, sender):
    """A server stopped with SIGSTOP is noticed within the ping deadline.

    While it is frozen, notify() raises TransportError instead of
    dropping the event.
    """
    quick_sender = Notifier.from_url(faults.url, channel=channel,
                                     **faults.quick_send_options)
    watched = _watch(faults, channel)
    try:
        _wait_subscribed(watched)
        quick_sender.notify("warm-up", "enqueue")

        faults.server.freeze()
        frozen_at = time.time()
        try:
            report = _wait_for_report(
                watched, lambda report: not report["health"]["connected"],
                DELIVERY_TIMEOUT)
            assert not report["health"]["connected"]
            assert faults.liveness_error in report["health"]["last_error"]
            # A frozen server may still run the command once it is thawed,
            # so "while-frozen" may or may not arrive later.
            with pytest.raises(TransportError):
                quick_sender.notify("while-frozen", "finished")
            time.sleep(max(0.0, FROZEN_SECONDS - (time.time() - frozen_at)))
        finally:
            faults.server.thaw()

        _assert_recovered(faults, watched, sender)
    finally:
        watched.close()
        quick_sender.close()


def test_killed_connection_is_replaced(faults, channel, sender):
    """The server drops the listening connection; the listener replaces it.

    Redis: CLIENT KILL TYPE pubsub. PostgreSQL: pg_terminate_backend().
    Broker: the listening process is stopped with SIGSTOP until the broker
    drops it for missing pongs, then continued.
    """
    in_child = isinstance(faults, BrokerFaults)
    watched = _watch(faults, channel, in_child=in_child)
    try:
        _wait_subscribed(watched)

        faults.kill_listening_connection(watched, channel)

        report = _assert_recovered(faults, watched, sender)
        assert any("lost" in warning for warning in report["warnings"])
        if isinstance(faults, PostgresFaults):
            [backend] = faults.listener_backends()
            assert backend != faults.killed_backend
        if in_child:
            # websockets closes a peer that missed a pong with code 1011.
            assert "1011" in report["health"]["last_error"]
    finally:
        watched.close()


class GatedBackoff(Backoff):
    """Backoff that delays every reconnect until the test sets ``gate``."""

    def __init__(self):
        super(GatedBackoff, self).__init__(base=0.05, cap=0.05, jitter=0)
        self.gate = threading.Event()

    def compute(self, failures):
        # The listener thread calls this before it sleeps and retries.
        self.gate.wait(60)
        return super(GatedBackoff, self).compute(failures)


def test_outage_loses_events_without_check(faults, channel, sender):
    """Pub/sub is at most once: only a check finds an event sent meanwhile.

    The server restarts, and two events are sent before the listener
    subscribes again. The waiter without a check is not woken and times
    out; the waiter with a check gets the job's state from it.
    """
    backoff = GatedBackoff()
    notifier = Notifier.from_url(faults.url, channel=channel, backoff=backoff,
                                 **LISTEN_OPTIONS)
    job_states = {}
    results = []

    def wait_with_check():
        results.append(notifier.wait_for("checked", timeout=60,
                                         check=job_states.get))

    waiter = threading.Thread(target=wait_with_check)
    try:
        notifier.start(timeout=RECOVERY_TIMEOUT)
        with notifier.watch("unchecked") as watch:
            waiter.start()

            faults.server.stop()
            assert wait_until(lambda: not notifier.health()["connected"],
                              timeout=DELIVERY_TIMEOUT)
            with pytest.raises(TransportError):
                sender.notify("unchecked", "finished")
            faults.server.start()
            sender.notify("unchecked", "finished")
            job_states["checked"] = "finished"
            sender.notify("checked", "finished")
            assert not notifier.health()["connected"]

            backoff.gate.set()
            assert wait_until(lambda: notifier.health()["connected"],
                              timeout=RECOVERY_TIMEOUT)
            assert notifier.health()["reconnects"] == 1
            waiter.join(DELIVERY_TIMEOUT)
            assert results == ["finished"]
            with pytest.raises(WaitTimeout):
                watch.wait(timeout=1.0)
    finally:
        backoff.gate.set()
        notifier.close()
        waiter.join(5)
