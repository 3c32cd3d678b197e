"""The Flask extension and the Server-Sent Events stream."""

from __future__ import absolute_import, unicode_literals

import json
import logging
import os
import random
import socket
import sys
import threading
import time

import pytest

from behaviour import DELIVERY_TIMEOUT
from broker_server import wait_until
from flask_example import (EXAMPLE_DIRECTORY, Client, lifecycle_order, script,
                           start_flask_server, start_gunicorn, start_rq_worker)
from job_notifier import ConfigurationError, Notifier
from servers import RedisServer, free_port

flask = pytest.importorskip("flask")

from job_notifier.contrib.flask import JobNotifier  # noqa: E402
from job_notifier.sse import JobEventStream  # noqa: E402


# Helpers.

def unique_channel():
    return "flask_%d_%d" % (os.getpid(), random.randint(0, 10 ** 9))


def make_app(name="flask-test", **config):
    """Return an app with an event stream view and a blocking view."""
    app = flask.Flask(name)
    app.config.update(config)
    extension = JobNotifier(app)
    states = {}

    def check(job_id):
        return states.get(job_id)

    @app.route("/jobs/<job_id>/events")
    def events(job_id):
        return extension.event_stream(job_id, check=check)

    @app.route("/jobs/<job_id>/wait")
    def wait(job_id):
        timeout = flask.request.args.get("timeout", type=float)
        event = extension.wait_for_or_504(job_id, timeout=timeout,
                                          check=check)
        return flask.jsonify(job_id=job_id, event=event, extras=event.extras)

    app.job_states = states
    return app


def close_app(app):
    app.extensions["job_notifier"].notifier.close()


def notifier_of(app):
    return app.extensions["job_notifier"].notifier


def registry(app):
    """Return what a stream or a wait must leave as it found it."""
    health = notifier_of(app).health()
    return health["callbacks"], health["pending_waiters"]


def parse_sse(text):
    """Return the (event, data) pairs and the comments in SSE ``text``."""
    events, comments = [], []
    for block in text.split("\n\n"):
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        if name is not None:
            events.append((name, data))
    return events, comments


class StreamReader(object):
    """Read an unbuffered test client response chunk by chunk."""

    def __init__(self, response):
        self.response = response
        self._chunks = iter(response.response)
        self.text = ""

    def read_until(self, needle):
        while needle not in self.text:
            chunk = next(self._chunks)
            if isinstance(chunk, bytes):
                chunk = chunk.decode("utf-8")
            self.text += chunk
        return self.text

    def read_to_end(self):
        for chunk in self._chunks:
            if isinstance(chunk, bytes):
                chunk = chunk.decode("utf-8")
            self.text += chunk
        return self.text


def notify_later(sender, messages, delay=0.2):
    """Send ``messages`` of (job id, event, extras) from a thread."""
    def run():
        time.sleep(delay)
        for job_id, event, extras in messages:
            sender.notify(job_id, event, extras=extras)

    thread = threading.Thread(target=run)
    thread.daemon = True
    thread.start()
    return thread


@pytest.fixture
def memory_url():
    return "memory://%s" % unique_channel()


@pytest.fixture
def redis_app(redis_server):
    channel = unique_channel()
    app = make_app(JOB_NOTIFIER_URL=redis_server.url,
                   JOB_NOTIFIER_CHANNEL=channel,
                   JOB_NOTIFIER_HEARTBEAT_INTERVAL=0.2)
    sender = Notifier.from_url(redis_server.url, channel=channel)
    app.sender = sender
    yield app
    close_app(app)
    sender.close()


# Configuration.

