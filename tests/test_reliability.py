# -*- coding: utf-8 -*-
"""Robustness of the core: churn, leaks, fuzzed input, dead listeners, secrets."""

from __future__ import absolute_import, unicode_literals

import gc
import json
import logging
import os
import random
import threading
import time

import pytest
import six

from behaviour import Recorder
from broker_server import start_broker
from job_notifier import (Notifier, NotifierClosed, NotifierError,
                          TransportError, WaitTimeout)
from job_notifier.backoff import Backoff
from job_notifier.transports.memory import MemoryTransport
from job_notifier.transports.postgres import (
    MAX_PAYLOAD_BYTES as POSTGRES_MAX_PAYLOAD_BYTES)
from job_notifier.transports.websocket import DEFAULT_MAX_MESSAGE_BYTES
from job_notifier.wire import MAX_PAYLOAD_BYTES
from servers import RedisServer
from test_cli import run_cli


def _unique(name):
    return "%s-%d-%d" % (name, os.getpid(), random.randint(0, 10 ** 9))


class _DyingTransport(MemoryTransport):
    """Memory transport whose subscription kills the listener thread."""

    def open_subscription(self):
        subscription = super(_DyingTransport, self).open_subscription()
        receive = subscription.receive

        def receive_then_die(timeout, wake_fd):
            if self.die.is_set():
                raise SystemExit("listener thread killed for the test")
            return receive(min(timeout, 0.05), wake_fd)

        subscription.receive = receive_then_die
        return subscription


def test_dead_listener_wakes_waiters_with_error():
    """If the listener thread ends while open, waiters get an error."""
    transport = _DyingTransport("memory://%s" % _unique("dying"), "dying")
    transport.die = threading.Event()
    notifier = Notifier(transport)
    try:
        notifier.start()
        errors = []

        def wait():
            try:
                notifier.wait_for("job", timeout=30)
            except NotifierClosed as exc:
                errors.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.1)
        transport.die.set()
        thread.join(5)
        assert not thread.is_alive()
        assert len(errors) == 1
        assert "stopped unexpectedly" in str(errors[0])
        # The next use starts a new listener.
        transport.die.clear()
        notifier.start(timeout=5)
        assert notifier.health()["listening"]
    finally:
        notifier.close()


class _BreakingTransport(MemoryTransport):
    """Memory transport whose subscriptions break on their first receive."""

    def __init__(self, url, channel):
        super(_BreakingTransport, self).__init__(url, channel)
        self.opened = 0
        self.closed = 0

    def open_subscription(self):
        subscription = super(_BreakingTransport, self).open_subscription()
        self.opened += 1
        close = subscription.close

        def receive_and_break(timeout, wake_fd):
            raise IOError("connection reset for the test")

        def count_close():
            self.closed += 1
            close()

        subscription.receive = receive_and_break
        subscription.close = count_close
        return subscription


class _RecordingBackoff(Backoff):
    """Backoff that records whether each broken subscription was closed."""

    def __init__(self, transport):
        super(_RecordingBackoff, self).__init__(base=0.01, cap=0.01)
        self.transport = transport
        self.all_closed = []

    def compute(self, failures):
        self.all_closed.append(self.transport.closed == self.transport.opened)
        return super(_RecordingBackoff, self).compute(failures)


def test_broken_connection_closed_before_backoff():
    """The listener closes a broken connection before it sleeps."""
    transport = _BreakingTransport("memory://%s" % _unique("broken"), "broken")
    backoff = _RecordingBackoff(transport)
    notifier = Notifier(transport, backoff=backoff)
    try:
        notifier.on("finished", lambda notifier, job_id: None)
        deadline = time.time() + 5
        while len(backoff.all_closed) < 3 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        notifier.close()
    assert len(backoff.all_closed) >= 3
    assert all(backoff.all_closed)


