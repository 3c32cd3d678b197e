"""The ``job-notifier`` command: listen, wait, emit, broker and demo.

Exit statuses:

- 0: success; for ``wait``, the job finished
- 1: ``wait``: the job failed (with ``--rq``: or RQ stopped or canceled it)
- 2: ``wait``: the timeout passed before the job ended
- 3: an error: invalid URL or option, server unreachable, missing package,
  RQ job not found
- 64: invalid command-line arguments (``EX_USAGE`` of ``sysexits.h``)
- 130: interrupted with Ctrl-C, except ``listen``, which then exits 0
"""

from __future__ import absolute_import, print_function, unicode_literals

import argparse
import functools
import json
import logging
import os
import sys
import time

from . import __version__
from ._compat import Wakeup
from .console import (EXIT_ERROR, PROG, REDIS_SCHEMES, CommandError, Console,
                      format_event, import_rq_module, subscribe, write_stdout)
from .exceptions import NotifierError, WaitTimeout
from .notifier import DEFAULT_CHANNEL, URL_ENVIRONMENT_VARIABLE, Notifier
from .urls import redact_url, scheme_of
from .wire import EVENTS

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

DEFAULT_CONNECT_TIMEOUT = 5.0


# Parsing.


class _Parser(argparse.ArgumentParser):
    """Argument parser that reports a usage error on one line, exit 64."""

    def error(self, message):
        self.exit(EXIT_USAGE, "%s: error: %s (run '%s --help' for usage)\n"
                  % (self.prog, message, self.prog))


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            "invalid number of seconds %r: use a number >= 0 such as 30 or 0.5"
            % (text,))
    return value


def _extras(text):
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            "invalid extras %r: pass a JSON object such as "
            "'{\"error\": \"ValueError: bad input\"}'" % (text,))
    return value


def _add_common_options(parser, suppress_defaults):
    # The subcommands accept the same options as the main command, so they
    # can be given before or after the subcommand; SUPPRESS keeps a
    # subcommand from overwriting a value given before it.
    def default(value):
        return argparse.SUPPRESS if suppress_defaults else value

    parser.add_argument(
        "--url", default=default(None),
        help="notifier URL such as redis://127.0.0.1:6379/0, "
             "postgresql://user@host/db or ws://host:port/bus/jobs "
             "(default: $%s)" % URL_ENVIRONMENT_VARIABLE)
    parser.add_argument(
        "--channel", default=default(DEFAULT_CHANNEL),
        help="channel name (default: %s)" % DEFAULT_CHANNEL)
    parser.add_argument(
        "--connect-timeout", type=_seconds, metavar="SECONDS",
        default=default(DEFAULT_CONNECT_TIMEOUT),
        help="seconds to wait for the first subscription before giving up "
             "(default: %g)" % DEFAULT_CONNECT_TIMEOUT)
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default(False),
        help="print no status lines on stderr, only events and errors")
    parser.add_argument(
        "-v", "--verbose", action="count", default=default(0),
        help="log to stderr: -v for info, -vv for debug, with tracebacks")


