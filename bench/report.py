"""Write the merged results as JSON, as an RST page and as a PNG plot.

Every target is checked here from the JSON, so the page always states
whether the run it shows met it.
"""

from __future__ import absolute_import, division, print_function, unicode_literals

import io
import json
import logging
import os
import subprocess
import sys

from job_notifier._compat import text_type

from .subprocesses import REPOSITORY

log = logging.getLogger("bench")

NOTES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.rst")
PLOT_PYTHON = os.path.join(REPOSITORY, ".venv", "py311", "bin", "python")

TRANSPORT_TITLES = {"memory": "memory", "redis": "Redis",
                    "postgres": "PostgreSQL", "websocket": "WebSocket"}
RAW_TITLES = {
    "redis": "redis-py PUBLISH -> get_message",
    "postgres": "psycopg2 pg_notify -> poll",
    "websocket": "websocket-client send -> recv",
}
PATH_TITLES = {"callback": "notify -> callback",
               "wait_for": "notify -> wait_for return"}
RQ_TITLES = {
    "wait_for_job": "NotifyingWorker + wait_for_job",
    "latest_result": "Job.latest_result(timeout=...)",
    "polling": "job.get_status() every 100 ms",
}

# Targets, all ratios within one run.
LATENCY_FACTOR = 1.5
LATENCY_ALLOWANCE_MS = 0.1
P99_LIMIT_MS = 2.0
RQ_POLLING_FACTOR = 20
THROUGHPUT_FRACTION = 0.5
SCALE_THREADS = 10000
WAKE_RATIO_LIMIT = 1.2
HEAP_LIMIT_BYTES = 1024
IDLE_CPU_ALLOWANCE = 0.01


def write_all(document, directory, plot=True, plot_python=None):
    """Write benchmarks.json, benchmarks.rst and benchmarks.png."""
    if not os.path.isdir(directory):
        os.makedirs(directory)
    json_path = os.path.join(directory, "benchmarks.json")
    with io.open(json_path, "w", encoding="utf-8") as handle:
        handle.write(text_type(json.dumps(document, indent=1,
                                          sort_keys=True)))
    png_path = os.path.join(directory, "benchmarks.png")
    has_plot = False
    if plot:
        has_plot = draw_plot(json_path, png_path, plot_python)
    rst_path = os.path.join(directory, "benchmarks.rst")
    with io.open(rst_path, "w", encoding="utf-8") as handle:
        handle.write(render(document, has_plot))
    log.info("wrote %s", ", ".join(
        path for path in (rst_path, json_path, has_plot and png_path)
        if path))


def draw_plot(json_path, png_path, plot_python=None):
    """Draw the plot, in this interpreter if it has matplotlib; return success."""
    if plot_python is None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plot_python = PLOT_PYTHON
    if plot_python is None:
        from . import plot
        plot.draw(json_path, png_path)
        return True
    if not os.path.exists(plot_python):
        log.warning("no plot: matplotlib is not installed here and %s is "
                    "missing; pass --plot-python", plot_python)
        return False
    status = subprocess.call([plot_python, "-m", "bench.plot", json_path,
                              png_path], cwd=REPOSITORY)
    if status != 0:
        log.warning("no plot: %s -m bench.plot failed with exit status %d",
                    plot_python, status)
        return False
    return True


# RST helpers.

def heading(text, underline):
    return [text, underline * len(text), ""]


def table(headers, rows):
    """Return the lines of an RST simple table."""
    cells = [[text_type(cell) for cell in row] for row in [headers] + rows]
    widths = [max(len(row[column]) for row in cells)
              for column in range(len(headers))]
    border = "  ".join("=" * width for width in widths)

    def line(row):
        return "  ".join(cell.ljust(width)
                         for cell, width in zip(row, widths)).rstrip()

    lines = [border, line(cells[0]), border]
    lines.extend(line(row) for row in cells[1:])
    lines.extend([border, ""])
    return lines


def table_or_note(headers, rows):
    """Return a table of ``rows``, or a line saying nothing was measured."""
    if not rows:
        return ["Not measured in this run.", ""]
    return table(headers, rows)


def milliseconds(value):
    return "-" if value is None else "%.3f" % value


def number(value, suffix=""):
    if value is None:
        return "-"
    if isinstance(value, float) and value != int(value):
        return "%.2f%s" % (value, suffix)
    return "{:,}{}".format(int(value), suffix)