def test_defaults_are_set_with_setdefault():
    app = flask.Flask("defaults")
    app.config["JOB_NOTIFIER_WAIT_TIMEOUT"] = 5
    JobNotifier(app, url="memory://defaults", heartbeat_interval=3)
    try:
        assert app.config["JOB_NOTIFIER_URL"] == "memory://defaults"
        assert app.config["JOB_NOTIFIER_CHANNEL"] == "job_notifier"
        assert app.config["JOB_NOTIFIER_WAIT_TIMEOUT"] == 5
        assert app.config["JOB_NOTIFIER_HEARTBEAT_INTERVAL"] == 3
        assert app.config["JOB_NOTIFIER_STREAM_TIMEOUT"] is None
        assert app.config["JOB_NOTIFIER_SUBSCRIBE_TIMEOUT"] == 10.0
        assert app.config["JOB_NOTIFIER_TRANSPORT_OPTIONS"] is None
    finally:
        close_app(app)


def test_app_config_wins_over_options():
    app = flask.Flask("precedence")
    app.config["JOB_NOTIFIER_URL"] = "memory://from-config"
    JobNotifier(app, url="memory://from-option")
    try:
        assert notifier_of(app).transport.url == "memory://from-config"
    finally:
        close_app(app)


def test_state_lives_in_app_extensions():
    extension = JobNotifier()
    app = flask.Flask("state")
    app.config["JOB_NOTIFIER_URL"] = "memory://state"
    extension.init_app(app)
    try:
        state = app.extensions["job_notifier"]
        assert isinstance(state.notifier, Notifier)
        assert not hasattr(extension, "app")
        with app.app_context():
            assert extension.notifier is state.notifier
    finally:
        close_app(app)


def test_listener_starts_on_first_use(memory_url):
    app = make_app(JOB_NOTIFIER_URL=memory_url)
    try:
        assert not notifier_of(app).health()["listening"]
        response = app.test_client().get("/jobs/1/wait?timeout=0.1")
        assert response.status_code == 504
        assert notifier_of(app).health()["listening"]
    finally:
        close_app(app)


def test_two_apps_with_different_urls(redis_server, memory_url):
    """Each app listens on its own URL and receives only its own events."""
    channel = unique_channel()
    redis_app = make_app("redis-app", JOB_NOTIFIER_URL=redis_server.url,
                         JOB_NOTIFIER_CHANNEL=channel)
    memory_app = make_app("memory-app", JOB_NOTIFIER_URL=memory_url)
    redis_sender = Notifier.from_url(redis_server.url, channel=channel)
    memory_sender = Notifier.from_url(memory_url)
    try:
        assert notifier_of(redis_app) is not notifier_of(memory_app)
        assert notifier_of(redis_app).transport.name == "redis"
        assert notifier_of(memory_app).transport.name == "memory"

        notify_later(redis_sender, [("r1", "finished", None)], delay=0.3)
        response = redis_app.test_client().get("/jobs/r1/wait?timeout=5")
        assert response.status_code == 200
        assert response.get_json()["event"] == "finished"

        notify_later(memory_sender, [("m1", "failed", {"error": "boom"})],
                     delay=0.3)
        response = memory_app.test_client().get("/jobs/m1/wait?timeout=5")
        assert response.status_code == 200
        assert response.get_json()["event"] == "failed"
        assert response.get_json()["extras"] == {"error": "boom"}

        # An event on the memory bus never reaches the Redis app.
        notify_later(memory_sender, [("r2", "finished", None)], delay=0.1)
        response = redis_app.test_client().get("/jobs/r2/wait?timeout=0.8")
        assert response.status_code == 504
    finally:
        for closable in (redis_app, memory_app):
            close_app(closable)
        redis_sender.close()
        memory_sender.close()


def test_one_extension_serves_two_apps(memory_url):
    extension = JobNotifier(heartbeat_interval=2)
    first, second = flask.Flask("first"), flask.Flask("second")
    first.config["JOB_NOTIFIER_URL"] = memory_url
    second.config["JOB_NOTIFIER_URL"] = memory_url + "-other"
    extension.init_app(first)
    extension.init_app(second)
    try:
        with first.app_context():
            first_notifier = extension.notifier
        with second.app_context():
            second_notifier = extension.notifier
        assert first_notifier is not second_notifier
        assert second_notifier.transport.url == memory_url + "-other"
        assert second.config["JOB_NOTIFIER_HEARTBEAT_INTERVAL"] == 2
    finally:
        close_app(first)
        close_app(second)


