"""Events per second into one receiver while another process floods Redis.

The flood (``bench.flood``) runs in its own process and sends faster than
any receiver here reads. The rate is the number of events received divided
by the time from the flood's first PUBLISH to the last arrival, on the
wall clock that both processes share. So a receiver that delivers in
batches is not flattered, and process start-up is not counted.
"""

from __future__ import absolute_import, division, unicode_literals

import json
import subprocess
import sys
import time

from .raw import RedisReceiver
from .stats import PipeSignal, wall_clock
from .subprocesses import REPOSITORY, child_environment

# How long the receiver waits for the next event before it counts the
# rest as lost.
IDLE_TIMEOUT = 10.0



def start_flood(url, channel, count):
    return subprocess.Popen(
        [sys.executable, "-m", "bench.flood", url, channel, str(count)],
        cwd=REPOSITORY, env=child_environment(), stdout=subprocess.PIPE)


def _finish(process):
    """Wait for the flood to end; return the time it began sending, or None."""
    deadline = time.time() + IDLE_TIMEOUT
    while process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if process.poll() is None:
        process.kill()
    output, _ = process.communicate()
    try:
        return float(output.decode("ascii").strip())
    except ValueError:
        return None


def _summary(count, received_ids, started, last):
    expected = set(range(count))
    received = set(received_ids)
    rate = None
    if started is not None and last is not None and last > started:
        rate = round(len(received_ids) / (last - started))
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
    last = None
    process = start_flood(url, channel, count)
    try:
        while len(payloads) < count:
            received = raw.receive(IDLE_TIMEOUT)
            if not received:
                break
            last = wall_clock()
            payloads.extend(received)
    finally:
        started = _finish(process)
        raw.close()
    ids = [json.loads(payload)[0] for payload in payloads]
    return _summary(count, ids, started, last)


def measure_notifier(listener, url, channel, count):
    """Receive ``count`` events through one ``on("job")`` callback."""
    job_ids = []
    arrivals = [None]
    done = PipeSignal()

    def on_job(notifier, job_id, event):
        # Callbacks run one at a time on one thread, so no lock is needed.
        job_ids.append(job_id)
        arrivals[0] = wall_clock()
        if len(job_ids) == count:
            done.set()

    listener.on("job", on_job)
    listener.start()
    process = start_flood(url, channel, count)
    try:
        while not done.wait(IDLE_TIMEOUT):
            last = arrivals[0]
            if last is None or wall_clock() - last > IDLE_TIMEOUT:
                break
    finally:
        started = _finish(process)
        listener.unsubscribe("job", on_job)
        done.close()
    ids = [int(job_id) for job_id in job_ids]
    return _summary(count, ids, started, arrivals[0])