def verdict(met):
    if met is None:
        return "not measured"
    return "met" if met else "MISSED"


# Target checks: each returns (text of the measured value, met or None).

def latency_target(run, transport, path):
    entry = run.get("latency", {}).get(transport)
    if not entry or not entry.get(path) or not entry.get("raw"):
        return "-", None
    measured = entry[path]
    raw_p50 = entry["raw"]["p50"]
    limit = LATENCY_FACTOR * raw_p50 + LATENCY_ALLOWANCE_MS
    met = (measured["p50"] <= limit and measured["p99"] <= P99_LIMIT_MS
           and measured["lost"] == 0)
    text = "p50 %s <= %s, p99 %s" % (milliseconds(measured["p50"]),
                                     milliseconds(limit),
                                     milliseconds(measured["p99"]))
    return text, met


def rq_targets(run):
    entry = run.get("rq") or {}
    waited = entry.get("wait_for_job")
    latest = entry.get("latest_result")
    polled = entry.get("polling")
    results = []
    if waited and latest:
        results.append(("p50 %s vs %s" % (milliseconds(waited["p50"]),
                                          milliseconds(latest["p50"])),
                        waited["p50"] <= latest["p50"]))
    else:
        results.append(("-", None))
    if waited and polled:
        results.append(("%.1f x" % (polled["p50"] / waited["p50"]),
                        polled["p50"] >= RQ_POLLING_FACTOR * waited["p50"]))
    else:
        results.append(("-", None))
    return results


def throughput_target(run):
    entry = run.get("throughput")
    if not entry or entry.get("ratio") is None:
        return "-", None
    met = (entry["ratio"] >= THROUGHPUT_FRACTION
           and entry["notifier"]["lost"] == 0)
    return "%.0f %%, %d lost" % (entry["ratio"] * 100,
                                 entry["notifier"]["lost"]), met


def scale_entry(run, threads=SCALE_THREADS):
    for entry in run.get("scale") or ():
        if entry["threads"] == threads:
            return entry
    return None


def scale_targets(run):
    entry = scale_entry(run)
    if entry is None:
        return [("-", None)] * 4
    heap = entry.get("heap_per_waiter")
    idle_limit = entry["baseline_idle_cpu"] + IDLE_CPU_ALLOWANCE
    return [
        ("%d" % entry["subscribed_connections"],
         entry["subscribed_connections"] == 1),
        ("%.2f" % entry["wake_ratio"] if entry["wake_ratio"] else "-",
         entry["wake_ratio"] is not None
         and entry["wake_ratio"] <= WAKE_RATIO_LIMIT),
        ("-" if heap is None else "%d B" % heap,
         None if heap is None else heap <= HEAP_LIMIT_BYTES),
        ("%.1f %% of a core" % (entry["idle_cpu"] * 100),
         entry["idle_cpu"] <= idle_limit),
    ]


def target_rows(runs):
    """Return (target, [(value, met) per run]) for every target."""
    rows = []
    for transport in ("redis", "postgres"):
        for path in ("callback", "wait_for"):
            rows.append((
                "%s %s: p50 <= 1.5 x raw + 0.1 ms, p99 <= 2 ms"
                % (TRANSPORT_TITLES[transport], PATH_TITLES[path]),
                [latency_target(run, transport, path) for run in runs]))
    rq = [rq_targets(run) for run in runs]
    rows.append(("RQ: wait_for_job p50 <= latest_result p50",
                 [values[0] for values in rq]))
    rows.append(("RQ: wait_for_job p50 >= 20 x faster than 100 ms polling",
                 [values[1] for values in rq]))
    rows.append(("throughput >= 50 % of the raw redis-py loop, none lost",
                 [throughput_target(run) for run in runs]))
    scale = [scale_targets(run) for run in runs]
    for index, title in enumerate((
            "10,000 waiters: one subscribed connection",
            "10,000 waiters: wake p50 <= 1.2 x with 10,000 blocked threads",
            "heap per waiter <= 1 KB",
            "10,000 idle waiters: CPU <= blocked threads + 1 % of a core")):
        rows.append((title, [values[index] for values in scale]))
    return rows


# Sections.

