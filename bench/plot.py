"""Draw the latency distributions of benchmarks.json as a PNG (Python 3).

Run as ``python -m bench.plot benchmarks.json benchmarks.png``; needs
matplotlib, which ``make bench`` installs into ``.venv/py311``. One panel
per transport, plus one for RQ, each with the cumulative distribution of
every path on a logarithmic time axis, one line style per interpreter.
"""

import json
import sys

TRANSPORT_ORDER = ("memory", "redis", "postgres", "websocket")
TITLES = {"memory": "memory://", "redis": "Redis", "postgres": "PostgreSQL",
          "websocket": "WebSocket", "rq": "RQ end to end"}
PATHS = {
    "raw": ("raw client round trip", "tab:gray"),
    "callback": ("notify -> callback", "tab:blue"),
    "wait_for": ("notify -> wait_for", "tab:orange"),
    "wait_for_job": ("wait_for_job", "tab:orange"),
    "latest_result": ("latest_result", "tab:green"),
    "polling": ("100 ms polling", "tab:red"),
}
LINE_STYLES = ("-", "--", ":", "-.")

# Labelled ticks of the logarithmic time axis, in milliseconds.
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def _lines(runs, entry_of, paths):
    """Return ``[(label, color, style, samples)]`` of ``paths`` in every run."""
    lines = []
    for index, run in enumerate(runs):
        entry = entry_of(run) or {}
        for path in paths:
            if entry.get(path) and entry[path].get("samples"):
                label, color = PATHS[path]
                lines.append(("%s, %s" % (label, run["label"]), color,
                              LINE_STYLES[index % len(LINE_STYLES)],
                              entry[path]["samples"]))
    return lines


def panels(document):
    """Return ``[(title, [(label, color, style, samples)])]`` to draw."""
    runs = document["runs"]
    result = []
    for transport in TRANSPORT_ORDER:
        lines = _lines(runs,
                       lambda run: run.get("latency", {}).get(transport),
                       ("raw", "callback", "wait_for"))
        if lines:
            result.append((TITLES[transport], lines))
    lines = _lines(runs, lambda run: run.get("rq"),
                   ("wait_for_job", "latest_result", "polling"))
    if lines:
        result.append((TITLES["rq"], lines))
    return result


def draw(json_path, png_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    from matplotlib.ticker import FuncFormatter, NullFormatter

    with open(json_path, encoding="utf-8") as handle:
        document = json.load(handle)
    to_draw = panels(document)
    columns = 2
    rows = max(1, (len(to_draw) + columns - 1) // columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(12, 4 * rows),
                                   squeeze=False)
    for (title, lines), axis in zip(to_draw, axes.flat):
        smallest, largest = float("inf"), 0.0
        for label, color, style, samples in lines:
            values = sorted(value for value in samples if value > 0)
            if not values:
                continue
            smallest = min(smallest, values[0])
            largest = max(largest, values[-1])
            fractions = [(rank + 1) / len(values)
                         for rank in range(len(values))]
            axis.step(values, fractions, where="post", color=color,
                      linestyle=style, label=label)
        axis.set_xscale("log")
        axis.set_xticks([tick for tick in TICKS
                         if smallest / 2 <= tick <= largest * 2])
        axis.xaxis.set_major_formatter(
            FuncFormatter(lambda value, position: "%g" % value))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_title(title)
        axis.set_xlabel("latency (ms, log scale)")
        axis.set_ylabel("fraction of samples")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small", loc="best")
    for axis in list(axes.flat)[len(to_draw):]:
        axis.set_visible(False)
    meta = document["meta"]
    figure.suptitle("job_notifier latency, %s, %s cores" % (
        meta["date"], meta["machine"]["cores"]))
    figure.tight_layout()
    figure.savefig(png_path, dpi=90)
    pyplot.close(figure)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m bench.plot BENCHMARKS.json OUTPUT.png",
              file=sys.stderr)
        return 2
    draw(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
