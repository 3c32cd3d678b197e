"""``job-notifier broker`` as a bus, driven by plain WebSocket clients.

The broker runs as a subprocess under Python 3.9+; these tests speak to it
with websocket-client, so they run on Python 2.7 too. The tests that import
the broker's own modules run on Python 3.9+ only.
"""

from __future__ import absolute_import, unicode_literals

import os
import subprocess
import sys
import time

import pytest
from six.moves.urllib.error import HTTPError

from behaviour import Recorder
from broker_server import REPOSITORY, raw_client, start_broker, wait_until
from job_notifier import Notifier

websocket = pytest.importorskip("websocket")

TOKEN = "broker-test-token"

python3_only = pytest.mark.skipif(
    sys.version_info < (3, 9),
    reason="the broker's own code needs Python 3.9 or newer")


@pytest.fixture(scope="module")
def broker_server():
    server = start_broker(max_message_bytes=4096)
    yield server
    server.cleanup()


def local_name(client):
    host, port = client.sock.getsockname()[:2]
    return "%s:%d" % (host, port)


def receive_text(client, timeout=5.0):
    client.settimeout(timeout)
    return client.recv()


def assert_nothing_arrives(client, seconds=0.3):
    client.settimeout(seconds)
    with pytest.raises(websocket.WebSocketTimeoutException):
        client.recv()


def test_hundred_clients_receive_one_message(broker_server):
    """100 peers on one topic each get the message; a closed one is gone."""
    clients = []
    try:
        for _ in range(100):
            clients.append(raw_client(broker_server, "crowd"))
        assert wait_until(lambda: len(broker_server.peers("crowd")) == 100)

        status, text = broker_server.post("crowd", '[1,"finished"]')
        assert status == 200
        assert "100 peers" in text
        for client in clients:
            assert receive_text(client) == '[1,"finished"]'

        leaving = clients.pop()
        name = local_name(leaving)
        assert name in broker_server.peers("crowd")
        leaving.close()
        assert wait_until(lambda: name not in broker_server.peers("crowd"),
                          timeout=2.0)
        assert len(broker_server.peers("crowd")) == 99
    finally:
        for client in clients:
            client.close()
    assert wait_until(lambda: broker_server.peers("crowd") == [])


def test_peer_that_drops_tcp_is_removed(broker_server):
    client = raw_client(broker_server, "abrupt")
    name = local_name(client)
    assert wait_until(lambda: name in broker_server.peers("abrupt"))
    # No close frame, as when the client process dies.
    client.sock.close()
    assert wait_until(lambda: name not in broker_server.peers("abrupt"),
                      timeout=2.0)


def test_echo_only_when_asked(broker_server):
    plain = raw_client(broker_server, "echo")
    echoing = raw_client(broker_server, "echo", "?echo=1")
    try:
        assert wait_until(lambda: len(broker_server.peers("echo")) == 2)
        plain.send('[1,"finished"]')
        assert receive_text(echoing) == '[1,"finished"]'
        assert_nothing_arrives(plain)

        echoing.send('[2,"failed"]')
        assert receive_text(plain) == '[2,"failed"]'
        assert receive_text(echoing) == '[2,"failed"]'
    finally:
        plain.close()
        echoing.close()


def test_topics_are_separate(broker_server):
    first = raw_client(broker_server, "first")
    second = raw_client(broker_server, "second")
    sender = raw_client(broker_server, "first")
    try:
        assert wait_until(lambda: len(broker_server.peers("first")) == 2)
        sender.send('[3,"finished"]')
        assert receive_text(first) == '[3,"finished"]'
        assert_nothing_arrives(second)
    finally:
        for client in (first, second, sender):
            client.close()


def test_bad_frames_leave_bus_working(broker_server):
    """Binary, non-JSON and oversized frames do not break broker or listeners."""
    notifier = Notifier.from_url(broker_server.url, channel="bad")
    try:
        on_job = notifier.on("job", Recorder())
        notifier.start()
        peer = raw_client(broker_server, "bad")
        before = broker_server.stats()

        peer.send_binary(b'[1,"finished"]')
        peer.send("not json")
        assert wait_until(lambda: notifier.health()["malformed_dropped"] == 1)
        assert local_name(peer) in broker_server.peers("bad")

        peer.send("x" * 5000)
        peer.settimeout(5)
        opcode, frame = peer.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert frame.data[:2] == b"\x03\xf1"  # 1009: message too big
        peer.shutdown()

        stats = broker_server.stats()
        assert stats["binary_dropped"] == before["binary_dropped"] + 1
        other = raw_client(broker_server, "bad")
        other.send('[2,"failed"]')
        other.close()
        assert on_job.wait_for_calls(1) == [(notifier, "2", "failed")]
        assert notifier.health()["connected"]
    finally:
        notifier.close()
    assert wait_until(lambda: "over the maximum of 4096 bytes"
                      in broker_server.log())
    assert "dropped a binary message" in broker_server.log()


def test_post_reaches_listeners(broker_server):
    notifier = Notifier.from_url(broker_server.url, channel="posted")
    try:
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        status, text = broker_server.post("posted", '[9,"finished"]')
        assert status == 200
        assert "1 peers" in text
        assert on_finished.wait_for_calls(1) == [(notifier, "9")]
    finally:
        notifier.close()