@pytest.mark.parametrize("key, value, expected", [
    ("JOB_NOTIFIER_URL", "amqp://127.0.0.1/", "JOB_NOTIFIER_URL"),
    ("JOB_NOTIFIER_URL", "127.0.0.1:6379", "no scheme"),
    ("JOB_NOTIFIER_CHANNEL", "", "invalid channel"),
    ("JOB_NOTIFIER_CHANNEL", None, "JOB_NOTIFIER_CHANNEL is None"),
    ("JOB_NOTIFIER_WAIT_TIMEOUT", 0, "invalid JOB_NOTIFIER_WAIT_TIMEOUT 0"),
    ("JOB_NOTIFIER_WAIT_TIMEOUT", "30", "number of seconds"),
    ("JOB_NOTIFIER_HEARTBEAT_INTERVAL", -1, "number of seconds > 0"),
    ("JOB_NOTIFIER_HEARTBEAT_INTERVAL", True, "number of seconds > 0"),
    ("JOB_NOTIFIER_STREAM_TIMEOUT", float("nan"), "number of seconds > 0"),
    ("JOB_NOTIFIER_TRANSPORT_OPTIONS", "ping_interval=1", "dict"),
    ("JOB_NOTIFIER_TRANSPORT_OPTIONS", {"no_such_option": 1},
     "invalid option"),
])
def test_invalid_config_fails_at_init_app(key, value, expected):
    app = flask.Flask("invalid")
    app.config["JOB_NOTIFIER_URL"] = "memory://invalid"
    app.config[key] = value
    with pytest.raises(ConfigurationError) as info:
        JobNotifier(app)
    assert expected in str(info.value)
    assert "job_notifier" not in app.extensions


def test_unknown_option_is_rejected():
    with pytest.raises(ConfigurationError) as info:
        JobNotifier(timeout=3)
    assert "unknown JobNotifier option timeout" in str(info.value)
    assert "wait_timeout" in str(info.value)


def test_second_init_app_is_rejected(memory_url):
    app = flask.Flask("twice")
    app.config["JOB_NOTIFIER_URL"] = memory_url
    extension = JobNotifier(app)
    try:
        with pytest.raises(ConfigurationError) as info:
            extension.init_app(app)
        assert "already registered" in str(info.value)
    finally:
        close_app(app)


def test_unregistered_app_gets_a_clear_error():
    extension = JobNotifier()
    app = flask.Flask("unregistered")
    with app.app_context():
        with pytest.raises(ConfigurationError) as info:
            extension.notifier
    assert "init_app(app)" in str(info.value)


def test_memory_url_logs_a_warning(caplog, memory_url):
    app = flask.Flask("memory-warning")
    app.config["JOB_NOTIFIER_URL"] = memory_url
    with caplog.at_level(logging.WARNING, logger="job_notifier"):
        JobNotifier(app)
    close_app(app)
    assert "set JOB_NOTIFIER_URL" in caplog.text


# The blocking pattern.

def test_wait_returns_the_event(redis_app):
    sender = redis_app.sender
    notify_later(sender, [("fast", "dequeue", None),
                          ("fast", "finished", {"queue": "default"})])
    response = redis_app.test_client().get("/jobs/fast/wait?timeout=5")
    assert response.status_code == 200
    assert response.get_json() == {"job_id": "fast", "event": "finished",
                                   "extras": {"queue": "default"}}
    assert registry(redis_app) == (0, 0)


def test_wait_answers_504_after_the_timeout(redis_app):
    started = time.time()
    response = redis_app.test_client().get("/jobs/slow/wait?timeout=0.5")
    elapsed = time.time() - started
    assert response.status_code == 504
    body = response.get_data(as_text=True)
    assert "Job slow did not finish within 0.5 seconds" in body
    assert elapsed >= 0.5
    assert registry(redis_app) == (0, 0)