def render(document, has_plot):
    meta = document["meta"]
    runs = document["runs"]
    lines = heading("Benchmarks", "=")
    lines += [
        "job_notifier against the raw clients of each transport and against "
        "RQ's own ways of waiting, measured side by side in one run of "
        "``make bench``. The page is generated by ``bench/report.py`` from "
        "``benchmarks.json``; the method and the analysis below the tables "
        "come from ``bench/notes.rst``.",
        "",
    ]
    lines += run_section(meta, runs)
    lines += targets_section(runs)
    lines += latency_section(runs, has_plot)
    lines += rq_section(runs)
    lines += throughput_section(runs)
    lines += scale_section(runs)
    lines += sender_section(runs)
    lines += skipped_section(meta, runs)
    with io.open(NOTES, encoding="utf-8") as handle:
        notes = handle.read()
    return "\n".join(lines) + "\n" + notes


def run_section(meta, runs):
    machine = meta["machine"]
    lines = heading("This run", "-")
    if meta.get("quick"):
        lines += [".. warning:: This is a ``--quick`` smoke run with few "
                  "samples; its numbers are not meaningful.", ""]
    lines += [
        "- Command: ``%s`` (what ``make bench`` runs)" % meta["command"],
        "- Date: %s, %s seconds" % (meta["date"], meta.get("seconds")),
        "- Machine: %s, %s cores, %s GiB of memory, %s"
        % (machine["cpu"], machine["cores"], machine["memory_gib"],
           machine["kernel"]),
        "- Load average (1, 5, 15 min) before: %s, after: %s"
        % (_load(meta.get("load_average_before")),
           _load(meta.get("load_average_after"))),
        "- Servers on 127.0.0.1: %s" % (", ".join(
            "%s %s" % item for item in sorted(meta.get("servers", {}).items()))
            or "none"),
    ]
    for run in runs:
        libraries = ", ".join("%s %s" % item
                              for item in sorted(run["libraries"].items()))
        lines.append("- Python %s: %s" % (run["python"], libraries))
    lines.append("")
    return lines


def _load(values):
    return "-" if not values else " ".join("%.2f" % value for value in values)


def targets_section(runs):
    lines = heading("Targets", "-")
    rows = []
    for title, values in target_rows(runs):
        rows.append([title] + ["%s (%s)" % (text, verdict(met))
                               if met is not None else verdict(None)
                               for text, met in values])
    lines += table(["Target"] + [run["label"] for run in runs], rows)
    return lines


def latency_section(runs, has_plot):
    lines = heading("Latency", "-")
    lines += [
        "One event at a time, sent by a separate process (by the receiving "
        "process itself on memory://), from the start of the send call to "
        "the arrival. Milliseconds. ``p50 / raw`` and ``p50 - raw`` compare "
        "with the raw round trip of the same transport in the same "
        "interpreter. The thread wake row is one ``Lock.release()`` to "
        "``acquire()`` returning in another thread of the same process: the "
        "step that every notifier path adds to a raw round trip.",
        "",
    ]
    if has_plot:
        lines += [".. image:: benchmarks.png",
                  "   :alt: Cumulative latency distributions of every path",
                  ""]
    rows = []
    for run in runs:
        wake = run.get("thread_wake")
        if wake:
            rows.append(_latency_row(run, "-", "thread wake", wake, None))
        for transport, entry in sorted(run.get("latency", {}).items()):
            raw = entry.get("raw")
            for path in ("raw", "callback", "wait_for"):
                measured = entry.get(path)
                if not measured:
                    continue
                title = RAW_TITLES.get(transport) if path == "raw" \
                    else PATH_TITLES[path]
                rows.append(_latency_row(
                    run, TRANSPORT_TITLES[transport], title, measured,
                    raw if path != "raw" else None))
    lines += table(["Python", "Transport", "Path", "n", "lost", "p50",
                    "p90", "p99", "max", "p50 / raw", "p50 - raw"], rows)
    return lines


def _latency_row(run, transport, title, measured, raw):
    ratio_text = added = "-"
    if raw is not None:
        ratio_text = number(measured.get("p50_over_raw"))
        added = milliseconds(measured["p50"] - raw["p50"])
    return [run["label"], transport, title, measured["n"], measured["lost"],
            milliseconds(measured["p50"]), milliseconds(measured["p90"]),
            milliseconds(measured["p99"]), milliseconds(measured["max"]),
            ratio_text, added]


