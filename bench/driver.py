"""``python -m bench``: start the servers, measure on each interpreter, report.

The driver starts Redis (and PostgreSQL, the WebSocket broker and RQ
workers when their transports are measured), runs ``bench.measure`` under
every interpreter one after the other against the same servers, merges the
results into one JSON document and writes the RST page and the plot.
"""

from __future__ import absolute_import, print_function, unicode_literals

import argparse
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from job_notifier._compat import text_type

from . import report
from .servers import Servers
from .subprocesses import REPOSITORY, child_environment

log = logging.getLogger("bench")

TRANSPORTS = ("memory", "redis", "postgres", "websocket")
MEASUREMENTS = ("latency", "throughput", "scale", "sender", "rq")
DEFAULT_PYTHONS = (".venv/py311/bin/python", ".venv/py27/bin/python")

FULL = {
    "samples": 2000,
    "warmup": 100,
    "throughput_events": 50000,
    "scale_counts": [1, 100, 1000, 10000],
    "scale_samples": 300,
    "scale_rounds": 3,
    "idle_seconds": 2.0,
    "sender_calls": 5000,
    "rq_samples": 200,
}

QUICK = {
    "samples": 100,
    "warmup": 10,
    "throughput_events": 3000,
    "scale_counts": [1, 100],
    "scale_samples": 20,
    "scale_rounds": 1,
    "idle_seconds": 0.3,
    "sender_calls": 300,
    "rq_samples": 10,
}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure job_notifier against the raw clients and RQ, "
                    "and write docs/benchmarks.rst, .json and .png.")
    parser.add_argument("--quick", action="store_true",
                        help="few samples and at most 100 waiting threads, "
                             "for a smoke test that runs in under a minute")
    parser.add_argument("--transports", default=",".join(TRANSPORTS),
                        help="comma-separated transports to measure "
                             "(default: %(default)s)")
    parser.add_argument("--measurements", default=",".join(MEASUREMENTS),
                        help="comma-separated measurements to run "
                             "(default: %(default)s)")
    parser.add_argument("--python", action="append", dest="pythons",
                        metavar="PATH",
                        help="interpreter to measure; repeat for several "
                             "(default: %s, those that exist)"
                             % " and ".join(DEFAULT_PYTHONS))
    parser.add_argument("--output-dir", default=os.path.join(REPOSITORY,
                                                             "docs"),
                        help="directory for benchmarks.rst, .json and .png "
                             "(default: docs/ of the repository)")
    parser.add_argument("--plot-python", metavar="PATH",
                        help="Python 3 interpreter with matplotlib that "
                             "draws the plot (default: this interpreter if "
                             "it has matplotlib, else .venv/py311/bin/python)")
    parser.add_argument("--no-plot", action="store_true",
                        help="write no PNG plot")
    arguments = parser.parse_args(argv)
    arguments.transports = _split(arguments.transports, TRANSPORTS, parser)
    arguments.measurements = _split(arguments.measurements, MEASUREMENTS,
                                    parser)
    if not arguments.pythons:
        arguments.pythons = [os.path.join(REPOSITORY, path)
                             for path in DEFAULT_PYTHONS
                             if os.path.exists(os.path.join(REPOSITORY, path))]
        if not arguments.pythons:
            arguments.pythons = [sys.executable]
    return arguments


def _split(value, choices, parser):
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        parser.error("invalid choice %r: use a comma-separated list of %s"
                     % (value, ", ".join(choices)))
    return names


def machine_description():
    """Return the CPU, core count, memory and kernel of this machine."""
    description = {
        "cpu": platform.processor() or platform.machine(),
        "cores": _cpu_count(),
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "memory_gib": None,
    }
    try:
        with io.open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    description["cpu"] = line.split(":", 1)[1].strip()
                    break
        with io.open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    description["memory_gib"] = round(kib / 1024.0 / 1024, 1)
                    break
    except (IOError, OSError):
        pass
    return description


def _cpu_count():
    import multiprocessing
    return multiprocessing.cpu_count()


def _load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_interpreter(python, config, directory, index):
    """Run ``bench.measure`` under ``python``; return its result dict."""
    config_path = os.path.join(directory, "config.json")
    output_path = os.path.join(directory, "result-%d.json" % index)
    with io.open(config_path, "w", encoding="utf-8") as handle:
        handle.write(text_type(json.dumps(config, indent=1)))
    environment = child_environment()
    log.info("measuring with %s", python)
    status = subprocess.call([python, "-m", "bench.measure", config_path,
                              output_path], cwd=REPOSITORY, env=environment)
    if status != 0 or not os.path.exists(output_path):
        raise RuntimeError("%s -m bench.measure failed with exit status %d; "
                           "see its output above" % (python, status))
    with io.open(output_path, encoding="utf-8") as handle:
        return json.load(handle)


def command_line(argv):
    return " ".join(["python -m bench"] + list(argv))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    config = dict(QUICK if arguments.quick else FULL)
    config.update({
        "quick": arguments.quick,
        "transports": arguments.transports,
        "measurements": arguments.measurements,
    })
    started = time.time()
    meta = {
        "command": command_line(argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z",
                              time.localtime(started)),
        "machine": machine_description(),
        "load_average_before": _load_average(),
        "quick": arguments.quick,
        "config": config,
    }
    directory = tempfile.mkdtemp(prefix="job-notifier-bench-")
    servers = Servers()
    runs = []
    try:
        servers.start(arguments.transports)
        config["servers"] = servers.urls
        for index, python in enumerate(arguments.pythons):
            runs.append(run_interpreter(python, config, directory, index))
    finally:
        servers.stop()
        shutil.rmtree(directory, ignore_errors=True)
    meta.update({
        "servers": servers.versions,
        "servers_skipped": servers.skipped,
        "load_average_after": _load_average(),
        "seconds": round(time.time() - started, 1),
    })
    document = {"meta": meta, "runs": runs}
    report.write_all(document, arguments.output_dir,
                     plot=not arguments.no_plot,
                     plot_python=arguments.plot_python)
    return 0
