# -*- coding: utf-8 -*-
"""The ws:// transport against a real ``job-notifier broker``.

The broker runs as a subprocess under Python 3.9+, so these client tests
run on Python 2.7 as well.
"""

from __future__ import absolute_import, unicode_literals

import base64
import hashlib
import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest

from behaviour import NotifierBehaviour, Recorder
from broker_server import (REPOSITORY, free_port, make_certificate,
                           start_broker, wait_until)
from job_notifier import (ConfigurationError, MissingDependencyError,
                          Notifier, NotifierError, TransportError)
from job_notifier.transports.websocket import WebSocketTransport, redact_query

TOKEN = "s3cret-token-value"


class TestWebSocketTransport(NotifierBehaviour):
    # The broker drops binary frames, so bytes never reach the listener.
    carries_binary = False

    @pytest.fixture
    def url(self, broker_server):
        return broker_server.url


class TestWebSocketTransportWithEcho(NotifierBehaviour):
    carries_binary = False

    @pytest.fixture
    def url(self, broker_server):
        return broker_server.url + "?echo=1"


@pytest.mark.parametrize("query", ["", "?echo=1"])
def test_own_notifications_arrive_once(broker_server, query):
    """A notifier that sends and listens gets each event exactly once."""
    notifier = Notifier.from_url(broker_server.url + query, channel="own")
    try:
        on_job = notifier.on("job", Recorder())
        notifier.start()
        for job_id in ("a", "b", "c", "marker"):
            notifier.notify(job_id, "finished")

        on_job.wait_for_calls(4)
        # Anything delivered twice would arrive right after the marker.
        time.sleep(0.3)
        assert [call[1] for call in on_job.calls] == ["a", "b", "c", "marker"]
    finally:
        notifier.close()


@pytest.mark.parametrize("url, channel, listen_url, topic", [
    ("ws://127.0.0.1:1/bus/", "jobs", "ws://127.0.0.1:1/bus/jobs", "jobs"),
    ("ws://127.0.0.1:1", "jobs", "ws://127.0.0.1:1/bus/jobs", "jobs"),
    ("ws://127.0.0.1:1/", "a b/c", "ws://127.0.0.1:1/bus/a%20b%2Fc",
     "a%20b%2Fc"),
    ("ws://127.0.0.1:1/bus/", "jöb", "ws://127.0.0.1:1/bus/j%C3%B6b",
     "j%C3%B6b"),
    ("WS://127.0.0.1:1/bus/fixed?echo=1", "job_notifier",
     "ws://127.0.0.1:1/bus/fixed?echo=1", "fixed"),
    ("wss://example.test/mercury/", "jobs",
     "wss://example.test/mercury/jobs", None),
])
def test_topic_comes_from_path_or_channel(url, channel, listen_url, topic):
    transport = WebSocketTransport(url, channel)
    assert transport.listen_url == listen_url
    if topic is not None:
        assert transport.topic == topic


def test_url_topic_wins_over_channel(caplog):
    caplog.set_level(logging.WARNING, logger="job_notifier")
    transport = WebSocketTransport("ws://127.0.0.1:1/bus/fixed", "other")
    assert transport.listen_url == "ws://127.0.0.1:1/bus/fixed"
    assert "channel other is ignored" in caplog.text


def test_sending_connection_drops_echo():
    transport = WebSocketTransport(
        "ws://127.0.0.1:1/bus/t?echo=1&token=abc", "job_notifier")
    assert transport.send_url == "ws://127.0.0.1:1/bus/t?token=abc"


def test_describe_hides_secrets():
    url = "ws://user:pw@127.0.0.1:1/bus/t?token=abc&echo=1"
    transport = WebSocketTransport(url, "job_notifier")
    description = transport.describe()
    assert "abc" not in description
    assert "pw" not in description
    assert "echo=1" in description
    assert "token=***" in description
    assert redact_query("ws://h/bus/t") == "ws://h/bus/t"


@pytest.mark.parametrize("url, options, message", [
    ("ws://127.0.0.1:notaport/bus/t", {}, "invalid WebSocket URL"),
    ("ws:///bus/t", {}, "invalid WebSocket URL"),
    ("ws://h/bus/t", {"ping_interval": 0}, "ping_interval"),
    ("ws://h/bus/t", {"ping_timeout": "5"}, "ping_timeout"),
    ("ws://h/bus/t", {"send_retries": -1}, "send_retries"),
    ("ws://h/bus/t", {"max_message_bytes": 10}, "max_message_bytes"),
    ("ws://h/bus/t", {"tls_verify": False}, "wss://"),
    ("ws://h/bus/t", {"headers": ["X: y"]}, "dict"),
    ("ws://h/bus/t", {"headers": {"Authorization": "x"}, "token": "y"},
     "Authorization is set twice"),
    ("ws://h/bus/t", {"headers": {"Origin": "x"}, "origin": "y"},
     "Origin is set twice"),
    ("ws://h/bus/t", {"unknown_option": 1}, "invalid option"),
])
def test_invalid_configuration_raises(url, options, message):
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url(url, **options)
    assert message in str(raised.value)


