"""Batched hand-over from the listener to the callback thread."""

from __future__ import absolute_import, unicode_literals

import os
import threading
import time

from behaviour import Recorder
from job_notifier import Notifier
from job_notifier.dispatcher import _CallbackQueue
from job_notifier.transports.redis import MAX_REPLIES_PER_RECEIVE


def test_callback_queue_keeps_order():
    queue = _CallbackQueue()
    queue.put_all([1, 2])
    queue.put_all([3])
    assert queue.qsize() == 3
    assert [queue.get() for _ in range(3)] == [1, 2, 3]
    assert queue.qsize() == 0


def test_callback_queue_wakes_blocked_consumer():
    queue = _CallbackQueue()
    received = []

    def consume():
        for _ in range(2):
            received.append(queue.get())

    consumer = threading.Thread(target=consume)
    consumer.daemon = True
    consumer.start()
    time.sleep(0.1)
    queue.put_all(["first"])
    time.sleep(0.1)
    queue.put_all(["second"])
    consumer.join(5)
    assert not consumer.is_alive()
    assert received == ["first", "second"]


def test_callback_queue_many_producers():
    """Items from several producers all arrive once, each producer's in order."""
    queue = _CallbackQueue()
    producers = 4
    per_producer = 2000
    received = []

    def consume():
        for _ in range(producers * per_producer):
            received.append(queue.get())

    def produce(number):
        for index in range(0, per_producer, 10):
            queue.put_all([(number, index + offset) for offset in range(10)])

    consumer = threading.Thread(target=consume)
    consumer.daemon = True
    consumer.start()
    threads = [threading.Thread(target=produce, args=(number,))
               for number in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    consumer.join(10)
    assert not consumer.is_alive()
    assert len(received) == producers * per_producer
    for number in range(producers):
        own = [index for producer, index in received if producer == number]
        assert own == list(range(per_producer))


def test_burst_reaches_callbacks_in_order(redis_server):
    channel = "burst_%d" % os.getpid()
    notifier = Notifier.from_url(redis_server.url, channel=channel)
    try:
        recorder = notifier.on("job", Recorder())
        notifier.start()
        client = redis_server.client()
        pipeline = client.pipeline(transaction=False)
        for index in range(1000):
            pipeline.publish(channel, '[%d,"finished"]' % index)
        pipeline.execute()
        calls = recorder.wait_for_calls(1000, timeout=20)
        assert [job_id for _, job_id, _ in calls] == [
            "%d" % index for index in range(1000)]
    finally:
        notifier.close()


def test_redis_receive_returns_at_most_a_batch(redis_server):
    """A backlog comes out in batches of MAX_REPLIES_PER_RECEIVE, in order."""
    channel = "backlog_%d" % os.getpid()
    notifier = Notifier.from_url(redis_server.url, channel=channel)
    subscription = notifier.transport.open_subscription()
    read_fd, write_fd = os.pipe()
    try:
        total = MAX_REPLIES_PER_RECEIVE * 2 + 50
        client = redis_server.client()
        pipeline = client.pipeline(transaction=False)
        for index in range(total):
            pipeline.publish(channel, '[%d,"finished"]' % index)
        pipeline.execute()
        time.sleep(0.2)

        batches = []
        deadline = time.time() + 10
        while sum(len(batch) for batch in batches) < total:
            assert time.time() < deadline, "only %d of %d payloads" % (
                sum(len(batch) for batch in batches), total)
            batch = subscription.receive(1.0, read_fd)
            if batch:
                batches.append(batch)

        assert max(len(batch) for batch in batches) == MAX_REPLIES_PER_RECEIVE
        payloads = [payload for batch in batches for payload in batch]
        expected = ['[%d,"finished"]' % index for index in range(total)]
        assert [payload.decode("utf-8") for payload in payloads] == expected
    finally:
        subscription.close()
        notifier.close()
        os.close(read_fd)
        os.close(write_fd)


def test_redis_receive_leaves_nothing_buffered(redis_server):
    """Events that arrive together all come out without new traffic."""
    channel = "together_%d" % os.getpid()
    notifier = Notifier.from_url(redis_server.url, channel=channel)
    subscription = notifier.transport.open_subscription()
    read_fd, write_fd = os.pipe()
    client = redis_server.client()

    def publish_together():
        time.sleep(0.2)
        pipeline = client.pipeline(transaction=False)
        for index in range(3):
            pipeline.publish(channel, '[%d,"finished"]' % index)
        pipeline.execute()

    publisher = threading.Thread(target=publish_together)
    publisher.start()
    try:
        payloads = subscription.receive(5.0, read_fd)
        publisher.join(5)
        assert payloads
        deadline = time.time() + 2
        while len(payloads) < 3 and time.time() < deadline:
            # With nothing more on the wire, only the buffer can fill these.
            payloads += subscription.receive(0.2, read_fd)
        assert [payload.decode("utf-8") for payload in payloads] == [
            '[0,"finished"]', '[1,"finished"]', '[2,"finished"]']
    finally:
        publisher.join(5)
        subscription.close()
        notifier.close()
        os.close(read_fd)
        os.close(write_fd)