def rq_section(runs):
    lines = heading("RQ end to end", "-")
    lines += [
        "From the job function returning (its result is the wall-clock time "
        "of its return) to the waiting call returning in another process. "
        "Milliseconds.",
        "",
    ]
    rows = []
    for run in runs:
        entry = run.get("rq") or {}
        for name in ("wait_for_job", "latest_result", "polling"):
            measured = entry.get(name)
            if measured:
                rows.append([run["label"], RQ_TITLES[name], measured["n"],
                             measured["lost"], milliseconds(measured["p50"]),
                             milliseconds(measured["p90"]),
                             milliseconds(measured["p99"])])
    lines += table_or_note(
        ["Python", "Waiting", "n", "lost", "p50", "p90", "p99"], rows)
    return lines


def throughput_section(runs):
    lines = heading("Throughput", "-")
    lines += [
        "Events per second into one receiver while another process floods "
        "the Redis channel with pipelined PUBLISH commands.",
        "",
    ]
    rows = []
    for run in runs:
        entry = run.get("throughput")
        if not entry:
            continue
        for name, title in (("raw", "redis-py get_message() loop"),
                            ("notifier", "one listener, one on('job') "
                                         "callback")):
            measured = entry[name]
            rows.append([run["label"], title, number(measured["events"]),
                         number(measured["received"]), measured["lost"],
                         number(measured["events_per_second"])])
        rows.append([run["label"], "listener / raw", "", "", "",
                     "%.0f %%" % (entry["ratio"] * 100)
                     if entry["ratio"] is not None else "-"])
    lines += table_or_note(
        ["Python", "Receiver", "sent", "received", "lost", "events/s"], rows)
    return lines


def scale_section(runs):
    lines = heading("Scale", "-")
    lines += [
        "N threads waiting in one process on Redis. Wake p50 is the "
        "notify -> wait_for latency of one more waiter, in milliseconds; "
        "the baseline is the same with N threads blocked on plain locks. "
        "Connections are those the listening notifier opened (CLIENT "
        "LIST); idle CPU is the share of one core the process used while "
        "every thread waited; heap is traced by tracemalloc and excludes "
        "thread stacks (Python 3 only).",
        "",
    ]
    rows = []
    for run in runs:
        for entry in run.get("scale") or ():
            rows.append([
                run["label"], number(entry["threads"]),
                "%d (%d subscribed)" % (entry["connections"],
                                        entry["subscribed_connections"]),
                milliseconds(entry["wake_p50"]),
                milliseconds(entry["baseline_wake_p50"]),
                number(entry["wake_ratio"]),
                "%.1f %%" % (entry["idle_cpu"] * 100),
                "%.1f %%" % (entry["baseline_idle_cpu"] * 100),
                "-" if entry["heap_per_waiter"] is None
                else "%d B" % entry["heap_per_waiter"],
            ])
    lines += table_or_note(
        ["Python", "threads", "connections", "wake p50", "blocked p50",
         "ratio", "idle CPU", "blocked idle CPU", "heap / waiter"], rows)
    return lines


def sender_section(runs):
    lines = heading("Sender cost", "-")
    lines += [
        "Calls per second of one sending thread, each call waiting for the "
        "server's reply; nobody listens on the channel.",
        "",
    ]
    rows = []
    for run in runs:
        for transport, entry in sorted((run.get("sender") or {}).items()):
            rows.append([run["label"], TRANSPORT_TITLES[transport],
                         number(entry["notify"]), number(entry["raw"]),
                         "-" if entry["ratio"] is None
                         else "%.0f %%" % (entry["ratio"] * 100)])
    lines += table_or_note(
        ["Python", "Transport", "notify()/s", "raw/s", "notify / raw"], rows)
    return lines


def skipped_section(meta, runs):
    items = ["- %s: %s" % item
             for item in sorted(meta.get("servers_skipped", {}).items())]
    for run in runs:
        items += ["- %s, %s: %s" % (run["label"], name, reason)
                  for name, reason in sorted(run["skipped"].items())]
    if not items:
        return []
    return heading("Not measured", "-") + items + [""]


if __name__ == "__main__":  # pragma: no cover - manual re-rendering
    with io.open(sys.argv[1], encoding="utf-8") as source:
        loaded = json.load(source)
    write_all(loaded, os.path.dirname(os.path.abspath(sys.argv[1])),
              plot="--no-plot" not in sys.argv)
