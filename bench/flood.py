"""Publish numbered events to a Redis channel as fast as one client can.

Run as ``python -m bench.flood URL CHANNEL COUNT``. It sends
``[0,"finished"]`` to ``[COUNT-1,"finished"]`` in pipelines of 500 PUBLISH
commands, so the receiver under test, not this sender, sets the rate, and
writes the wall-clock time at which it began sending to standard output.
"""

from __future__ import absolute_import, print_function, unicode_literals

import sys
import time

BATCH = 500


def flood(url, channel, count):
    import redis
    client = redis.Redis.from_url(url)
    pipeline = client.pipeline(transaction=False)
    client.ping()
    started = time.time()
    for index in range(count):
        pipeline.publish(channel, '[%d,"finished"]' % index)
        if (index + 1) % BATCH == 0:
            pipeline.execute()
    pipeline.execute()
    client.connection_pool.disconnect()
    return started


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m bench.flood URL CHANNEL COUNT",
              file=sys.stderr)
        return 2
    started = flood(argv[0], argv[1], int(argv[2]))
    sys.stdout.write("%r\n" % started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
