# -*- coding: utf-8 -*-
"""Notifier behaviour that every transport must show.

A transport's test module subclasses ``NotifierBehaviour`` and provides
the ``url`` fixture, plus ``send_raw`` for sending a payload that bypasses
the encoder. Class attributes describe what the transport can carry.
"""

from __future__ import absolute_import, unicode_literals

import logging
import os
import random
import threading
import time

import pytest
import six

from job_notifier._compat import BuiltinTimeoutError
from job_notifier import (ConfigurationError, JobEvent, Notifier,
                          NotifierClosed, WaitTimeout)

DELIVERY_TIMEOUT = 5.0


class Recorder(object):
    """Callback that records its calls and lets a test wait for a count."""

    def __init__(self):
        self.calls = []
        self._condition = threading.Condition()

    def __call__(self, *args, **kwargs):
        with self._condition:
            self.calls.append(args + ((kwargs,) if kwargs else ()))
            self._condition.notify_all()

    def wait_for_calls(self, count, timeout=DELIVERY_TIMEOUT):
        deadline = time.time() + timeout
        with self._condition:
            while len(self.calls) < count:
                remaining = deadline - time.time()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            return list(self.calls)


class NotifierBehaviour(object):
    """Tests shared by all transports; subclasses provide ``url``."""

    #: Whether send_raw can put bytes that are not UTF-8 on the channel.
    carries_binary = True
    #: Whether two processes can share the channel (false for memory://).
    cross_process = True
    #: Extra keyword options for Notifier.from_url().
    options = {}

    @pytest.fixture
    def channel(self, request):
        return "test_%d_%d" % (os.getpid(), random.randint(0, 10 ** 9))

    @pytest.fixture
    def notifier(self, url, channel):
        notifier = Notifier.from_url(url, channel=channel, **self.options)
        yield notifier
        notifier.close()

    @pytest.fixture
    def sender(self, url, channel):
        sender = Notifier.from_url(url, channel=channel, **self.options)
        yield sender
        sender.close()

    @pytest.fixture
    def send_raw(self, sender):
        return sender.transport.send

    @pytest.mark.parametrize("job_id, expected", [
        (42, "42"),
        ("42", "42"),
        ("jöb-ü", "jöb-ü"),
        (b"42", "42"),
    ])
    def test_callbacks_receive_text_ids(self, notifier, sender, job_id,
                                        expected):
        """Every callback kind gets the job id as text, whatever was sent."""
        on_finished = Recorder()
        once_finished = Recorder()
        on_job = Recorder()
        on_this_job = Recorder()
        notifier.on("finished", on_finished)
        notifier.once("finished", once_finished)
        notifier.on("job", on_job)
        notifier.on("job:%s" % expected, on_this_job)
        notifier.start()

        sender.notify(job_id, "finished")
        sender.notify(job_id, "finished")

        assert on_finished.wait_for_calls(2) == [(notifier, expected)] * 2
        assert on_job.wait_for_calls(2) == [(notifier, expected, "finished")] * 2
        assert on_this_job.wait_for_calls(2) == [
            (notifier, expected, "finished")] * 2
        assert once_finished.calls == [(notifier, expected)]
        for calls in (on_finished.calls, on_job.calls, once_finished.calls):
            for call in calls:
                assert type(call[1]) is six.text_type

    def test_every_event_reaches_its_callbacks(self, notifier, sender):
        """Each of the four events reaches its own callback and 'job'."""
        recorders = {}
        for event in ("enqueue", "dequeue", "finished", "failed"):
            recorders[event] = notifier.on(event, Recorder())
        on_job = notifier.on("job", Recorder())
        notifier.start()

        for event in ("enqueue", "dequeue", "finished", "failed"):
            sender.notify(7, event)

        assert sorted(call[2] for call in on_job.wait_for_calls(4)) == sorted(
            ["enqueue", "dequeue", "finished", "failed"])
        for event, recorder in recorders.items():
            assert recorder.wait_for_calls(1) == [(notifier, "7")], event

    def test_extras_reach_waiters_and_callbacks(self, notifier, sender):
        on_failed = notifier.on("failed", Recorder(), with_extras=True)
        notifier.start()
        threading.Timer(0.1, sender.notify, args=(
            "e1", "failed"), kwargs={"extras": {"error": "ValueError: bad"}}).start()

        event = notifier.wait_for("e1", timeout=DELIVERY_TIMEOUT)

        assert event == "failed"
        assert isinstance(event, JobEvent)
        assert event.extras == {"error": "ValueError: bad"}
        assert on_failed.wait_for_calls(1) == [
            (notifier, "e1", {"extras": {"error": "ValueError: bad"}})]

    def test_wait_for_returns_finished_and_failed(self, notifier, sender):
        notifier.start()
        for job_id, event in (("ok", "finished"), ("bad", "failed")):
            threading.Timer(0.05, sender.notify, args=(job_id, event)).start()
            assert notifier.wait_for(job_id, timeout=DELIVERY_TIMEOUT) == event

    def test_wait_for_ignores_other_jobs_and_events(self, notifier, sender):
        notifier.start()

        def send():
            sender.notify("other", "finished")
            sender.notify("mine", "dequeue")
            sender.notify("mine", "finished")

        threading.Timer(0.05, send).start()
        assert notifier.wait_for("mine", timeout=DELIVERY_TIMEOUT) == "finished"

    def test_wait_for_times_out(self, notifier):
        started = time.time()
        with pytest.raises(WaitTimeout) as raised:
            notifier.wait_for("never", timeout=0.3)
        elapsed = time.time() - started
        assert 0.25 <= elapsed < 2.0
        assert raised.value.job_id == "never"
        assert "never" in str(raised.value)
        assert notifier.health()["pending_waiters"] == 0

    def test_wait_timeout_is_builtin_timeout(self, notifier):
        """On Python 3, WaitTimeout is also the built-in TimeoutError."""
        with pytest.raises(BuiltinTimeoutError):
            notifier.wait_for("never", timeout=0.01)
        if not six.PY2:
            assert BuiltinTimeoutError is TimeoutError  # noqa: F821

    def test_wait_for_returns_at_once_when_check_reports(self, notifier):
        seen = []

        def check(job_id):
            seen.append(job_id)
            return "finished"

        started = time.time()
        assert notifier.wait_for(99, timeout=10, check=check) == "finished"
        assert time.time() - started < 1.0
        assert seen == ["99"]

    def test_check_with_unknown_state_raises(self, notifier):
        with pytest.raises(ConfigurationError) as raised:
            notifier.wait_for(1, timeout=1, check=lambda job_id: "done")
        assert "'done'" in str(raised.value)

    def test_eight_threads_wake_with_their_own_events(self, notifier, sender):
        """Jobs finishing in random order wake exactly their own waiters."""
        notifier.start()
        jobs = dict(("job-%d" % number, random.choice(["finished", "failed"]))
                    for number in range(8))
        results = {}
        errors = []

        def wait(job_id):
            try:
                results[job_id] = notifier.wait_for(job_id, timeout=10)
            except Exception as exc:  # recorded for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=wait, args=(job_id,))
                   for job_id in jobs]
        for thread in threads:
            thread.start()
        deadline = time.time() + 5
        while notifier.health()["pending_waiters"] < 8 and time.time() < deadline:
            time.sleep(0.01)
        order = list(jobs)
        random.shuffle(order)
        for job_id in order:
            sender.notify(job_id, jobs[job_id])
            time.sleep(random.uniform(0, 0.02))
        for thread in threads:
            thread.join(10)

        assert errors == []
        assert results == jobs

    def test_raising_callback_does_not_stop_others(self, notifier, sender,
                                                   caplog):
        caplog.set_level(logging.ERROR, logger="job_notifier")

        def broken(notifier, job_id):
            raise RuntimeError("broken callback")

        notifier.on("finished", broken)
        working = notifier.on("finished", Recorder())
        notifier.start()
        for number in range(3):
            sender.notify(number, "finished")

        assert len(working.wait_for_calls(3)) == 3
        deadline = time.time() + DELIVERY_TIMEOUT
        while notifier.health()["callback_errors"] < 3 and time.time() < deadline:
            time.sleep(0.01)
        assert notifier.health()["callback_errors"] == 3
        assert "broken callback" in caplog.text

    def test_unsubscribe_stops_callbacks(self, notifier, sender):
        first = notifier.on("finished", Recorder())
        second = notifier.on("finished", Recorder())
        marker = notifier.on("failed", Recorder())
        notifier.start()

        assert notifier.unsubscribe("finished", first) == 1
        sender.notify(1, "finished")
        sender.notify(1, "failed")
        marker.wait_for_calls(1)
        second.wait_for_calls(1)
        assert first.calls == []

        assert notifier.unsubscribe("finished") == 1
        assert notifier.health()["callbacks"] == 1

    def test_garbage_on_channel_is_dropped(self, notifier, send_raw, sender,
                                           caplog):
        """Malformed payloads are logged and dropped; good ones still arrive."""
        caplog.set_level(logging.WARNING, logger="job_notifier")
        on_job = notifier.on("job", Recorder())
        notifier.start()
        garbage = ["not json", "{\"a\": 1}", "[1]", "[1, \"exploded\"]",
                   "[null, \"finished\"]", "[1, \"finished\", 5]",
                   "[[1], \"finished\"]", "[true, \"finished\"]", "",
                   "[1.5, \"finished\"]", "x" * 100000]
        if self.carries_binary:
            garbage += [b"\xff\xfe[1,\"finished\"]", b"\x00\x01\x02"]
        for payload in garbage:
            send_raw(payload)
        sender.notify("good", "finished")

        calls = on_job.wait_for_calls(1)
        assert calls == [(notifier, "good", "finished")]
        assert notifier.health()["malformed_dropped"] == len(garbage)
        assert "malformed" in caplog.text

    def test_minion_notifier_payload(self, notifier, send_raw):
        """The two-element array with a numeric id that Perl sends is read."""
        on_finished = notifier.on("finished", Recorder())
        notifier.start()
        send_raw('[1,"finished"]')
        assert on_finished.wait_for_calls(1) == [(notifier, "1")]

    def test_watch_subscribes_before_the_job_starts(self, notifier, sender):
        with notifier.watch("w1") as watch:
            sender.notify("w1", "finished")
            assert watch.wait(timeout=DELIVERY_TIMEOUT) == "finished"
        assert notifier.health()["pending_waiters"] == 0

    def test_close_wakes_waiters(self, url, channel):
        notifier = Notifier.from_url(url, channel=channel, **self.options)
        notifier.start()
        errors = []

        def wait():
            try:
                notifier.wait_for("forever")
            except NotifierClosed as exc:
                errors.append(exc)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.2)
        started = time.time()
        notifier.close()
        thread.join(5)

        assert not thread.is_alive()
        assert len(errors) == 1
        assert time.time() - started < 1.5
        with pytest.raises(NotifierClosed):
            notifier.notify(1, "finished")

    def test_close_stops_threads_within_a_second(self, url, channel):
        before = set(threading.enumerate())
        notifier = Notifier.from_url(url, channel=channel, **self.options)
        notifier.on("finished", lambda notifier, job_id: None)
        notifier.start()
        notifier.notify(1, "finished")
        time.sleep(0.1)

        started = time.time()
        notifier.close()

        assert time.time() - started < 1.0
        leftover = [thread for thread in threading.enumerate()
                    if thread not in before
                    and thread.name.startswith("job-notifier")
                    and thread.name != "job-notifier-deadlines"]
        assert leftover == []

    def test_invalid_input_raises_clear_errors(self, notifier):
        with pytest.raises(ConfigurationError) as raised:
            notifier.notify(1, "exploded")
        assert "'exploded'" in str(raised.value)
        with pytest.raises(ConfigurationError):
            notifier.on("finish", lambda notifier, job_id: None)
        with pytest.raises(ConfigurationError):
            notifier.on("finished", "not callable")
        with pytest.raises(ConfigurationError):
            notifier.notify(None, "finished")
        with pytest.raises(ConfigurationError):
            notifier.wait_for(1, timeout=-1)
        with pytest.raises(ConfigurationError):
            notifier.notify(1, "finished", extras={"bad": object()})

    def test_forked_child_gets_its_own_listener(self, notifier, sender):
        """A child waits on a job through an inherited notifier; the parent too.

        On a transport that stays inside one process, the child sends the
        event to itself.
        """
        notifier.start()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.close(read_fd)
                notifier.start()
                os.write(write_fd, b"ready")
                if not self.cross_process:
                    threading.Timer(0.1, sender.notify,
                                    args=("child-job", "finished")).start()
                event = notifier.wait_for("child-job", timeout=10)
                status = 0 if event == "finished" else 2
            finally:
                os._exit(status)
        os.close(write_fd)
        assert os.read(read_fd, 5) == b"ready"
        os.close(read_fd)
        if self.cross_process:
            threading.Timer(0.1, sender.notify,
                            args=("child-job", "finished")).start()
        threading.Timer(0.2, sender.notify, args=("parent-job", "failed")).start()

        assert notifier.wait_for("parent-job", timeout=10) == "failed"
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == 0
        assert notifier.health()["connected"]