@pytest.mark.parametrize("path, body, status", [
    ("/bus/big", b"x" * 5000, 413),
    ("/bus/bytes", b"\xff\xfe", 400),
    ("/other", b'[1,"finished"]', 404),
])
def test_bad_posts_are_rejected(broker_server, path, body, status):
    with pytest.raises(HTTPError) as raised:
        broker_server.request(path, data=body)
    assert raised.value.code == status


def test_unknown_path_is_rejected(broker_server):
    url = "ws://127.0.0.1:%d/elsewhere" % broker_server.port
    with pytest.raises(websocket.WebSocketBadStatusException) as raised:
        websocket.create_connection(url, timeout=5, suppress_origin=True)
    assert raised.value.status_code == 404


def test_token_is_required_everywhere():
    server = start_broker(token=TOKEN)
    try:
        for query, header in (("", None), ("?token=wrong", None),
                              ("", ["Authorization: Bearer wrong"])):
            with pytest.raises(websocket.WebSocketBadStatusException) as raised:
                raw_client(server, "t", query, header=header or [])
            assert raised.value.status_code == 401
        for path in ("/stats", "/bus/t"):
            with pytest.raises(HTTPError) as raised:
                server.request(path, data=b"[]" if "bus" in path else None,
                                headers={"Authorization": "Bearer wrong"})
            assert raised.value.code == 401

        with_header = raw_client(server, "t",
                                 header=["Authorization: Bearer " + TOKEN])
        with_query = raw_client(server, "t", "?token=" + TOKEN)
        with_query.send('[1,"finished"]')
        assert receive_text(with_header) == '[1,"finished"]'
        assert server.post("t", '[2,"finished"]')[0] == 200
        assert receive_text(with_header) == '[2,"finished"]'
        with_header.close()
        with_query.close()
        assert wait_until(lambda: server.peers("t") == [])
        log_text = server.log()
    finally:
        server.cleanup()
    assert "rejected 127.0.0.1" in log_text
    assert "HTTP 401" in log_text
    assert "joined topic t" in log_text
    assert "left topic t" in log_text
    assert TOKEN not in log_text
    assert "wrong" not in log_text


def test_origin_outside_allow_list_is_rejected():
    server = start_broker(allowed_origins=["https://app.example"])
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as raised:
            raw_client(server, "o", origin="https://evil.example",
                       suppress_origin=False)
        assert raised.value.status_code == 403
        with pytest.raises(HTTPError) as raised:
            server.post("o", "[]", headers={"Origin": "https://evil.example"})
        assert raised.value.code == 403
        allowed = raw_client(server, "o", origin="https://app.example",
                             suppress_origin=False)
        allowed.close()
    finally:
        server.cleanup()


def run_broker_module(arguments, python=None, timeout=20):
    environment = dict(os.environ, PYTHONPATH=REPOSITORY)
    process = subprocess.Popen(
        [python or sys.executable, "-m", "job_notifier.broker"] + arguments,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    output, errors = process.communicate()
    return process.returncode, output.decode("utf-8"), errors.decode("utf-8")


@pytest.mark.skipif(sys.version_info >= (3,), reason="checks the Python 2 error")
def test_python2_gets_a_clear_error():
    status, _, errors = run_broker_module(["--port", "0"])
    assert status == 2
    assert "the broker needs Python 3.9 or newer" in errors


def test_busy_port_is_reported(broker_server):
    status, _, errors = run_broker_module(
        ["--port", str(broker_server.port)], python=broker_server.python)
    assert status == 2
    assert "cannot listen on 127.0.0.1:%d" % broker_server.port in errors


def test_token_file_is_read(tmp_path):
    from job_notifier.broker import read_token
    from job_notifier import ConfigurationError
    token_file = tmp_path / "token"
    token_file.write_bytes(b"from-file\n")
    assert read_token(str(token_file), environ={}) == "from-file"
    assert read_token(None, environ={"JOB_NOTIFIER_BROKER_TOKEN": "env"}) == "env"
    assert read_token(None, environ={}) is None
    token_file.write_bytes(b"\n")
    with pytest.raises(ConfigurationError):
        read_token(str(token_file), environ={})
    with pytest.raises(ConfigurationError):
        read_token(str(tmp_path / "missing"), environ={})


@python3_only
def test_broker_rejects_invalid_options():
    from job_notifier._broker_server import Broker
    from job_notifier import ConfigurationError
    for options in ({"max_message_bytes": 10}, {"ping_interval": 0},
                    {"keyfile": "key.pem"}):
        with pytest.raises(ConfigurationError):
            Broker(**options)


@python3_only
def test_broker_in_process_lists_peers():
    """The Broker object reports peers, as /stats does, without a subprocess."""
    import asyncio
    import threading
    from job_notifier._broker_server import Broker

    broker = Broker(port=0)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(broker.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert started.wait(5)
        url = "ws://127.0.0.1:%d/bus/inproc" % broker.port
        client = websocket.create_connection(url, timeout=5,
                                             suppress_origin=True)
        name = local_name(client)
        assert wait_until(lambda: broker.peers("inproc") == [name])
        client.close()
        assert wait_until(lambda: broker.peers("inproc") == [])
    finally:
        asyncio.run_coroutine_threadsafe(broker.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
