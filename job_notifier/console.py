"""Output of the ``job-notifier`` command: events, status lines and errors.

Events go to stdout; status lines, errors and log records go to stderr,
with every password of the command's URLs replaced by ``***``.
"""

from __future__ import absolute_import, print_function, unicode_literals

import collections
import errno
import importlib
import json
import logging
import os
import sys
import time

from six.moves.urllib.parse import unquote, urlsplit

from ._compat import write_line
from .exceptions import NotifierError
from .notifier import URL_ENVIRONMENT_VARIABLE
from .urls import redact_url

PROG = "job-notifier"

# Exit status of an error other than a usage error; see job_notifier.cli.
EXIT_ERROR = 3

# URL schemes of a Redis server, the only kind that RQ runs on.
REDIS_SCHEMES = ("redis", "rediss", "unix")


class CommandError(Exception):
    """A user error that ends the command with one line on stderr."""

    def __init__(self, message, status=EXIT_ERROR):
        super(CommandError, self).__init__(message)
        self.status = status



class _Redactor(object):
    """Remove the passwords of the command's URLs from text before output."""

    def __init__(self, urls):
        self._replacements = []
        for url in urls:
            try:
                password = urlsplit(url).password if url else None
            except ValueError:
                password = None
            if not password:
                continue
            self._replacements.append((url, redact_url(url)))
            for form in sorted(set([password, unquote(password)]), key=len,
                               reverse=True):
                self._replacements.append((form, "***"))

    def __call__(self, text):
        for secret, replacement in self._replacements:
            text = text.replace(secret, replacement)
        return text


class _StderrFormatter(logging.Formatter):
    """Log format for stderr that hides passwords, and tracebacks unless -v."""

    def __init__(self, redact, tracebacks, fmt):
        logging.Formatter.__init__(self, fmt)
        self._redact = redact
        self._tracebacks = tracebacks

    def format(self, record):
        if not self._tracebacks and (record.exc_info or record.exc_text):
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info = None
            record.exc_text = None
        return self._redact(logging.Formatter.format(self, record))


class Console(object):
    """Status lines, errors and logging on stderr, without passwords."""

    def __init__(self, verbosity, quiet, urls):
        self.verbosity = verbosity or 0
        self.quiet = quiet
        self.redact = _Redactor(urls)
        self._handler = None
        if self.verbosity:
            self._install_handler(
                logging.getLogger(),
                logging.INFO if self.verbosity == 1 else logging.DEBUG,
                "%(asctime)s %(levelname)s %(name)s: %(message)s")

    def _install_handler(self, logger, level, fmt):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter(
            self.redact, tracebacks=bool(self.verbosity), fmt=fmt))
        logger.addHandler(handler)
        logger.setLevel(level)
        self._handler = handler

    def show_warnings(self):
        """Print the library's warnings, such as a lost connection, from now on.

        Before the first subscription the command reports a failure itself
        in one line, so the listener's retry messages stay hidden until then.
        """
        if self._handler is None:
            self._install_handler(logging.getLogger("job_notifier"),
                                  logging.WARNING,
                                  "%s: %%(levelname)s: %%(message)s" % PROG)

    def status(self, message):
        if not self.quiet:
            write_line(sys.stderr, "%s: %s" % (PROG, self.redact(message)))

    def error(self, message):
        write_line(sys.stderr, "%s: error: %s" % (PROG, self.redact(message)))


def format_timestamp(seconds):
    """Return a Unix time as ISO 8601 in UTC with microseconds."""
    whole = int(seconds)
    return "%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)),
                         int(round((seconds - whole) * 1e6)) % 1000000)


def format_event(received_at, job_id, event, extras, as_json):
    """Return one output line: time, job id, event and extras if any."""
    if as_json:
        record = collections.OrderedDict([
            ("time", format_timestamp(received_at)), ("job_id", job_id),
            ("event", event), ("extras", extras or {})])
        return json.dumps(record, ensure_ascii=False)
    line = "%s %s %s" % (format_timestamp(received_at), job_id, event)
    if extras:
        line += " " + json.dumps(extras, ensure_ascii=False, sort_keys=True)
    return line


def write_stdout(line):
    """Write ``line`` to stdout; return False if the reader closed the pipe.

    Once the pipe is closed, as ``head`` does, stdout goes to /dev/null, so
    that Python prints no error about it when it flushes at exit.
    """
    try:
        write_line(sys.stdout, line)
    except (IOError, OSError) as exc:
        if getattr(exc, "errno", None) != errno.EPIPE:
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


def subscribe(notifier, timeout, console):
    """Start listening within ``timeout`` seconds or raise ``CommandError``.

    The listener keeps retrying in the background after a failure, so the
    error message reports the last error that it met.
    """
    try:
        notifier.start(timeout=timeout)
    except NotifierError:
        raise CommandError(
            "cannot subscribe on %s within %g s (%s): check that the "
            "server is running and that --url or %s is right"
            % (notifier.transport.describe(), timeout,
               notifier.health()["last_error"] or "no reply",
               URL_ENVIRONMENT_VARIABLE))
    console.show_warnings()


def import_rq_module(name):
    """Import and return a module that needs RQ, or raise ``CommandError``."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CommandError(
            "RQ support cannot be imported (%s): run pip install "
            "'job_notifier[rq]'" % (exc,))
