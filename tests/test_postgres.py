# -*- coding: utf-8 -*-
"""The shared behaviour tests and fault handling on a real PostgreSQL."""

from __future__ import absolute_import, unicode_literals

import logging
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from behaviour import DELIVERY_TIMEOUT, NotifierBehaviour, Recorder
from job_notifier import (ConfigurationError, MessageTooLarge, Notifier,
                          NotifierError, TransportError)
from job_notifier.transports.postgres import (MAX_PAYLOAD_BYTES,
                                              PostgresTransport)


def _unique(name):
    return "%s_%d_%d" % (name, os.getpid(), random.randint(0, 10 ** 9))


def _with_query(url, **parameters):
    query = "&".join("%s=%s" % item for item in sorted(parameters.items()))
    return "%s?%s" % (url, query)


def _backend_pids(server, application_name):
    rows = server.query("SELECT pid FROM pg_stat_activity WHERE "
                        "application_name = %s ORDER BY pid",
                        (application_name,))
    return [row[0] for row in rows]


def _wait_until(predicate, timeout=DELIVERY_TIMEOUT, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class TestPostgresTransport(NotifierBehaviour):
    # PostgreSQL notifications are text: invalid UTF-8 cannot be sent.
    carries_binary = False

    @pytest.fixture
    def url(self, postgres_server):
        return postgres_server.url

    @pytest.fixture
    def send_raw(self, sender):
        def send(payload):
            # NOTIFY rejects payloads of 8000 bytes or more, so longer
            # garbage is cut to the largest payload the server carries.
            data = payload.encode("utf-8")[:MAX_PAYLOAD_BYTES]
            sender.transport.send(data.decode("utf-8", "ignore"))
        return send


@pytest.fixture
def pair(postgres_server):
    """A listening notifier and a sending one on a channel of their own."""
    channel = _unique("pair")
    notifier = Notifier.from_url(postgres_server.url, channel=channel)
    sender = Notifier.from_url(postgres_server.url, channel=channel)
    yield notifier, sender
    notifier.close()
    sender.close()


def test_transaction_commit_delivers(postgres_server, pair):
    """A notification sent with cursor= arrives only when the caller commits."""
    notifier, sender = pair
    on_finished = notifier.on("finished", Recorder())
    notifier.start()
    connection = postgres_server.connect(autocommit=False)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        sender.notify("in-tx", "finished", cursor=cursor)
        time.sleep(0.5)
        assert on_finished.calls == []

        connection.commit()
        assert on_finished.wait_for_calls(1) == [(notifier, "in-tx")]
    finally:
        connection.close()


def test_transaction_rollback_drops(postgres_server, pair):
    """A notification sent with cursor= is never delivered after a rollback."""
    notifier, sender = pair
    on_finished = notifier.on("finished", Recorder())
    notifier.start()
    connection = postgres_server.connect(autocommit=False)
    try:
        cursor = connection.cursor()
        sender.notify("rolled-back", "finished", cursor=cursor)
        connection.rollback()
    finally:
        connection.close()
    # PostgreSQL delivers notifications in commit order, so one sent after
    # the rollback arrives after anything the rolled back one could cause.
    sender.notify("after", "finished")

    assert on_finished.wait_for_calls(1) == [(notifier, "after")]
    time.sleep(0.2)
    assert on_finished.calls == [(notifier, "after")]


def test_cursor_must_have_execute(pair):
    notifier, sender = pair
    with pytest.raises(ConfigurationError) as raised:
        sender.notify(1, "finished", cursor="not a cursor")
    assert "'not a cursor'" in str(raised.value)
    with pytest.raises(TypeError) as raised:
        sender.notify(1, "finished", connection=None)
    assert "connection" in str(raised.value)


def test_large_extras_are_dropped_with_warning(pair, caplog):
    """A failed event with a 20 KB error summary arrives without extras."""
    caplog.set_level(logging.WARNING, logger="job_notifier")
    notifier, sender = pair
    on_failed = notifier.on("failed", Recorder(), with_extras=True)
    notifier.start()

    sender.notify(5, "failed", extras={"error": "E" * 20000})

    assert on_failed.wait_for_calls(1) == [(notifier, "5", {"extras": {}})]
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert any("without extras" in message for message in warnings)


def test_payload_limit_is_enforced_before_sending(pair):
    """7,999 bytes reach the server; 8,000 bytes raise MessageTooLarge."""
    notifier, sender = pair
    notifier.start()
    sender.transport.send("x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(MessageTooLarge) as raised:
        sender.transport.send("x" * (MAX_PAYLOAD_BYTES + 1))
    assert "8000 bytes" in str(raised.value)
    with pytest.raises(MessageTooLarge):
        sender.transport.send("é" * 4000)

    assert _wait_until(lambda: notifier.health()["malformed_dropped"] == 1)


def test_psql_notify_reaches_finished_callback(postgres_server):
    """A NOTIFY typed in psql, as Minion::Notifier sends it, is read."""
    notifier = Notifier.from_url(postgres_server.url,
                                 channel="minion_notifier_job")
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        postgres_server.psql("NOTIFY minion_notifier_job, '[1,\"finished\"]'")
        assert on_finished.wait_for_calls(1) == [(notifier, "1")]
    finally:
        notifier.close()


def test_burst_of_1000_while_callbacks_run(pair):
    """1,000 notifications from 4 threads all arrive while callbacks lag."""
    notifier, sender = pair
    seen = Recorder()

    def slow(notifier, job_id):
        time.sleep(0.001)
        seen(notifier, job_id)

    notifier.on("finished", slow)
    notifier.start()
    errors = []

    def send(offset):
        try:
            for number in range(offset, 1000, 4):
                sender.notify(number, "finished")
        except Exception as exc:  # recorded for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(offset,))
               for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    calls = seen.wait_for_calls(1000, timeout=60)
    assert sorted(int(job_id) for _, job_id in calls) == list(range(1000))
    assert notifier.health()["reconnects"] == 0


def test_channel_with_quotes_and_capitals(postgres_server):
    """LISTEN quotes the channel, so any identifier meets pg_notify()."""
    channel = 'Jobs "High" queue'
    notifier = Notifier.from_url(postgres_server.url, channel=channel)
    sender = Notifier.from_url(postgres_server.url, channel=channel)
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        sender.notify(3, "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "3")]
        listening = postgres_server.query(
            "SELECT count(*) FROM pg_stat_activity WHERE "
            "application_name = 'job_notifier listener' AND query = %s",
            ('LISTEN "Jobs ""High"" queue"',))
        assert listening == [(1,)]
    finally:
        notifier.close()
        sender.close()


@pytest.mark.parametrize("channel", ["jöbs_ü", "канал"])
def test_non_ascii_channel_delivers(postgres_server, channel):
    notifier = Notifier.from_url(postgres_server.url, channel=channel)
    sender = Notifier.from_url(postgres_server.url, channel=channel)
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start(timeout=5)
        sender.notify("jöb-€", "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "jöb-€")]
    finally:
        notifier.close()
        sender.close()


def test_missing_database_names_the_fix(postgres_server):
    url = postgres_server.url.rsplit("/", 1)[0] + "/no_such_database"
    notifier = Notifier.from_url(url)
    try:
        with pytest.raises(TransportError) as raised:
            notifier.notify(1, "finished")
        message = str(raised.value)
        assert '"no_such_database" does not exist' in message
        assert "URL's database" in message
        assert "\n" not in message
    finally:
        notifier.close()


@pytest.mark.parametrize("channel", ["a" * 64, "é" * 32, "bad\x00name"])
def test_invalid_channel_raises(postgres_server, channel):
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url(postgres_server.url, channel=channel)
    message = str(raised.value)
    assert "invalid PostgreSQL channel" in message
    assert "1 to 63 bytes" in message


def test_longest_channel_works(postgres_server):
    channel = "c" * 63
    notifier = Notifier.from_url(postgres_server.url, channel=channel)
    sender = Notifier.from_url(postgres_server.url, channel=channel)
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        sender.notify(63, "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "63")]
    finally:
        notifier.close()
        sender.close()


def test_invalid_url_raises_without_password():
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url("postgresql://user:hunter2@127.0.0.1/db?bogus=1")
    message = str(raised.value)
    assert "bogus" in message
    assert "hunter2" not in message
    assert "postgresql://user:***@127.0.0.1/db" in message


@pytest.mark.parametrize("option, value", [
    ("ping_interval", 0), ("ping_timeout", -1), ("connect_timeout", "5"),
    ("send_timeout", None),
])
def test_invalid_timeouts_raise(postgres_server, option, value):
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url(postgres_server.url, **{option: value})
    assert option in str(raised.value)


def test_url_connect_timeout_of_zero_raises(postgres_server):
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url(_with_query(postgres_server.url, connect_timeout=0))
    assert "connect_timeout=0" in str(raised.value)


def test_query_parameters_reach_libpq(postgres_server):
    """application_name and connect_timeout from the URL are used as given."""
    application_name = _unique("custom")
    url = _with_query(postgres_server.url, application_name=application_name,
                      connect_timeout=3, sslmode="disable")
    notifier = Notifier.from_url(url, channel=_unique("params"))
    try:
        assert notifier.transport.connect_timeout == 3.0
        notifier.start()
        assert len(_backend_pids(postgres_server, application_name)) == 1
    finally:
        notifier.close()


def test_sslmode_require_is_passed_through(postgres_server):
    """The test server has no TLS, so sslmode=require must fail to connect."""
    url = _with_query(postgres_server.url, sslmode="require")
    notifier = Notifier.from_url(url, channel=_unique("ssl"))
    try:
        with pytest.raises(NotifierError):
            notifier.start(timeout=1.0)
        assert "SSL" in notifier.health()["last_error"]
    finally:
        notifier.close()


def test_unix_socket_url(postgres_server):
    url = "postgresql:///postgres?host=%s&port=%d&user=postgres" % (
        postgres_server.directory, postgres_server.port)
    channel = _unique("unix")
    notifier = Notifier.from_url(url, channel=channel)
    sender = Notifier.from_url(url, channel=channel)
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        sender.notify("over-unix", "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "over-unix")]
    finally:
        notifier.close()
        sender.close()


def test_missing_psycopg2_names_the_extra():
    script = (
        "import sys; sys.modules['psycopg2'] = None\n"
        "from job_notifier import Notifier, MissingDependencyError\n"
        "try:\n"
        "    Notifier.from_url('postgresql://127.0.0.1:1/db')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n")
    output = subprocess.check_output([sys.executable, "-c", script])
    text = output.decode("utf-8")
    assert "psycopg2-binary" in text
    assert "job_notifier[postgres]" in text


def test_idle_listener_does_not_churn(postgres_server, caplog):
    """Keepalive queries hold an idle connection that is never in a transaction."""
    caplog.set_level(logging.WARNING, logger="job_notifier")
    application_name = _unique("idle")
    url = _with_query(postgres_server.url, application_name=application_name)
    notifier = Notifier.from_url(url, channel=_unique("idle"),
                                 ping_interval=0.2, ping_timeout=1.0)
    try:
        notifier.start()
        backends = _backend_pids(postgres_server, application_name)
        assert len(backends) == 1
        time.sleep(2.0)

        health = notifier.health()
        assert health["connected"]
        assert health["reconnects"] == 0
        assert health["last_error"] is None
        assert caplog.text == ""
        rows = postgres_server.query(
            "SELECT pid, state, query FROM pg_stat_activity WHERE "
            "application_name = %s", (application_name,))
        assert [row[0] for row in rows] == backends
        assert rows[0][1] == "idle"
        # The keepalive query has replaced LISTEN as the last statement.
        assert rows[0][2] == "SELECT 1"
    finally:
        notifier.close()


def test_notification_behind_keepalive_reply(postgres_server):
    """A notification read together with the keepalive reply is returned."""
    channel = _unique("behind")
    transport = PostgresTransport(postgres_server.url, channel,
                                  ping_interval=0.01, ping_timeout=5)
    subscription = transport.open_subscription()
    read_fd, write_fd = os.pipe()
    try:
        time.sleep(0.05)
        subscription._check_liveness()
        postgres_server.query("SELECT pg_notify(%s, 'behind the reply')",
                              (channel,))
        # Both the reply and the notification are in the socket now.
        time.sleep(0.2)

        assert subscription.receive(2.0, read_fd) == ["behind the reply"]
    finally:
        subscription.close()
        os.close(read_fd)
        os.close(write_fd)


def test_forked_child_leaves_parent_connections(postgres_server):
    """A child that sends and closes never touches the parent's sessions."""
    application_name = _unique("fork")
    url = _with_query(postgres_server.url, application_name=application_name)
    channel = _unique("fork")
    notifier = Notifier.from_url(url, channel=channel)
    sender = Notifier.from_url(url, channel=channel)
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        sender.notify("before-fork", "finished")
        on_finished.wait_for_calls(1)
        parent_backends = _backend_pids(postgres_server, application_name)
        assert len(parent_backends) == 2

        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                sender.transport.close()
                sender.notify("from-child", "finished")
                sender.close()
                notifier.close()
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0

        sender.notify("after-fork", "finished")
        calls = on_finished.wait_for_calls(3)
        assert [job_id for _, job_id in calls] == [
            "before-fork", "from-child", "after-fork"]
        # The parent still uses its first two sessions.
        assert _wait_until(lambda: _backend_pids(
            postgres_server, application_name) == parent_backends)
        assert notifier.health()["reconnects"] == 0
    finally:
        notifier.close()
        sender.close()


@pytest.mark.slow
def test_sender_reconnects_once_after_restart(fresh_postgres_server, caplog):
    """A stale sending connection is replaced, and the event is delivered."""
    caplog.set_level(logging.WARNING, logger="job_notifier")
    server = fresh_postgres_server
    channel = _unique("stale")
    notifier = Notifier.from_url(server.url, channel=channel)
    sender = Notifier.from_url(server.url, channel=channel)
    try:
        sender.notify(0, "finished")
        server.restart()
        on_finished = notifier.on("finished", Recorder())
        notifier.start(timeout=5)
        sender.notify(1, "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "1")]
        assert "retrying on a new one" in caplog.text
    finally:
        notifier.close()
        sender.close()