def test_wait_timeout_defaults_to_config(memory_url):
    app = make_app(JOB_NOTIFIER_URL=memory_url, JOB_NOTIFIER_WAIT_TIMEOUT=0.3)
    try:
        response = app.test_client().get("/jobs/slow/wait")
        assert response.status_code == 504
        assert "within 0.3 seconds" in response.get_data(as_text=True)
    finally:
        close_app(app)


def test_wait_reports_a_job_that_ended_before(redis_app):
    redis_app.job_states["done"] = "finished"
    response = redis_app.test_client().get("/jobs/done/wait?timeout=5")
    assert response.status_code == 200
    assert response.get_json()["event"] == "finished"


# The event stream.

def test_stream_yields_events_in_order_and_closes(redis_app):
    before = registry(redis_app)
    response = redis_app.test_client().get("/jobs/42/events", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    reader = StreamReader(response)
    reader.read_until(": subscribed to job 42")
    assert registry(redis_app) == (before[0] + 1, before[1])

    notify_later(redis_app.sender, [
        ("other", "finished", None),
        (42, "enqueue", {"queue": "default"}),
        (42, "dequeue", None),
        (42, "finished", {"queue": "default"}),
        (42, "dequeue", None),
    ])
    text = reader.read_to_end()
    response.close()

    events, comments = parse_sse(text)
    assert [name for name, _ in events] == ["enqueue", "dequeue", "finished"]
    assert events[0][1] == {"job_id": "42", "event": "enqueue",
                            "extras": {"queue": "default"},
                            "replayed": False}
    assert events[2][1]["extras"] == {"queue": "default"}
    assert comments[0] == "subscribed to job 42"
    assert registry(redis_app) == before


def test_stream_sends_heartbeats(redis_app):
    response = redis_app.test_client().get("/jobs/7/events", buffered=False)
    reader = StreamReader(response)
    text = reader.read_until(": heartbeat\n\n: heartbeat\n\n")
    response.close()
    assert parse_sse(text)[0] == []
    assert registry(redis_app) == (0, 0)


def test_dropped_client_leaves_registry_as_it_was(redis_app):
    before = registry(redis_app)
    response = redis_app.test_client().get("/jobs/9/events", buffered=False)
    StreamReader(response).read_until("subscribed")
    assert registry(redis_app) == (before[0] + 1, before[1])
    response.close()
    assert registry(redis_app) == before


def test_stream_closed_before_first_chunk_unsubscribes(redis_app):
    """A server may close the body without reading it when the client left."""
    before = registry(redis_app)
    response = redis_app.test_client().get("/jobs/10/events", buffered=False)
    response.close()
    assert registry(redis_app) == before


def test_stream_replays_a_job_that_already_ended(redis_app):
    redis_app.job_states["old"] = "failed"
    response = redis_app.test_client().get("/jobs/old/events")
    events, _ = parse_sse(response.get_data(as_text=True))
    assert events == [("failed", {"job_id": "old", "event": "failed",
                                  "extras": {}, "replayed": True})]
    assert registry(redis_app) == (0, 0)


def test_stream_drops_duplicate_of_replayed_state(redis_app):
    """A notification already reported by the stored status is not repeated."""
    redis_app.job_states["busy"] = "dequeue"
    response = redis_app.test_client().get("/jobs/busy/events",
                                           buffered=False)
    reader = StreamReader(response)
    reader.read_until("event: dequeue")
    notify_later(redis_app.sender, [("busy", "enqueue", None),
                                    ("busy", "dequeue", None),
                                    ("busy", "finished", None)], delay=0.1)
    events, _ = parse_sse(reader.read_to_end())
    response.close()
    assert [(name, data["replayed"]) for name, data in events] == [
        ("dequeue", True), ("finished", False)]


def test_check_error_fails_the_request(memory_url):
    app = flask.Flask("check-error")
    app.config["JOB_NOTIFIER_URL"] = memory_url
    extension = JobNotifier(app)

    def broken_check(job_id):
        raise RuntimeError("status store is down")

    @app.route("/events")
    def events():
        return extension.event_stream("1", check=broken_check)

    try:
        response = app.test_client().get("/events")
        assert response.status_code == 500
        assert registry(app) == (0, 0)
    finally:
        close_app(app)


def test_stream_answers_503_when_not_subscribed():
    port = free_port()
    app = make_app(JOB_NOTIFIER_URL="redis://127.0.0.1:%d/0" % port,
                   JOB_NOTIFIER_SUBSCRIBE_TIMEOUT=0.5)
    try:
        response = app.test_client().get("/jobs/1/events")
        assert response.status_code == 503
        assert "not connected" in response.get_data(as_text=True)
        assert registry(app) == (0, 0)
    finally:
        close_app(app)


def test_stream_timeout_ends_the_stream(memory_url):
    app = make_app(JOB_NOTIFIER_URL=memory_url,
                   JOB_NOTIFIER_STREAM_TIMEOUT=0.3)
    try:
        response = app.test_client().get("/jobs/3/events")
        events, _ = parse_sse(response.get_data(as_text=True))
        assert events == [("timeout", {"job_id": "3", "timeout": 0.3})]
        assert registry(app) == (0, 0)
    finally:
        close_app(app)


def test_details_are_added_to_the_data(memory_url):
    app = flask.Flask("details")
    app.config["JOB_NOTIFIER_URL"] = memory_url
    extension = JobNotifier(app)
    sender = Notifier.from_url(memory_url)

    def details(job_id, event):
        if event == "dequeue":
            raise RuntimeError("no details for dequeue")
        return {"result": 3, "event": "overridden"}

    @app.route("/events")
    def events():
        return extension.event_stream("5", details=details)

    try:
        response = app.test_client().get("/events", buffered=False)
        reader = StreamReader(response)
        reader.read_until("subscribed")
        notify_later(sender, [("5", "dequeue", None), ("5", "finished", None)])
        events, _ = parse_sse(reader.read_to_end())
        response.close()
        assert events == [
            ("dequeue", {"job_id": "5", "event": "dequeue", "extras": {},
                         "replayed": False}),
            ("finished", {"job_id": "5", "event": "finished", "extras": {},
                          "replayed": False, "result": 3}),
        ]
    finally:
        close_app(app)
        sender.close()


def test_stream_rechecks_after_a_reconnect(fresh_redis_server):
    """A job that ended while Redis was down is still reported."""
    server = fresh_redis_server
    notifier = Notifier.from_url(server.url, channel=unique_channel())
    states = {}
    try:
        stream = JobEventStream(notifier, "lost", check=states.get,
                                heartbeat_interval=0.2)
        chunks = iter(stream)
        assert next(chunks).startswith(": subscribed")
        server.restart(down_seconds=0.3)
        # The worker's notification was sent while no listener was subscribed.
        states["lost"] = "finished"
        text = ""
        deadline = time.time() + DELIVERY_TIMEOUT
        for chunk in chunks:
            text += chunk
            assert time.time() < deadline
        events, _ = parse_sse(text)
        assert [(name, data["replayed"]) for name, data in events] == [
            ("finished", True)]
        assert notifier.health()["reconnects"] >= 1
        assert stream.closed
    finally:
        notifier.close()


def test_stream_rejects_invalid_arguments(memory_url):
    notifier = Notifier.from_url(memory_url)
    try:
        with pytest.raises(ConfigurationError):
            JobEventStream(notifier, "1", heartbeat_interval=0)
        with pytest.raises(ConfigurationError):
            JobEventStream(notifier, None)
        with pytest.raises(ConfigurationError) as info:
            JobEventStream(notifier, "1", check=lambda job_id: "done")
        assert "returned 'done'" in str(info.value).replace("u'", "'")
        assert notifier.health()["callbacks"] == 0
        stream = JobEventStream(notifier, "1")
        iter(stream)
        with pytest.raises(RuntimeError):
            iter(stream)
        stream.close()
    finally:
        notifier.close()


# A real HTTP server, where the client really goes away.

class ThreadedServer(object):
    """A Werkzeug development server on a free port, in a thread."""

    def __init__(self, app):
        from werkzeug.serving import make_server
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.daemon = True

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def open_stream(self, path):
        """Send a GET and return the socket once the stream has begun."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Accept: text/event-stream\r\n\r\n" % path)
                     .encode("ascii"))
        received = b""
        while b"subscribed" not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream early: %r" % received
            received += chunk
        return sock, received


def test_disconnected_browser_is_cleaned_up(redis_app):
    """Heartbeats find a client that went away; its subscription goes."""
    before = registry(redis_app)
    with ThreadedServer(redis_app) as server:
        first, _ = server.open_stream("/jobs/a/events")
        second, _ = server.open_stream("/jobs/b/events")
        assert registry(redis_app) == (before[0] + 2, before[1])

        first.close()
        assert wait_until(lambda: registry(redis_app)
                          == (before[0] + 1, before[1]))

        redis_app.sender.notify("b", "finished")
        received = b""
        while b"event: finished" not in received:
            chunk = second.recv(4096)
            assert chunk
            received += chunk
        second.close()
        assert wait_until(lambda: registry(redis_app) == before)


# The example app with a real rq worker.

@pytest.fixture(scope="module")
def example_redis():
    """A redis-server of this module's own, so no other worker takes jobs."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def example_worker(example_redis):
    worker = start_rq_worker(example_redis.url)
    yield worker
    worker.cleanup()


@pytest.fixture
def example_app(example_redis, example_worker):
    if EXAMPLE_DIRECTORY not in sys.path:
        sys.path.insert(0, EXAMPLE_DIRECTORY)
    import app as example_module

    app = example_module.create_app({"TESTING": True,
                                     "REDIS_URL": example_redis.url})
    yield app
    close_app(app)


def test_blocking_view_returns_the_result(example_app):
    response = example_app.test_client().get("/add?a=2&b=3&seconds=0.1")
    assert response.status_code == 200
    assert response.get_json()["result"] == 5
    assert response.get_json()["event"] == "finished"
    assert registry(example_app) == (0, 0)


def test_blocking_view_answers_504_for_a_slow_job(example_app):
    client = example_app.test_client()
    response = client.get("/add?seconds=1.5&timeout=0.3")
    assert response.status_code == 504
    body = response.get_data(as_text=True)
    assert "did not finish within 0.3 seconds" in body
    assert registry(example_app) == (0, 0)

    # The worker still runs the job; a later wait gets its result.
    response = client.get("/add?a=1&b=1&seconds=0&timeout=10")
    assert response.status_code == 200
    assert response.get_json()["result"] == 2


def test_blocking_view_reports_a_failed_job(example_app):
    # The job fails after the wait has subscribed, so the notification with
    # the error ends the wait rather than the stored status.
    response = example_app.test_client().get("/add?seconds=1&fail=1")
    assert response.status_code == 500
    assert response.get_json()["event"] == "failed"
    assert response.get_json()["error"].startswith(
        "ValueError: failed on purpose")


def test_example_stream_subscribes_then_starts(example_app):
    client = example_app.test_client()
    job = client.post("/jobs").get_json()
    response = client.get(job["events_url"], buffered=False)
    reader = StreamReader(response)
    reader.read_until(": subscribed")

    started = client.post(job["start_url"], json={"a": 4, "b": 5,
                                                  "seconds": 0.2})
    assert started.status_code == 202
    events, _ = parse_sse(reader.read_to_end())
    response.close()

    assert lifecycle_order(name for name, _ in events) == [
        "enqueue", "dequeue", "finished"]
    assert not any(data["replayed"] for _, data in events)
    assert events[-1][1]["result"] == 9
    assert events[-1][1]["extras"]["queue"] == "default"
    assert registry(example_app) == (0, 0)

    again = client.post(job["start_url"], json={})
    assert again.status_code == 409


def test_example_stream_of_an_ended_job(example_app):
    client = example_app.test_client()
    finished = client.get("/add?a=20&b=22&seconds=0").get_json()
    response = client.get("/jobs/%s/events" % finished["job_id"])
    events, _ = parse_sse(response.get_data(as_text=True))
    assert [(name, data["replayed"]) for name, data in events] == [
        ("finished", True)]
    assert events[0][1]["result"] == 42


def test_example_rejects_invalid_requests(example_app):
    client = example_app.test_client()
    assert client.get("/jobs/not-a-uuid/events").status_code == 404
    assert client.get("/add?seconds=-1").status_code == 400
    assert client.get("/add?a=nan").status_code == 400
    assert client.get("/add?timeout=1000").status_code == 400


def numsub(server, channel):
    result = dict(server.client().pubsub_numsub(channel))
    return result.get(channel.encode("utf-8"), result.get(channel, 0))


def served_by(log, path):
    """Return the pids in the access log lines of requests for ``path``."""
    pids = []
    for line in log.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] == path:
            pids.append(fields[0])
    return pids