def test_many_waits_leave_nothing_behind():
    """10,000 waits, half timing out, leave empty registries and flat memory."""
    url = "memory://%s" % _unique("leak")
    notifier = Notifier.from_url(url)
    sender = Notifier.from_url(url)
    notifier.start()

    def run(count, offset):
        for number in range(offset, offset + count):
            job_id = "job-%d" % number
            callback = notifier.on("job:%s" % job_id, lambda *args: None)
            if number % 2:
                with pytest.raises(WaitTimeout):
                    notifier.wait_for(job_id, timeout=0.0005)
            else:
                with notifier.watch(job_id) as watch:
                    sender.notify(job_id, "finished")
                    assert watch.wait(timeout=5) == "finished"
            assert notifier.unsubscribe("job:%s" % job_id, callback) == 1

    try:
        run(2000, 0)
        _settle(notifier)
        gc.collect()
        baseline = _memory_in_use()
        run(8000, 2000)
        _settle(notifier)
        gc.collect()
        growth = _memory_in_use() - baseline

        health = notifier.health()
        assert health["pending_waiters"] == 0
        assert health["callbacks"] == 0
        assert notifier._dispatcher._waiters == {}
        assert notifier._dispatcher._callbacks == {}
        # 8,000 more waits may leave a little allocator slack, never
        # anything that grows with the number of waits.
        assert growth < 8000 * 64, "memory grew by %d" % growth
    finally:
        notifier.close()
        sender.close()


def _settle(notifier):
    deadline = time.time() + 10
    while notifier.health()["callback_queue"] and time.time() < deadline:
        time.sleep(0.01)


def _memory_in_use():
    try:
        import tracemalloc
    except ImportError:  # Python 2.7: count live objects instead of bytes
        return len(gc.get_objects()) * 64
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    return tracemalloc.get_traced_memory()[0]