def test_missing_client_library_is_reported(monkeypatch):
    import job_notifier.transports.websocket as module
    monkeypatch.setattr(module, "websocket_module", None)
    monkeypatch.setattr(module, "_websocket_import_error",
                        ImportError("No module named websocket"),
                        raising=False)
    with pytest.raises(MissingDependencyError) as raised:
        Notifier.from_url("ws://127.0.0.1:1/bus/t")
    assert "websocket-client" in str(raised.value)
    assert "job_notifier[websocket]" in str(raised.value)


def test_header_errors_do_not_show_values():
    with pytest.raises(ConfigurationError) as raised:
        Notifier.from_url("ws://h/bus/t", headers={"X-Key": "se\r\ncret"})
    assert "X-Key" in str(raised.value)
    assert "cret" not in str(raised.value)


def test_two_processes_through_examples(broker_server):
    """wait_for_job.py blocks until emit_events.py reports the job."""
    url = broker_server.url + "examples"
    environment = dict(os.environ, PYTHONPATH=REPOSITORY)
    examples = os.path.join(REPOSITORY, "examples")
    waiter = subprocess.Popen(
        [sys.executable, os.path.join(examples, "wait_for_job.py"), "--url",
         url, "--timeout", "20", "job-7"],
        stdout=subprocess.PIPE, env=environment)
    try:
        assert b"waiting for job job-7" in waiter.stdout.readline()
        emitter = subprocess.Popen(
            [sys.executable, os.path.join(examples, "emit_events.py"), "--url",
             url, "--work", "0.1", "job-7"],
            stdout=subprocess.PIPE, env=environment)
        emitted, _ = emitter.communicate()
        output, _ = waiter.communicate()
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert emitter.returncode == 0
    assert b"sent finished for job job-7" in emitted
    assert waiter.returncode == 0
    assert b"job job-7 finished" in output


def test_sender_reconnects_after_idle_close(caplog):
    """The broker drops a sending connection that ignores its pings while
    idle; the next notify opens a new one without a warning."""
    server = start_broker(ping_interval=0.2, ping_timeout=0.2)
    notifier = Notifier.from_url(server.url, channel="idle")
    sender = Notifier.from_url(server.url, channel="idle")
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        sender.notify(1, "finished")
        assert wait_until(lambda: len(server.peers("idle")) == 2)
        assert wait_until(lambda: len(server.peers("idle")) == 1)
        caplog.set_level(logging.WARNING, logger="job_notifier")

        sender.notify(2, "finished")

        assert on_finished.wait_for_calls(2) == [(notifier, "1"),
                                                 (notifier, "2")]
        assert "retrying" not in caplog.text
    finally:
        notifier.close()
        sender.close()
        server.cleanup()


def test_idle_listener_does_not_churn(caplog):
    """Pings both ways keep an idle listener connected without log noise."""
    server = start_broker(ping_interval=0.3, ping_timeout=1.0)
    notifier = Notifier.from_url(server.url, channel="idle-listener",
                                 ping_interval=0.2, ping_timeout=1.0)
    try:
        caplog.set_level(logging.WARNING, logger="job_notifier")
        notifier.start()
        [peer] = server.peers("idle-listener")
        time.sleep(2.0)

        health = notifier.health()
        assert health["connected"]
        assert health["reconnects"] == 0
        assert health["last_error"] is None
        assert caplog.text == ""
        assert server.peers("idle-listener") == [peer]
    finally:
        notifier.close()
        server.cleanup()


def test_notify_without_broker_raises():
    sender = Notifier.from_url("ws://127.0.0.1:%d/bus/x" % free_port(),
                               connect_timeout=1, send_retries=1)
    try:
        started = time.time()
        with pytest.raises(TransportError) as raised:
            sender.notify(1, "finished")
        assert "after 2 attempts" in str(raised.value)
        assert time.time() - started < 5
    finally:
        sender.close()


def test_forked_child_sends_on_its_own_connection(broker_server):
    """A child notifies through an inherited notifier; the parent's
    sending connection still works afterwards."""
    if not hasattr(os, "fork"):
        pytest.skip("os.fork is not available")
    notifier = Notifier.from_url(broker_server.url, channel="fork-send")
    sender = Notifier.from_url(broker_server.url, channel="fork-send")
    try:
        on_job = notifier.on("job", Recorder())
        notifier.start()
        sender.notify("parent-1", "finished")
        on_job.wait_for_calls(1)

        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                sender.notify("child", "finished")
                sender.close()
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0

        sender.notify("parent-2", "finished")
        calls = on_job.wait_for_calls(3)
        assert sorted(call[1] for call in calls) == [
            "child", "parent-1", "parent-2"]
    finally:
        notifier.close()
        sender.close()


def test_close_removes_peer_from_broker(broker_server):
    notifier = Notifier.from_url(broker_server.url, channel="close")
    notifier.start()
    assert wait_until(lambda: len(broker_server.peers("close")) >= 1)

    notifier.close()

    assert wait_until(lambda: broker_server.peers("close") == [])


