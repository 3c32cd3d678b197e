"""One-at-a-time latency: raw round trip, notify to callback, notify to wait.

Sender and receiver live in one process on separate connections, so both
ends read the same clock. Between samples the sender pauses for 0.5 to
1.5 ms, at random, so every message meets an idle receiver, as an event
from a real worker does.
"""

from __future__ import absolute_import, unicode_literals

import random
import threading
import time

from job_notifier import WaitTimeout

from .stats import PipeSignal, now

# How long one sample may take before it counts as lost.
SAMPLE_TIMEOUT = 5.0


def pause():
    time.sleep(random.uniform(0.0005, 0.0015))


def measure_raw(raw, samples, warmup, prefix="raw"):
    """Time ``raw.send()`` to the payload's arrival in ``raw.receive()``.

    Return ``(seconds, lost)`` for the samples after the first ``warmup``.
    """
    durations = []
    lost = 0
    for index in range(warmup + samples):
        payload = '["%s-%d","finished"]' % (prefix, index)
        started = now()
        raw.send(payload)
        arrived = None
        deadline = time.time() + SAMPLE_TIMEOUT
        while arrived is None and time.time() < deadline:
            for received in raw.receive(SAMPLE_TIMEOUT):
                if received == payload:
                    arrived = now()
        if index >= warmup:
            if arrived is None:
                lost += 1
            else:
                durations.append(arrived - started)
        pause()
    return durations, lost


def measure_callback(listener, sender, samples, warmup, prefix="cb"):
    """Time ``sender.notify()`` to the start of a ``finished`` callback.

    ``listener`` and ``sender`` are two notifiers on one channel.
    """
    arrivals = {}
    signal = PipeSignal()

    def on_finished(notifier, job_id):
        arrivals[job_id] = now()
        signal.set()

    listener.on("finished", on_finished)
    listener.start()
    durations = []
    lost = 0
    try:
        for index in range(warmup + samples):
            job_id = "%s-%d" % (prefix, index)
            started = now()
            sender.notify(job_id, "finished")
            arrived = signal.wait(SAMPLE_TIMEOUT)
            if index >= warmup:
                if arrived and job_id in arrivals:
                    durations.append(arrivals[job_id] - started)
                else:
                    lost += 1
            pause()
    finally:
        listener.unsubscribe("finished", on_finished)
        signal.close()
    return durations, lost


class WaitingThread(object):
    """A thread that calls ``wait_for()`` for one job id after another.

    Before each sample the sender waits until the waiter is registered
    (``health()["pending_waiters"]`` reaches ``other_waiters + 1``) and
    then for 1 ms more, so the thread is blocked when the event is sent.
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
                self.returned[index] = now()
            except WaitTimeout:
                pass
            self.woken.set()

    def wait_registered(self, other_waiters):
        if not self.about_to_wait.wait(SAMPLE_TIMEOUT):
            return False
        deadline = time.time() + SAMPLE_TIMEOUT
        while time.time() < deadline:
            if self.listener.health()["pending_waiters"] > other_waiters:
                time.sleep(0.001)
                return True
            time.sleep(0.0002)
        return False

    def close(self):
        self.thread.join(SAMPLE_TIMEOUT * 2)
        self.about_to_wait.close()
        self.woken.close()


def measure_wait_for(listener, sender, samples, warmup, prefix="wait",
                     other_waiters=0):
    """Time ``sender.notify()`` to the return of ``wait_for()`` in a thread.

    ``other_waiters`` is the number of waiters of other jobs that are
    already pending on ``listener``.
    """
    listener.start()
    total = warmup + samples
    waiting = WaitingThread(listener, prefix, total)
    waiting.thread.start()
    durations = []
    lost = 0
    try:
        for index in range(total):
            registered = waiting.wait_registered(other_waiters)
            started = now()
            sender.notify(waiting.job_id(index), "finished")
            woken = waiting.woken.wait(SAMPLE_TIMEOUT * 2)
            returned = waiting.returned[index]
            if index >= warmup:
                if registered and woken and returned is not None:
                    durations.append(returned - started)
                else:
                    lost += 1
            pause()
    finally:
        waiting.close()
    return durations, lost
