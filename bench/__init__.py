"""Benchmarks of job_notifier against the raw clients and RQ's own waiting.

Run ``python -m bench`` (or ``make bench``): it starts its own servers on
127.0.0.1, measures every figure on Python 3.11 and Python 2.7 next to its
baseline, and writes ``docs/benchmarks.rst``, ``docs/benchmarks.json`` and
``docs/benchmarks.png``. ``python -m bench --help`` lists the options.
"""
