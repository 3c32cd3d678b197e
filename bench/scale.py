"""Many threads waiting in one process, against as many plainly blocked ones.

For each thread count N the measurement alternates two kinds of round on
Redis, three of each in a full run, and pools the samples of each kind:

- baseline: N threads blocked on ``threading.Lock`` objects that never touch
  the notifier, then the wake latency of one more thread in ``wait_for()``;
- waiters: N threads blocked in ``wait_for()`` on N job ids, then the wake
  latency of one more waiter, the connections the listening notifier holds
  (from CLIENT LIST) and the CPU time the process burns while all of them
  idle.

Heap per waiter comes from a third and fourth round under ``tracemalloc``
(Python 3.4+ only): the heap growth per thread with N waiters, less the
growth per thread with N plainly blocked threads. Thread stacks are
allocated with mmap() and are not traced, so they are excluded.
"""

from __future__ import absolute_import, division, unicode_literals

import gc
import threading
import time

from job_notifier import Notifier, NotifierClosed, WaitTimeout

from .latency import measure_wait_for
from .sender_process import SenderProcess
from .stats import process_cpu_seconds, ratio, summarize

# Enough for the few frames of wait_for(); the default of 8 MiB would
# reserve 80 GiB of address space for 10,000 threads.
STACK_SIZE = 256 * 1024

# Waiters block with a timeout, as applications do: on Python 2.7 this is
# the path that must not poll.
WAITER_TIMEOUT = 3600

START_TIMEOUT = 300.0


class BlockedThreads(object):
    """N threads, each blocked on a lock of its own until ``release()``."""

    def __init__(self, count):
        self.count = count
        self.locks = []
        self.threads = []

    def start(self):
        for _ in range(self.count):
            lock = threading.Lock()
            lock.acquire()
            thread = threading.Thread(target=lock.acquire)
            thread.daemon = True
            thread.start()
            self.locks.append(lock)
            self.threads.append(thread)
        # A thread that has started runs straight into acquire(); give the
        # last ones time to get there.
        time.sleep(0.2)

    def release(self):
        for lock in self.locks:
            lock.release()
        _join_all(self.threads)


class WaitingThreads(object):
    """N threads, each blocked in ``wait_for()`` on a job id of its own."""

    def __init__(self, listener, count, prefix):
        self.listener = listener
        self.count = count
        self.prefix = prefix
        self.threads = []
        self.unexpected = []

    def _wait(self, job_id):
        try:
            self.listener.wait_for(job_id, timeout=WAITER_TIMEOUT)
        except NotifierClosed:
            pass
        except WaitTimeout as exc:
            self.unexpected.append(exc)

    def start(self):
        for index in range(self.count):
            thread = threading.Thread(
                target=self._wait, args=("%s-%d" % (self.prefix, index),))
            thread.daemon = True
            thread.start()
            self.threads.append(thread)
        deadline = time.time() + START_TIMEOUT
        while self.listener.health()["pending_waiters"] < self.count:
            if time.time() > deadline:
                raise RuntimeError("only %d of %d waiters registered within "
                                   "%d seconds" % (
                                       self.listener.health()["pending_waiters"],
                                       self.count, START_TIMEOUT))
            time.sleep(0.05)
        time.sleep(0.2)

    def release(self):
        """Close the listening notifier, which wakes every waiter."""
        self.listener.close()
        _join_all(self.threads)


def _join_all(threads):
    deadline = time.time() + START_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.time()))


def _connections(inspector):
    clients = inspector.client_list()
    subscribed = sum(1 for client in clients
                     if int(client.get("sub", 0)) or int(client.get("psub", 0)))
    return len(clients), subscribed


def _idle_cpu(seconds):
    """Return the fraction of one core this process used while idle."""
    before = process_cpu_seconds()
    time.sleep(seconds)
    return round((process_cpu_seconds() - before) / seconds, 4)