def build_parser():
    """Return the argument parser of the ``job-notifier`` command."""
    parser = _Parser(
        prog=PROG,
        description="Listen for, wait for and send job events.",
        epilog="Exit statuses: 0 success (wait: finished), 1 wait: failed, "
               "2 wait: timed out, 3 error (URL, connection, missing "
               "package), 64 usage error, 130 interrupted.")
    parser.add_argument("--version", action="version",
                        version="%s %s" % (PROG, __version__))
    _add_common_options(parser, suppress_defaults=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True

    listen = subparsers.add_parser(
        "listen", help="print every event as it arrives",
        description="Print every event as it arrives, one line per event, "
                    "until interrupted with Ctrl-C.")
    _add_common_options(listen, suppress_defaults=True)
    listen.add_argument("--job", action="append", metavar="ID",
                        help="print only events of this job id (repeatable)")
    listen.add_argument("--event", action="append", choices=EVENTS,
                        metavar="NAME",
                        help="print only this event: %s (repeatable)"
                             % ", ".join(EVENTS))
    listen.add_argument("--json", action="store_true",
                        help="print one JSON object per line")

    wait = subparsers.add_parser(
        "wait", help="block until a job finishes or fails",
        description="Block until the job finishes or fails. Exit status: "
                    "0 finished, 1 failed (or stopped or canceled in RQ), "
                    "2 timed out, 3 error.")
    _add_common_options(wait, suppress_defaults=True)
    wait.add_argument("job_id", metavar="JOB_ID")
    wait.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                      help="give up after this many seconds (default: wait "
                           "for ever)")
    wait.add_argument("--rq", action="store_true",
                      help="read the job's status stored by RQ first, so a "
                           "job that has already ended returns at once")
    wait.add_argument("--rq-url", metavar="URL",
                      help="Redis URL of the RQ queue (default: --url when "
                           "it is a Redis URL)")
    wait.add_argument("--json", action="store_true",
                      help="print the event as a JSON object")

    emit = subparsers.add_parser(
        "emit", help="send one event",
        description="Send one event for a job, for jobs run by cron or by "
                    "any other system.")
    _add_common_options(emit, suppress_defaults=True)
    emit.add_argument("job_id", metavar="JOB_ID")
    emit.add_argument("event", metavar="EVENT", choices=EVENTS,
                      help="one of %s" % ", ".join(EVENTS))
    emit.add_argument("--extras", type=_extras, metavar="JSON",
                      help="a JSON object sent with the event, such as "
                           "'{\"error\": \"ValueError: bad input\"}'")

    # The broker parses its own arguments, --help included.
    subparsers.add_parser(
        "broker", add_help=False,
        help="run the WebSocket broker (Python 3.9+; "
             "'job-notifier broker --help' lists its options)")

    demo = subparsers.add_parser(
        "demo", help="run sample jobs in worker processes and watch them",
        description="Run sample jobs in worker processes, some succeeding "
                    "and some failing, and show each event and how long "
                    "each waiter took to learn of its job's end. With no "
                    "URL it needs no server; with a Redis URL it runs the "
                    "jobs on real RQ workers.")
    _add_common_options(demo, suppress_defaults=True)
    return parser, subparsers.choices


class _EventPrinter(object):
    """Callback for ``job`` that prints each selected event on stdout."""

    def __init__(self, events, as_json):
        self._events = frozenset(events) if events else None
        self._as_json = as_json
        self.stopped = Wakeup()

    def __call__(self, notifier, job_id, event, extras=None):
        if self._events is not None and event not in self._events:
            return
        line = format_event(time.time(), job_id, event, extras, self._as_json)
        if not write_stdout(line):
            self.stopped.set()


# Commands.


def _notifier_url(args):
    return args.url or os.environ.get(URL_ENVIRONMENT_VARIABLE) or None


def _open_notifier(args, default_url=None):
    url = _notifier_url(args) or default_url
    if url is None:
        raise CommandError(
            "no notifier URL: pass --url redis://127.0.0.1:6379/0 (or "
            "postgresql://..., ws://...) or set %s" % URL_ENVIRONMENT_VARIABLE)
    if scheme_of(url) == "memory":
        raise CommandError(
            "%s is an in-process bus that other processes cannot reach: pass "
            "a server URL such as --url redis://127.0.0.1:6379/0"
            % redact_url(url))
    return Notifier.from_url(url, channel=args.channel)


def command_listen(args, console):
    """Print each event until Ctrl-C or until stdout is closed."""
    notifier = _open_notifier(args)
    try:
        printer = _EventPrinter(args.event, args.json)
        if args.job:
            for job_id in sorted(set(args.job)):
                notifier.on("job:%s" % job_id, printer, with_extras=True)
        else:
            notifier.on("job", printer, with_extras=True)
        subscribe(notifier, args.connect_timeout, console)
        console.status("listening on %s; press Ctrl-C to stop"
                       % notifier.transport.describe())
        # The printer sets this only when stdout is closed. On Python 2.7
        # the wait is cut into slices, so Ctrl-C still interrupts it.
        printer.stopped.wait()
    finally:
        notifier.close()
    return EXIT_OK