def test_token_protected_broker(caplog):
    """Without the token the broker rejects the client; with it, accepts."""
    caplog.set_level(logging.DEBUG)
    server = start_broker(token=TOKEN)
    anonymous = Notifier.from_url(server.url, channel="secret")
    with_header = Notifier.from_url(server.url, channel="secret", token=TOKEN)
    with_query = Notifier.from_url(server.url + "?token=" + TOKEN,
                                   channel="secret")
    try:
        with pytest.raises(NotifierError):
            anonymous.start(timeout=1)
        assert "401" in anonymous.health()["last_error"]
        with pytest.raises(TransportError) as raised:
            anonymous.notify(1, "finished")
        assert "401" in str(raised.value)

        on_finished = with_header.on("finished", Recorder())
        with_header.start()
        with_query.notify(2, "finished")
        assert on_finished.wait_for_calls(1) == [(with_header, "2")]
        assert TOKEN not in with_query.health()["url"]
    finally:
        for notifier in (anonymous, with_header, with_query):
            notifier.close()
        broker_log = server.log()
        server.cleanup()
    assert TOKEN not in caplog.text
    assert "rejected" in broker_log
    assert TOKEN not in broker_log


def test_origin_allow_list():
    server = start_broker(allowed_origins=["https://app.example"])
    try:
        rejected = Notifier.from_url(server.url, channel="o",
                                     origin="https://evil.example")
        allowed = Notifier.from_url(server.url, channel="o",
                                    headers={"Origin": "https://app.example"})
        without_origin = Notifier.from_url(server.url, channel="o")
        try:
            with pytest.raises(NotifierError):
                rejected.start(timeout=1)
            assert "403" in rejected.health()["last_error"]
            on_finished = allowed.on("finished", Recorder())
            allowed.start()
            without_origin.notify(3, "finished")
            assert on_finished.wait_for_calls(1) == [(allowed, "3")]
        finally:
            for notifier in (rejected, allowed, without_origin):
                notifier.close()
    finally:
        server.cleanup()


def test_wss_with_self_signed_certificate(tmp_path):
    certfile, keyfile = make_certificate(str(tmp_path))
    server = start_broker(certfile=certfile, keyfile=keyfile)
    assert server.url.startswith("wss://")
    notifiers = []
    try:
        verified = Notifier.from_url(server.url, channel="tls",
                                     tls_ca_file=certfile)
        unverified = Notifier.from_url(server.url, channel="tls",
                                       tls_verify=False)
        default = Notifier.from_url(server.url, channel="tls")
        notifiers += [verified, unverified, default]

        with pytest.raises(NotifierError):
            default.start(timeout=1)
        assert "CERTIFICATE_VERIFY_FAILED" in default.health()["last_error"]

        on_job = verified.on("job", Recorder())
        verified.start()
        for number in range(50):
            unverified.notify(number, "finished")
        calls = on_job.wait_for_calls(50)
        assert [call[1] for call in calls] == [str(n) for n in range(50)]
    finally:
        for notifier in notifiers:
            notifier.close()
        server.cleanup()


def serve_frames_in_one_record(listening_socket, context, frames, done):
    """Accept one WebSocket client and send ``frames`` in one TLS record."""
    raw, _ = listening_socket.accept()
    connection = context.wrap_socket(raw, server_side=True)
    try:
        request = b""
        while b"\r\n\r\n" not in request:
            request += connection.recv(4096)
        key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\n"
                           b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        # One sendall() of less than 16 KiB is one TLS record.
        connection.sendall(b"".join(
            b"\x81" + struct.pack("B", len(frame)) + frame for frame in frames))
        done.wait(10)
    finally:
        connection.close()


def test_frames_in_one_tls_record_arrive_at_once(tmp_path):
    """Frames that the SSL layer decrypted together are read without waiting
    for the socket to become readable again."""
    certfile, keyfile = make_certificate(str(tmp_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if hasattr(
        ssl, "PROTOCOL_TLS_SERVER") else ssl.PROTOCOL_SSLv23)
    context.load_cert_chain(certfile, keyfile)
    listening_socket = socket.socket()
    listening_socket.bind(("127.0.0.1", 0))
    listening_socket.listen(1)
    port = listening_socket.getsockname()[1]
    frames = [('[%d,"finished"]' % number).encode("ascii")
              for number in range(3)]
    done = threading.Event()
    server = threading.Thread(target=serve_frames_in_one_record,
                              args=(listening_socket, context, frames, done))
    server.start()
    notifier = Notifier.from_url("wss://127.0.0.1:%d/bus/one" % port,
                                 tls_ca_file=certfile)
    try:
        on_job = notifier.on("job", Recorder())
        started = time.time()
        calls = on_job.wait_for_calls(3, timeout=3)
        assert [call[1] for call in calls] == ["0", "1", "2"]
        # The listener's select() times out only after 5 seconds.
        assert time.time() - started < 3
    finally:
        done.set()
        notifier.close()
        server.join(10)
        listening_socket.close()
