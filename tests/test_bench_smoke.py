"""Smoke run of ``python -m bench --quick`` on memory:// and Redis.

It keeps the benchmark command working; it asserts the shape of the
results, never a timing.
"""

from __future__ import absolute_import, unicode_literals

import io
import json
import os
import subprocess
import sys

import pytest

from servers import find_executable

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LATENCY_KEYS = {"n", "lost", "min", "p50", "p90", "p99", "max", "mean",
                "samples"}
SCALE_KEYS = {"threads", "rounds", "connections", "subscribed_connections", "wake_p50",
              "wake", "baseline_wake_p50", "baseline_wake", "wake_ratio",
              "idle_cpu", "baseline_idle_cpu", "early_timeouts",
              "heap_per_waiter", "heap_per_waiting_thread",
              "heap_per_blocked_thread"}


@pytest.fixture(scope="module")
def quick_run(tmpdir_factory):
    """Run the quick benchmark once under this interpreter."""
    if find_executable("redis-server") is None:
        pytest.skip("redis-server is not installed: run 'make test'")
    output = str(tmpdir_factory.mktemp("bench"))
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [REPOSITORY] + [path for path in [environment.get("PYTHONPATH")]
                        if path])
    command = [sys.executable, "-m", "bench", "--quick",
               "--transports", "memory,redis",
               "--measurements", "latency,throughput,scale,sender",
               "--python", sys.executable, "--output-dir", output,
               "--no-plot"]
    process = subprocess.Popen(command, cwd=REPOSITORY, env=environment,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    log, _ = process.communicate()
    assert process.returncode == 0, log.decode("utf-8", "replace")
    with io.open(os.path.join(output, "benchmarks.json"),
                 encoding="utf-8") as handle:
        document = json.load(handle)
    with io.open(os.path.join(output, "benchmarks.rst"),
                 encoding="utf-8") as handle:
        page = handle.read()
    return document, page


def test_meta_describes_run(quick_run):
    meta = quick_run[0]["meta"]
    assert meta["quick"] is True
    assert meta["command"].startswith("python -m bench --quick")
    assert meta["machine"]["cores"] >= 1
    assert "redis-server" in meta["servers"]


def test_one_run_for_this_interpreter(quick_run):
    runs = quick_run[0]["runs"]
    assert len(runs) == 1
    assert runs[0]["label"] == "Python %d.%d" % sys.version_info[:2]
    assert runs[0]["skipped"] == {} or set(runs[0]["skipped"]) == {
        "scale heap"}


def test_latency_has_every_path(quick_run):
    latency = quick_run[0]["runs"][0]["latency"]
    assert set(latency) == {"memory", "redis"}
    assert latency["memory"]["raw"] is None
    for path in ("raw", "callback", "wait_for"):
        assert set(latency["redis"][path]) >= LATENCY_KEYS
        assert latency["redis"][path]["n"] > 0
    for path in ("callback", "wait_for"):
        assert latency["redis"][path]["p50_over_raw"] is not None


def test_throughput_counts_every_event(quick_run):
    throughput = quick_run[0]["runs"][0]["throughput"]
    for receiver in ("raw", "notifier"):
        assert set(throughput[receiver]) == {
            "events", "received", "lost", "duplicates", "events_per_second"}
        assert throughput[receiver]["received"] == throughput[receiver]["events"]
        assert throughput[receiver]["lost"] == 0
    assert throughput["ratio"] is not None


def test_scale_has_every_count(quick_run):
    scale = quick_run[0]["runs"][0]["scale"]
    assert [entry["threads"] for entry in scale] == [1, 100]
    for entry in scale:
        assert set(entry) == SCALE_KEYS
        assert entry["subscribed_connections"] == 1
        assert entry["early_timeouts"] == 0
        if sys.version_info[0] >= 3:
            assert entry["heap_per_waiter"] is not None


def test_sender_compares_with_raw(quick_run):
    sender = quick_run[0]["runs"][0]["sender"]
    assert sender["memory"]["raw"] is None
    assert sender["memory"]["notify"] > 0
    assert sender["redis"]["raw"] > 0
    assert sender["redis"]["notify"] > 0


def test_page_has_every_section(quick_run):
    page = quick_run[1]
    for title in ("This run", "Targets", "Latency", "RQ end to end",
                  "Throughput", "Scale", "Sender cost", "Method"):
        assert "\n%s\n%s\n" % (title, "-" * len(title)) in page
    assert "--quick" in page