class ScaleBench(object):
    """The scale measurement on one Redis server."""

    def __init__(self, url, channel, wake_samples, warmup, idle_seconds,
                 rounds=1):
        import redis
        self.url = url
        self.channel = channel
        self.rounds = rounds
        self.wake_samples = max(1, wake_samples // rounds)
        self.warmup = max(1, warmup // rounds)
        self.idle_seconds = idle_seconds
        self.inspector = redis.Redis.from_url(url)
        self.sender = SenderProcess("notify", "redis", url, channel)

    def _listener(self):
        return Notifier.from_url(self.url, channel=self.channel).start()

    def _wake(self, listener, prefix):
        return measure_wait_for(listener, self.sender, self.wake_samples,
                                self.warmup, prefix=prefix)

    def baseline_round(self, count):
        threads = BlockedThreads(count)
        threads.start()
        listener = self._listener()
        try:
            idle_cpu = _idle_cpu(self.idle_seconds)
            wake = self._wake(listener, "plain-%d" % count)
        finally:
            listener.close()
            threads.release()
        return {"wake": wake, "idle_cpu": idle_cpu}

    def waiter_round(self, count):
        clients_before, _ = _connections(self.inspector)
        listener = self._listener()
        threads = WaitingThreads(listener, count, "idle-%d" % count)
        try:
            threads.start()
            clients_after, subscribed = _connections(self.inspector)
            idle_cpu = _idle_cpu(self.idle_seconds)
            wake = self._wake(listener, "extra-%d" % count)
        finally:
            threads.release()
        return {
            "wake": wake,
            "idle_cpu": idle_cpu,
            "connections": clients_after - clients_before,
            "subscribed_connections": subscribed,
            "early_timeouts": len(threads.unexpected),
        }

    def heap_per_thread(self, count, waiting):
        """Return the traced heap growth per thread, in bytes."""
        import tracemalloc
        listener = self._listener() if waiting else None
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            if waiting:
                threads = WaitingThreads(listener, count, "heap-%d" % count)
            else:
                threads = BlockedThreads(count)
            threads.start()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            threads.release()
        return (after - before) / count

    def run(self, count, heap):
        """Measure ``count`` threads in alternating baseline and waiter rounds.

        The samples of all rounds of a kind are pooled, so a change in the
        machine's load during the run weighs on both kinds alike.
        """
        previous_stack_size = threading.stack_size(STACK_SIZE)
        try:
            baselines = []
            waiters = []
            for _ in range(self.rounds):
                baselines.append(self.baseline_round(count))
                waiters.append(self.waiter_round(count))
            wake = _pool(waiters)
            baseline_wake = _pool(baselines)
            result = {
                "threads": count,
                "rounds": self.rounds,
                "connections": max(entry["connections"] for entry in waiters),
                "subscribed_connections": max(
                    entry["subscribed_connections"] for entry in waiters),
                "wake_p50": wake["p50"],
                "wake": wake,
                "baseline_wake_p50": baseline_wake["p50"],
                "baseline_wake": baseline_wake,
                "wake_ratio": ratio(wake["p50"], baseline_wake["p50"]),
                "idle_cpu": max(entry["idle_cpu"] for entry in waiters),
                "baseline_idle_cpu": max(entry["idle_cpu"]
                                         for entry in baselines),
                "early_timeouts": sum(entry["early_timeouts"]
                                      for entry in waiters),
                "heap_per_waiter": None,
                "heap_per_waiting_thread": None,
                "heap_per_blocked_thread": None,
            }
            if heap:
                waiting = self.heap_per_thread(count, waiting=True)
                blocked = self.heap_per_thread(count, waiting=False)
                result["heap_per_waiting_thread"] = round(waiting)
                result["heap_per_blocked_thread"] = round(blocked)
                result["heap_per_waiter"] = round(waiting - blocked)
            return result
        finally:
            threading.stack_size(previous_stack_size)

    def close(self):
        self.sender.close()
        self.inspector.connection_pool.disconnect()


def _pool(rounds):
    durations = [duration for entry in rounds for duration in entry["wake"][0]]
    lost = sum(entry["wake"][1] for entry in rounds)
    return summarize(durations, lost, keep_samples=False)


def measure_scale(url, channel, counts, wake_samples, warmup, idle_seconds,
                  rounds=1):
    """Return one result dict per thread count in ``counts``."""
    try:
        import tracemalloc  # noqa: F401 (Python 3.4+)
        heap = True
    except ImportError:
        heap = False
    bench = ScaleBench(url, channel, wake_samples, warmup, idle_seconds,
                       rounds)
    try:
        return [bench.run(count, heap) for count in counts]
    finally:
        bench.close()
