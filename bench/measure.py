"""Run the measurements on the running interpreter and write them as JSON.

The driver (``python -m bench``) starts the servers and runs this module
once per interpreter::

    python -m bench.measure CONFIG.json OUTPUT.json

CONFIG names the server URLs, the transports and measurements to run and
the sample counts. A measurement that cannot run here (a transport module
or a client library that is missing, tracemalloc on Python 2.7) is listed
under ``skipped`` with the reason, and the others still run.
"""

from __future__ import absolute_import, print_function, unicode_literals

import gc
import importlib
import io
import json
import logging
import os
import platform
import sys
import traceback

from job_notifier import Notifier
from job_notifier._compat import text_type
from job_notifier.transports import transport_class

from . import latency, scale, sending, throughput
from .raw import RECEIVERS, SENDERS
from .sender_process import SenderProcess
from .stats import ratio, summarize

log = logging.getLogger("bench")

LIBRARIES = (("redis", "redis"), ("psycopg2", "psycopg2"),
             ("websocket-client", "websocket"), ("rq", "rq"), ("six", "six"))


def library_versions():
    versions = {}
    for name, module_name in LIBRARIES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        version = getattr(module, "__version__", None) or getattr(
            module, "VERSION", None)
        versions[name] = str(version).split(" ")[0] if version else "unknown"
    return versions


def notifier_url(config, transport):
    if transport == "memory":
        return "memory://bench"
    return config["servers"].get(transport)


def unavailable_reason(config, transport):
    """Return why ``transport`` cannot be measured here, or None."""
    url = notifier_url(config, transport)
    if not url:
        return "no %s server was started" % transport
    try:
        transport_class(url)(url, "bench_probe").close()
    except ImportError as exc:
        return "the transport is not available: %s" % exc
    except Exception as exc:
        return "the transport cannot be created: %s: %s" % (
            type(exc).__name__, exc)
    return None


def channel_name(purpose):
    return "bench_%s_%d" % (purpose, os.getpid())


class Measurements(object):
    """Every measurement of one interpreter, collected into ``self.result``."""

    def __init__(self, config):
        self.config = config
        self.result = {
            "python": platform.python_version(),
            "label": "Python %d.%d" % sys.version_info[:2],
            "executable": sys.executable,
            "libraries": library_versions(),
            "skipped": {},
        }
        self.transports = []
        for transport in config["transports"]:
            reason = unavailable_reason(config, transport)
            if reason is None:
                self.transports.append(transport)
            else:
                self.skip("%s transport" % transport, reason)

    def skip(self, name, reason):
        self.result["skipped"][name] = reason
        log.warning("skipped %s: %s", name, reason)

    def run(self):
        for name in self.config["measurements"]:
            method = getattr(self, "measure_%s" % name)
            log.info("%s: measuring %s", self.result["label"], name)
            try:
                method()
            except Exception as exc:
                self.skip(name, "failed: %s: %s" % (type(exc).__name__, exc))
                traceback.print_exc()
            gc.collect()
        return self.result

    def _sender(self, mode, transport, url, channel):
        if transport == "memory":
            return latency.LocalSender(Notifier.from_url(url, channel=channel))
        return SenderProcess(mode, transport, url, channel)

    def measure_latency(self):
        config = self.config
        durations, lost = latency.measure_thread_wake(config["samples"],
                                                      config["warmup"])
        self.result["thread_wake"] = summarize(durations, lost)
        results = self.result.setdefault("latency", {})
        for transport in self.transports:
            url = notifier_url(config, transport)
            channel = channel_name("latency_%s" % transport)
            entry = results[transport] = {"raw": None}
            if transport in RECEIVERS:
                receiver = RECEIVERS[transport](url, channel)
                sender = self._sender("raw", transport, url, channel)
                try:
                    durations, lost = latency.measure_raw(
                        receiver, sender, config["samples"],
                        config["warmup"])
                finally:
                    sender.close()
                    receiver.close()
                entry["raw"] = summarize(durations, lost)
            for path, function in (("callback", latency.measure_callback),
                                   ("wait_for", latency.measure_wait_for)):
                listener = Notifier.from_url(url, channel=channel)
                sender = self._sender("notify", transport, url, channel)
                try:
                    durations, lost = function(listener, sender,
                                               config["samples"],
                                               config["warmup"])
                finally:
                    sender.close()
                    listener.close()
                entry[path] = summarize(durations, lost)
            raw_p50 = entry["raw"]["p50"] if entry["raw"] else None
            for path in ("callback", "wait_for"):
                entry[path]["p50_over_raw"] = ratio(entry[path]["p50"],
                                                    raw_p50)

    def _redis_url(self, name):
        url = self.config["servers"].get("redis")
        if not url:
            self.skip(name, "no Redis server was started")
        return url

    def measure_throughput(self):
        url = self._redis_url("throughput")
        if not url:
            return
        count = self.config["throughput_events"]
        raw = throughput.measure_raw_loop(url, channel_name("flood_raw"),
                                          count)
        channel = channel_name("flood")
        listener = Notifier.from_url(url, channel=channel)
        try:
            notified = throughput.measure_notifier(listener, url, channel,
                                                   count)
        finally:
            listener.close()
        self.result["throughput"] = {
            "raw": raw,
            "notifier": notified,
            "ratio": ratio(notified["events_per_second"],
                           raw["events_per_second"]),
        }

    def measure_scale(self):
        url = self._redis_url("scale")
        if not url:
            return
        config = self.config
        self.result["scale"] = scale.measure_scale(
            url, channel_name("scale"), config["scale_counts"],
            config["scale_samples"], config["warmup"],
            config["idle_seconds"], config["scale_rounds"])
        if not any(entry["heap_per_waiter"] is not None
                   for entry in self.result["scale"]):
            self.skip("scale heap", "tracemalloc needs Python 3.4 or later")

    def measure_sender(self):
        results = self.result.setdefault("sender", {})
        count = self.config["sender_calls"]
        for transport in self.transports:
            url = notifier_url(self.config, transport)
            channel = channel_name("send_%s" % transport)
            raw = None
            if transport in SENDERS:
                raw = sending.raw_rate(transport, url, channel, count)
            notify = sending.notify_rate(url, channel, count)
            results[transport] = {"raw": raw, "notify": notify,
                                  "ratio": ratio(notify, raw)}

    def measure_rq(self):
        from . import rq_bench
        url = self._redis_url("rq")
        if not url:
            return
        reason = rq_bench.unavailable_reason()
        if reason:
            self.skip("rq", reason)
            return
        self.result["rq"] = rq_bench.measure_rq(
            url, self.config["rq_samples"], self)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m bench.measure CONFIG.json OUTPUT.json",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    # The library logs at warning level when it drops or delays messages;
    # those lines belong in the benchmark output too.
    logging.getLogger("job_notifier").setLevel(logging.WARNING)
    with io.open(argv[0], encoding="utf-8") as handle:
        config = json.load(handle)
    result = Measurements(config).run()
    with io.open(argv[1], "w", encoding="utf-8") as handle:
        handle.write(text_type(json.dumps(result, indent=1,
                                          sort_keys=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
