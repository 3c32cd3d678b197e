"""One-at-a-time latency: raw round trip, notify to callback, notify to wait.

The sender is a separate process (``bench.sender_process``), as a worker
is, except on ``memory://``, which only works inside one process. A
sample runs from the wall-clock time taken just before the send call to
the wall-clock time at which the event arrived. Both processes run on one
machine and read the same clock. Between samples the receiver pauses for
0.5 to 1.5 ms, at random, so every message meets an idle receiver, as an
event from a real worker does.
"""

from __future__ import absolute_import, unicode_literals

import random
import threading
import time

from job_notifier import WaitTimeout

from .stats import PipeSignal, wall_clock

# How long one sample may take before it counts as lost.
SAMPLE_TIMEOUT = 5.0


def pause():
    time.sleep(random.uniform(0.0005, 0.0015))


class LocalSender(object):
    """A sender in this process, with the interface of ``SenderProcess``."""

    def __init__(self, notifier):
        self.notifier = notifier
        self._started = None

    def send(self, job_id):
        self._started = wall_clock()
        self.notifier.notify(job_id, "finished")

    def sent_at(self):
        return self._started

    def close(self):
        self.notifier.close()


def _record(durations, index, warmup, started, arrived):
    """Add one sample; return 1 if it was lost, else 0."""
    if index < warmup:
        return 0
    if arrived is None or started is None:
        return 1
    durations.append(arrived - started)
    return 0


def measure_thread_wake(samples, warmup):
    """Time ``Lock.release()`` here to ``acquire()`` returning in another thread.

    This is the one step that every notifier path adds to a raw round
    trip: the listener thread wakes the waiting thread or the callback
    thread. Return ``(seconds, lost)``.
    """
    total = warmup + samples
    lock = threading.Lock()
    lock.acquire()
    returned = [None] * total
    about_to_wait = PipeSignal()
    woken = PipeSignal()

    def run():
        for index in range(total):
            about_to_wait.set()
            lock.acquire()
            returned[index] = wall_clock()
            woken.set()

    thread = threading.Thread(target=run, name="bench-thread-wake")
    thread.daemon = True
    thread.start()
    durations = []
    lost = 0
    try:
        for index in range(total):
            about_to_wait.wait(SAMPLE_TIMEOUT)
            time.sleep(0.001)
            started = wall_clock()
            lock.release()
            woken.wait(SAMPLE_TIMEOUT)
            lost += _record(durations, index, warmup, started,
                            returned[index])
            pause()
    finally:
        thread.join(SAMPLE_TIMEOUT)
        about_to_wait.close()
        woken.close()
    return durations, lost


def measure_raw(receiver, sender, samples, warmup, prefix="raw"):
    """Time a raw send to the payload's arrival in ``receiver.receive()``.

    Return ``(seconds, lost)`` for the samples after the first ``warmup``.
    """
    durations = []
    lost = 0
    for index in range(warmup + samples):
        job_id = "%s-%d" % (prefix, index)
        expected = '["%s","finished"]' % job_id
        sender.send(job_id)
        arrived = None
        deadline = time.time() + SAMPLE_TIMEOUT
        while arrived is None and time.time() < deadline:
            for payload in receiver.receive(SAMPLE_TIMEOUT):
                if payload == expected:
                    arrived = wall_clock()
        lost += _record(durations, index, warmup, sender.sent_at(), arrived)
        pause()
    return durations, lost


def measure_callback(listener, sender, samples, warmup, prefix="callback"):
    """Time ``notify()`` to the start of an ``on("finished")`` callback."""
    arrivals = {}
    signal = PipeSignal()

    def on_finished(notifier, job_id):
        if job_id.startswith(prefix):
            arrivals[job_id] = wall_clock()
            signal.set()

    listener.on("finished", on_finished)
    listener.start()
    durations = []
    lost = 0
    try:
        for index in range(warmup + samples):
            job_id = "%s-%d" % (prefix, index)
            sender.send(job_id)
            signal.wait(SAMPLE_TIMEOUT)
            lost += _record(durations, index, warmup, sender.sent_at(),
                            arrivals.get(job_id))
            pause()
    finally:
        listener.unsubscribe("finished", on_finished)
        signal.close()
    return durations, lost


def is_registered(listener, job_id):
    """Return True once a waiter for ``job_id`` is registered on ``listener``.

    ``health()["pending_waiters"]`` would do, but it counts every waiter:
    with 10,000 of them, calling it just before a sample takes a
    millisecond and evicts the CPU caches, which would slow the very wake
    being measured. So this looks up the one job id in the dispatcher.
    """
    return job_id in listener._dispatcher._waiters


class WaitingThread(object):
    """A thread that calls ``wait_for()`` for one job id after another.

    Before each sample the receiver waits until the waiter is registered
    and then for 1 ms more, so the thread is blocked when the event is sent.
    """

    def __init__(self, listener, prefix, count):
        self.listener = listener
        self.prefix = prefix
        self.count = count
        self.returned = [None] * count
        self.about_to_wait = PipeSignal()
        self.woken = PipeSignal()
        self.thread = threading.Thread(target=self._run,
                                       name="bench-%s-waiter" % prefix)
        self.thread.daemon = True

    def job_id(self, index):
        return "%s-%d" % (self.prefix, index)

    def _run(self):
        for index in range(self.count):
            self.about_to_wait.set()
            try:
                self.listener.wait_for(self.job_id(index),
                                       timeout=SAMPLE_TIMEOUT)
                self.returned[index] = wall_clock()
            except WaitTimeout:
                pass
            self.woken.set()

    def wait_registered(self, index):
        if not self.about_to_wait.wait(SAMPLE_TIMEOUT):
            return False
        deadline = time.time() + SAMPLE_TIMEOUT
        while time.time() < deadline:
            if is_registered(self.listener, self.job_id(index)):
                time.sleep(0.001)
                return True
            time.sleep(0.0002)
        return False

    def close(self):
        self.thread.join(SAMPLE_TIMEOUT * 2)
        self.about_to_wait.close()
        self.woken.close()


def measure_wait_for(listener, sender, samples, warmup, prefix="wait"):
    """Time ``notify()`` to the return of ``wait_for()`` in another thread."""
    listener.start()
    total = warmup + samples
    waiting = WaitingThread(listener, prefix, total)
    waiting.thread.start()
    durations = []
    lost = 0
    try:
        for index in range(total):
            registered = waiting.wait_registered(index)
            sender.send(waiting.job_id(index))
            waiting.woken.wait(SAMPLE_TIMEOUT * 2)
            returned = waiting.returned[index] if registered else None
            lost += _record(durations, index, warmup, sender.sent_at(),
                            returned)
            pause()
    finally:
        waiting.close()
    return durations, lost