@pytest.mark.skipif(script("gunicorn") is None,
                    reason="gunicorn is not installed in this virtualenv; "
                           "make test installs it")
def test_gunicorn_preload_workers_listen_apart(example_redis, example_worker):
    """Under --preload -w 2 each worker subscribes on its own and streams."""
    server, port = start_gunicorn(example_redis.url, workers=2)
    client = Client(port)
    streams = []
    try:
        assert numsub(example_redis, "job_notifier") == 0

        # A sync worker that holds a stream takes no other request, so the
        # second stream is served by the other worker.
        first = client.request("POST", "/jobs")[1]
        streams.append(client.open_stream(first["events_url"]))
        assert client.request("POST", first["start_url"],
                              {"a": 1, "b": 2, "seconds": 1.0})[0] == 202
        second = client.request("POST", "/jobs")[1]
        streams.append(client.open_stream(second["events_url"]))
        assert numsub(example_redis, "job_notifier") == 2
        assert client.request("POST", second["start_url"],
                              {"a": 3, "b": 4, "seconds": 0})[0] == 202

        results = []
        for stream in streams:
            # The server ends each response after the finished event.
            events, _ = parse_sse(stream.read_to_end())
            assert lifecycle_order(name for name, _ in events) == [
                "enqueue", "dequeue", "finished"], stream.text
            results.append(events[-1][1]["result"])
        assert results == [3, 7]
    finally:
        for stream in streams:
            stream.close()
        # Gunicorn writes an access log line after the response ends.
        server.stop()
        log = server.log()
        server.cleanup()

    first_pids = served_by(log, first["events_url"])
    second_pids = served_by(log, second["events_url"])
    assert len(first_pids) == 1
    assert len(second_pids) == 1
    assert first_pids != second_pids


