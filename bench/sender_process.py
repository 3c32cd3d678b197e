"""A sending process for the latency measurements.

Run as ``python -m bench.sender_process MODE TRANSPORT URL CHANNEL``,
where MODE is ``notify`` (``Notifier.notify()``) or ``raw`` (the client
library of TRANSPORT, as in ``bench.raw``). For each job id read from standard input it
takes the wall-clock time, sends ``[job_id,"finished"]`` and writes the
time it took before sending to standard output. The receiving process
reads that time after the event arrived, so a sample is the interval from
the start of the send call to the arrival, on the clock that both
processes share.
"""

from __future__ import absolute_import, print_function, unicode_literals

import subprocess
import sys
import time

from job_notifier._compat import ensure_text

from .raw import SENDERS
from .subprocesses import REPOSITORY, child_environment

# The first line written once the sender is connected.
READY = "ready"


def _notify_sender(url, channel):
    from job_notifier import Notifier
    notifier = Notifier.from_url(url, channel=channel)

    def send(job_id):
        notifier.notify(job_id, "finished")

    return send, notifier.close


def serve(mode, transport, url, channel, stdin, stdout):
    if mode == "notify":
        send, close = _notify_sender(url, channel)
    else:
        raw_send, close = SENDERS[transport](url, channel)

        def send(job_id):
            raw_send('["%s","finished"]' % job_id)

    # A first message opens the sending connection before any timing.
    send("connect")
    stdout.write(READY + "\n")
    stdout.flush()
    try:
        for line in iter(stdin.readline, ""):
            job_id = ensure_text(line).strip()
            if not job_id:
                break
            started = time.time()
            send(job_id)
            stdout.write("%r\n" % started)
            stdout.flush()
    finally:
        close()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or argv[0] not in ("notify", "raw"):
        print("usage: python -m bench.sender_process notify|raw TRANSPORT "
              "URL CHANNEL", file=sys.stderr)
        return 2
    serve(argv[0], argv[1], argv[2], argv[3], sys.stdin, sys.stdout)
    return 0


class SenderProcess(object):
    """The receiving side's handle on a ``bench.sender_process``."""

    def __init__(self, mode, transport, url, channel):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sender_process", mode, transport,
             url, channel],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPOSITORY,
            env=child_environment())
        line = self._read_line()
        if line != READY:
            self.close()
            raise RuntimeError("the sender process for %s did not start: "
                               "it wrote %r" % (url, line))

    def _read_line(self):
        return self.process.stdout.readline().decode("ascii").strip()

    def send(self, job_id):
        """Ask the process to send ``[job_id,"finished"]`` now."""
        self.process.stdin.write(("%s\n" % job_id).encode("ascii"))
        self.process.stdin.flush()

    def sent_at(self):
        """Return the wall-clock time at which the last send started."""
        return float(self._read_line())

    def close(self):
        process = self.process
        try:
            process.stdin.close()
        except (IOError, OSError):
            pass
        deadline = time.time() + 10
        while process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