def test_churn_during_reconnects(fresh_redis_server):
    """on/unsubscribe/wait_for/watch from many threads during restarts."""
    server = fresh_redis_server
    channel = _unique("churn")
    notifier = Notifier.from_url(server.url, channel=channel)
    sender = Notifier.from_url(server.url, channel=channel)
    errors = []
    stop = threading.Event()
    notifier.start()

    def churn(worker):
        count = 0
        while not stop.is_set():
            count += 1
            try:
                callback = notifier.on("job:%d-%d" % (worker, count),
                                       lambda *args: None)
                try:
                    notifier.wait_for("%d-%d" % (worker, count), timeout=0.01)
                except WaitTimeout:
                    pass
                with notifier.watch("w%d-%d" % (worker, count),
                                    subscribe_timeout=15):
                    pass
                notifier.unsubscribe("job:%d-%d" % (worker, count), callback)
            except Exception as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=churn, args=(number,))
               for number in range(8)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(2):
            time.sleep(0.3)
            server.restart(down_seconds=0.3)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert not any(thread.is_alive() for thread in threads)
        health = notifier.health()
        assert health["pending_waiters"] == 0
        assert health["callbacks"] == 0

        # The subscription survived: a callback registered now still fires.
        notifier.start(timeout=10)
        on_finished = notifier.on("finished", Recorder())
        sender.notify("after-churn", "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "after-churn")]
    finally:
        stop.set()
        notifier.close()
        sender.close()


@pytest.fixture
def bus_url(request, transport):
    """Return the URL of a running server of ``transport``."""
    if transport == "memory":
        return "memory://%s" % _unique("bus")
    fixture = {"redis": "redis_server", "postgresql": "postgres_server",
               "ws": "broker_server"}[transport]
    return request.getfixturevalue(fixture).url


# What each transport carries: invalid UTF-8, NUL characters, and the
# largest payload in bytes, which is None where payloads over the decoder's
# maximum get through.
# PostgreSQL notifications are text of at most 7,999 bytes, and a text
# value cannot contain NUL. The broker relays only valid UTF-8 text
# frames, up to its default maximum message size.
FUZZ_LIMITS = {
    "memory": {"binary": True, "nul": True, "max_bytes": None},
    "redis": {"binary": True, "nul": True, "max_bytes": None},
    "postgresql": {"binary": False, "nul": False,
                   "max_bytes": POSTGRES_MAX_PAYLOAD_BYTES},
    "ws": {"binary": False, "nul": True,
           "max_bytes": DEFAULT_MAX_MESSAGE_BYTES},
}


def _random_text(generator, length, nul):
    # Code points of the Basic Multilingual Plane without surrogates, which
    # UTF-8 cannot encode; Python 2.7 builds may lack the other planes.
    characters = []
    while len(characters) < length:
        code_point = generator.randint(0 if nul else 1, 0xFFFF)
        if not 0xD800 <= code_point <= 0xDFFF:
            characters.append(six.unichr(code_point))
    return "".join(characters)


def _json_text(value):
    # Python 2.7's json.dumps() returns bytes, which the WebSocket transport
    # would send as a binary frame.
    return six.ensure_text(json.dumps(value))


def _fuzz_payloads(count, seed, binary=True, nul=True, max_bytes=None):
    """Return ``count`` malformed payloads that fit the given limits.

    Every 1,000th payload is as large as ``max_bytes``, or over the
    decoder's maximum when ``max_bytes`` is None.
    """
    generator = random.Random(seed)
    huge_size = max_bytes if max_bytes is not None else MAX_PAYLOAD_BYTES + 1
    payloads = []
    for number in range(count):
        kind = number % 6
        if number % 1000 == 999:
            # A JSON array of one string: valid JSON, but not a message.
            payloads.append('["%s"]' % ("x" * (huge_size - 4)))
        elif kind == 0:
            length = generator.randint(0, 64)
            if binary:
                payloads.append(bytes(bytearray(generator.getrandbits(8)
                                                for _ in range(length))))
            else:
                payloads.append(_random_text(generator, length, nul))
        elif kind == 1:
            value = generator.choice([None, True, 1.5, -3, "x", [], {}, [1],
                                      [1, 2, 3, 4], {"a": [1, "finished"]}])
            payloads.append(_json_text(value))
        elif kind == 2:
            payloads.append(_json_text([generator.randint(0, 10),
                                        generator.choice(["finish", "FAILED",
                                                          "", "enqueued"])]))
        elif kind == 3:
            payloads.append("[" * generator.randint(1, 5000))
        elif kind == 4:
            if binary:
                payloads.append(b"\xc3\x28[1,\"finished\"]")
            else:
                # The text that the bytes above would show as Latin-1.
                payloads.append("\u00c3([1,\"finished\"]")
        else:
            # Valid id and event, but extras that are not an object.
            payloads.append(_json_text(["j", "finished", "x" * 10]))
    return payloads


@pytest.mark.parametrize("transport", ["memory", "redis", "postgresql", "ws"])
def test_fuzzed_payloads_do_not_stop_the_listener(transport, bus_url, caplog):
    """10,000 malformed payloads are dropped; later good events arrive."""
    caplog.set_level(logging.WARNING, logger="job_notifier")
    channel = _unique("fuzz")
    notifier = Notifier.from_url(bus_url, channel=channel)
    sender = Notifier.from_url(bus_url, channel=channel)
    try:
        on_job = notifier.on("job", Recorder())
        notifier.start()
        payloads = _fuzz_payloads(10000, seed=20261204,
                                  **FUZZ_LIMITS[transport])
        for payload in payloads:
            sender.transport.send(payload)
        sender.notify("good", "finished")

        calls = on_job.wait_for_calls(1, timeout=30)
        assert calls == [(notifier, "good", "finished")]
        health = notifier.health()
        assert health["malformed_dropped"] == len(payloads)
        assert health["reconnects"] == 0
        # Rate limiting keeps the log short.
        warnings = [record for record in caplog.records
                    if "malformed" in record.getMessage()]
        assert 1 <= len(warnings) <= 5
    finally:
        notifier.close()
        sender.close()


def test_slow_callback_delays_neither_listener_nor_waiters():
    url = "memory://%s" % _unique("slow")
    notifier = Notifier.from_url(url)
    sender = Notifier.from_url(url)
    try:
        release = threading.Event()
        notifier.on("finished", lambda notifier, job_id: release.wait(10))
        notifier.start()
        sender.notify("first", "finished")
        started = time.time()
        with notifier.watch("second") as watch:
            sender.notify("second", "finished")
            assert watch.wait(timeout=5) == "finished"
        assert time.time() - started < 1.0
        release.set()
    finally:
        notifier.close()
        sender.close()


def test_queue_warning_when_callbacks_fall_behind(caplog):
    caplog.set_level(logging.WARNING, logger="job_notifier")
    url = "memory://%s" % _unique("backlog")
    notifier = Notifier.from_url(url)
    sender = Notifier.from_url(url)
    try:
        release = threading.Event()
        seen = Recorder()

        def slow(notifier, job_id):
            release.wait(10)
            seen(notifier, job_id)

        notifier.on("finished", slow)
        notifier.start()
        for number in range(1500):
            sender.notify(number, "finished")
        deadline = time.time() + 10
        while "slow callbacks" not in caplog.text and time.time() < deadline:
            time.sleep(0.01)
        assert "slow callbacks" in caplog.text
        release.set()
        assert len(seen.wait_for_calls(1500, timeout=30)) == 1500
    finally:
        notifier.close()
        sender.close()


SECRET = "s3cr3t-Pa55"
QUERY_SECRET = "s3cr3t-Qu3ry"


@pytest.fixture(scope="module")
def token_broker():
    """A broker that accepts only the token "right-token"."""
    server = start_broker(token="right-token")
    yield server
    server.cleanup()


class RejectedSecret(object):
    """A running server that rejects ``secrets``, which the URL or
    ``options`` carry; ``rejection`` is part of the server's error text."""

    def __init__(self, url, options, secrets, rejection, server_log=None):
        self.url = url
        self.options = options
        self.secrets = secrets
        self.rejection = rejection
        #: Callable that returns the log of a server of this project.
        self.server_log = server_log


@pytest.fixture
def rejected_secret(request, case):
    if case == "redis":
        server = RedisServer(password="right-password").start()
        request.addfinalizer(server.cleanup)
        url = "redis://:%s@127.0.0.1:%d/0" % (SECRET, server.port)
        # WRONGPASS on Redis 6 and newer, "invalid password" before.
        return RejectedSecret(url, {}, [SECRET], "pass")
    if case == "postgresql":
        server = request.getfixturevalue("postgres_server")
        role = _unique("secret").replace("-", "_")
        server.add_password_role(role, "right-password")
        url = ("postgresql://%s:%s@127.0.0.1:%d/postgres?password=%s"
               % (role, SECRET, server.port, QUERY_SECRET))
        return RejectedSecret(url, {}, [SECRET, QUERY_SECRET],
                              "password authentication failed")
    server = request.getfixturevalue("token_broker")
    if case == "ws-query":
        return RejectedSecret(server.url + "?token=" + SECRET, {}, [SECRET],
                              "401", server.log)
    if case == "ws-token":
        return RejectedSecret(server.url, {"token": SECRET}, [SECRET], "401",
                              server.log)
    headers = {"Authorization": "Bearer %s" % SECRET,
               "X-Api-Key": QUERY_SECRET}
    return RejectedSecret(server.url, {"headers": headers},
                          [SECRET, QUERY_SECRET], "401", server.log)


@pytest.mark.parametrize("case", ["redis", "postgresql", "ws-query",
                                  "ws-token", "ws-headers"])
def test_rejected_secret_never_appears(case, rejected_secret, caplog, capsys):
    """A rejected password or token shows up in no log, repr, error or output."""
    secret = rejected_secret
    caplog.set_level(logging.DEBUG)
    notifier = Notifier.from_url(secret.url, channel=_unique("secret"),
                                 **secret.options)
    texts = [repr(notifier), repr(notifier.transport), str(notifier.health())]
    notifier.on("finished", lambda notifier, job_id: None)
    with pytest.raises(NotifierError) as start_error:
        notifier.start(timeout=1.0)
    texts += [str(start_error.value), repr(start_error.value)]
    with pytest.raises(TransportError) as send_error:
        notifier.notify(1, "finished")
    texts += [str(send_error.value), repr(send_error.value)]
    health = notifier.health()
    texts.append(str(health))
    notifier.close()
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    if not secret.options:
        # The command line takes a secret in its --url only.
        status, stdout, stderr = run_cli(["-vv", "wait", "1", "--url",
                                          secret.url, "--connect-timeout",
                                          "1"])
        assert status == 3
        texts += [stdout, stderr]
    if secret.server_log is not None:
        texts.append(secret.server_log())

    # The server rejected the secret, so the secret was sent.
    assert secret.rejection in health["last_error"]
    assert "Listener" in caplog.text
    for text in texts:
        for value in secret.secrets:
            assert value not in text
    if not secret.options:
        assert "***" in repr(notifier)


def test_password_in_invalid_url_is_hidden():
    from job_notifier import ConfigurationError
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url("amqp://user:hunter2@127.0.0.1/")
    assert "hunter2" not in str(raised.value)
    assert "'amqp'" in str(raised.value)


def test_missing_client_library_names_the_extra(tmp_path):
    """Without redis-py, from_url() says which extra to install."""
    import subprocess
    import sys
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "from job_notifier import Notifier, MissingDependencyError\n"
        "try:\n"
        "    Notifier.from_url('redis://127.0.0.1:1/0')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n")
    output = subprocess.check_output([sys.executable, "-c", script])
    text = output.decode("utf-8")
    assert "job_notifier[redis]" in text


def test_callback_calling_sys_exit_does_not_stop_callbacks():
    import sys
    url = "memory://%s" % _unique("exit")
    notifier = Notifier.from_url(url)
    sender = Notifier.from_url(url)
    try:
        notifier.on("failed", lambda notifier, job_id: sys.exit(3))
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        sender.notify(1, "failed")
        sender.notify(2, "finished")
        assert on_finished.wait_for_calls(1) == [(notifier, "2")]
        assert notifier.health()["callback_errors"] == 1
    finally:
        notifier.close()
        sender.close()