def command_wait(args, console):
    """Block until the job ends; return 0 if it finished, 1 if it failed."""
    rq_url = _rq_url(args) if args.rq else None
    # With --rq and no notifier URL, the events come through RQ's Redis,
    # where NotifyingWorker sends them by default.
    notifier = _open_notifier(args, default_url=rq_url)
    try:
        subscribe(notifier, args.connect_timeout, console)
        if args.rq:
            result = _wait_rq(notifier, args, console, rq_url)
        else:
            with notifier.watch(args.job_id,
                                subscribe_timeout=args.connect_timeout) as watch:
                console.status("waiting for job %s on %s"
                               % (args.job_id, notifier.transport.describe()))
                result = _wait_or_timeout(watch.wait, args, console)
    finally:
        notifier.close()
    if result is None:
        return EXIT_TIMEOUT
    write_stdout(format_event(time.time(), result.job_id, result,
                              result.extras, args.json))
    return EXIT_OK if result == "finished" else EXIT_FAILED


def _rq_url(args):
    url = args.rq_url or _notifier_url(args)
    if url is None or scheme_of(url) not in REDIS_SCHEMES:
        raise CommandError(
            "--rq needs the Redis URL of the RQ queues: pass --rq-url "
            "redis://HOST:PORT/DB")
    return url


def _wait_rq(notifier, args, console, rq_url):
    rq_integration = import_rq_module("job_notifier.contrib.rq")
    import redis
    from rq.exceptions import NoSuchJobError

    connection = redis.Redis.from_url(rq_url)
    console.status("waiting for RQ job %s on %s" % (
        args.job_id, notifier.transport.describe()))
    wait = functools.partial(rq_integration.wait_for_job, notifier,
                             args.job_id, connection=connection)
    try:
        return _wait_or_timeout(wait, args, console)
    except NoSuchJobError as exc:
        raise CommandError("%s. Check the job id, and that %s is the Redis "
                           "server of its queue" % (exc, redact_url(rq_url)))
    except redis.exceptions.RedisError as exc:
        raise CommandError(
            "cannot read the status of RQ job %s from %s (%s: %s): check "
            "--rq-url" % (args.job_id, redact_url(rq_url),
                          type(exc).__name__, exc))


def _wait_or_timeout(wait, args, console):
    try:
        return wait(timeout=args.timeout)
    except WaitTimeout as exc:
        console.error("%s: run it again with a longer --timeout, or check "
                      "that a worker runs the job" % exc)
        return None


def command_emit(args, console):
    """Send one event and exit."""
    notifier = _open_notifier(args)
    try:
        notifier.notify(args.job_id, args.event, extras=args.extras)
    except NotifierError:
        raise
    except Exception as exc:
        # NOTE: not every client error becomes a TransportError: redis-py
        # 3.5 raises ResponseError for a wrong password, for example.
        raise CommandError(
            "sending %s for job %s on %s failed (%s: %s): check the URL and "
            "its password" % (args.event, args.job_id,
                              notifier.transport.describe(),
                              type(exc).__name__, exc))
    finally:
        notifier.close()
    console.status("sent %s for job %s on %s"
                   % (args.event, args.job_id, notifier.transport.describe()))
    return EXIT_OK


def command_broker(args, console, broker_argv):
    """Run the WebSocket broker with its own arguments."""
    try:
        from .broker import main as broker_main
    except ImportError as exc:
        raise CommandError(
            "the broker cannot start (%s): it needs Python 3.9 or later and "
            "pip install 'job_notifier[broker]'" % exc)
    return broker_main(broker_argv)


def command_demo(args, console):
    """Run sample jobs in worker processes and show their events live."""
    from .demo import run_demo
    return run_demo(_notifier_url(args), args.channel, args.connect_timeout,
                    console)


COMMANDS = {
    "listen": command_listen,
    "wait": command_wait,
    "emit": command_emit,
    "demo": command_demo,
}


def main(argv=None):
    """Run the ``job-notifier`` command and return its exit status."""
    parser, subparsers = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "broker":
        subparsers[args.command].error(
            "unrecognized arguments: %s" % " ".join(unknown))
    console = Console(args.verbose, args.quiet,
                      [_notifier_url(args), getattr(args, "rq_url", None)])
    try:
        if args.command == "broker":
            return command_broker(args, console, unknown)
        return COMMANDS[args.command](args, console)
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "listen" else EXIT_INTERRUPTED
    except (CommandError, NotifierError) as exc:
        if console.verbosity:
            log.error("%s %s failed", PROG, args.command, exc_info=True)
        console.error(_one_line(exc))
        return getattr(exc, "status", EXIT_ERROR)


def _one_line(exc):
    return " ".join(("%s" % (exc,)).split())


if __name__ == "__main__":
    sys.exit(main())
