"""Events per second into one receiver while another process floods Redis.

The flood (``bench.flood``) runs in its own process and sends faster than
any receiver here reads. The rate is the number of events received, less
one, divided by the time from the first to the last arrival, so process
start-up is not counted.
"""

from __future__ import absolute_import, division, unicode_literals

import json
import os
import subprocess
import sys
import threading

from .raw import RedisReceiver
from .stats import PipeSignal, now

# How long the receiver waits for the next event before it counts the
# rest as lost.
IDLE_TIMEOUT = 10.0

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_flood(url, channel, count):
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [REPOSITORY] + [path for path in
                        [environment.get("PYTHONPATH")] if path])
    return subprocess.Popen(
        [sys.executable, "-m", "bench.flood", url, channel, str(count)],
        cwd=REPOSITORY, env=environment)


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()


def _summary(count, received_ids, first, last):
    expected = set(range(count))
    received = set(received_ids)
    rate = None
    if first is not None and last is not None and last > first:
        rate = round((len(received_ids) - 1) / (last - first))
    return {
        "events": count,
        "received": len(received_ids),
        "lost": len(expected - received),
        "duplicates": len(received_ids) - len(received),
        "events_per_second": rate,
    }


def measure_raw_loop(url, channel, count):
    """Receive ``count`` events with a plain ``get_message()`` loop.

    The loop keeps each payload and parses the ids only after the last
    arrival, so the timed part is redis-py's receive path alone.
    """
    raw = RedisReceiver(url, channel)
    payloads = []
    first = last = None
    process = start_flood(url, channel, count)
    try:
        while len(payloads) < count:
            received = raw.receive(IDLE_TIMEOUT)
            if not received:
                break
            last = now()
            if first is None:
                first = last
            payloads.extend(received)
    finally:
        _stop(process)
        raw.close()
    ids = [json.loads(payload)[0] for payload in payloads]
    return _summary(count, ids, first, last)


def measure_notifier(listener, url, channel, count):
    """Receive ``count`` events through one ``on("job")`` callback."""
    job_ids = []
    times = []
    done = PipeSignal()
    lock = threading.Lock()

    def on_job(notifier, job_id, event):
        with lock:
            job_ids.append(job_id)
            times.append(now())
            if len(job_ids) == count:
                done.set()

    listener.on("job", on_job)
    listener.start()
    process = start_flood(url, channel, count)
    try:
        while not done.wait(IDLE_TIMEOUT):
            with lock:
                if len(job_ids) == count or not times or (
                        now() - times[-1] > IDLE_TIMEOUT):
                    break
    finally:
        _stop(process)
        listener.unsubscribe("job", on_job)
        done.close()
    with lock:
        ids = [int(job_id) for job_id in job_ids]
        first = times[0] if times else None
        last = times[-1] if times else None
    return _summary(count, ids, first, last)