def test_job_helpers_need_a_connection_for_an_id(example_app):
    import app as example_module

    with example_app.test_request_context():
        with pytest.raises(ConfigurationError) as info:
            example_module.job_notifier.job_event_stream("some-id")
        assert "connection=" in str(info.value)
        with pytest.raises(ConfigurationError):
            example_module.job_notifier.wait_for_job_or_504("some-id")
    assert registry(example_app) == (0, 0)


def test_reloader_child_listens_alone(example_redis, example_worker):
    """Under flask run --reload only the serving child subscribes."""
    server, port = start_flask_server(example_redis.url, reload=True)
    client = Client(port)
    try:
        assert numsub(example_redis, "job_notifier") == 0
        job = client.request("POST", "/jobs")[1]
        stream = client.open_stream(job["events_url"])
        try:
            assert client.request("POST", job["start_url"],
                                  {"seconds": 0})[0] == 202
            events, _ = parse_sse(stream.read_to_end())
        finally:
            stream.close()
        assert lifecycle_order(name for name, _ in events) == [
            "enqueue", "dequeue", "finished"]

        status, health = client.request("GET", "/health")
        assert status == 200
        assert health["pid"] != server.process.pid
        assert health["notifier"]["listening"]
        assert numsub(example_redis, "job_notifier") == 1
    finally:
        server.cleanup()
