"""``job-notifier broker``: a WebSocket bus for ``ws://`` notifiers.

Run it with ``job-notifier broker`` or ``python -m job_notifier.broker``.
It speaks the bus protocol of Perl's Mercury:

- WebSocket ``/bus/<topic>``: every text message goes to every other peer
  on the topic, and with ``?echo=1`` back to the sender too;
- HTTP ``POST /bus/<topic>``: the request body goes to every peer;
- HTTP ``GET /stats``: the peers of each topic, as JSON.

The broker needs Python 3.9 or newer and websockets 13 or newer
(``pip install 'job_notifier[broker]'``). This module only parses options
and checks the interpreter, so it also imports on Python 2.7 and reports
the version there. The server itself is in ``_broker_server``.
"""

from __future__ import absolute_import, print_function, unicode_literals

import argparse
import logging
import os
import sys

from .exceptions import ConfigurationError, MissingDependencyError, NotifierError
from .transports.websocket import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# The keepalive defaults of websockets' serve(): a peer that sends no pong
# within the timeout is dropped.
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
TOKEN_ENVIRONMENT_VARIABLE = "JOB_NOTIFIER_BROKER_TOKEN"

MINIMUM_PYTHON = (3, 9)
MINIMUM_WEBSOCKETS = 13


def add_arguments(parser):
    """Add the broker's options to an ``argparse`` parser."""
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default: %(default)s; "
                             "use 0.0.0.0 to accept other hosts)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="TCP port to listen on (default: %(default)s; "
                             "0 picks a free port)")

    parser.add_argument("--max-message-size", type=int,
                        default=DEFAULT_MAX_MESSAGE_BYTES, metavar="BYTES",
                        help="largest message accepted, in bytes; a peer "
                             "that sends a larger one is disconnected "
                             "(default: %(default)s)")
    parser.add_argument("--token-file", metavar="PATH",
                        help="file holding the shared token that clients "
                             "must send as 'Authorization: Bearer TOKEN' or "
                             "?token=TOKEN (default: the %s environment "
                             "variable; no token if unset)"
                             % TOKEN_ENVIRONMENT_VARIABLE)
    parser.add_argument("--allow-origin", action="append", default=[],
                        metavar="ORIGIN", dest="allowed_origins",
                        help="accept requests with this Origin header, such "
                             "as https://app.example.com; repeat for more. "
                             "Requests without an Origin header are always "
                             "accepted. Default: any origin")

    parser.add_argument("--ping-interval", type=float,
                        default=DEFAULT_PING_INTERVAL, metavar="SECONDS",
                        help="seconds between pings to each peer "
                             "(default: %(default)s)")
    parser.add_argument("--ping-timeout", type=float,
                        default=DEFAULT_PING_TIMEOUT, metavar="SECONDS",
                        help="seconds to wait for a pong before dropping the "
                             "peer (default: %(default)s)")

    parser.add_argument("--certfile", metavar="PATH",
                        help="PEM certificate chain; serves wss:// and https")
    parser.add_argument("--keyfile", metavar="PATH",
                        help="PEM private key of --certfile")

    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="logging level (default: %(default)s)")
    return parser


def options_from_arguments(args):
    """Return the keyword options of ``run_broker()`` for parsed ``args``."""
    return {
        "host": args.host,
        "port": args.port,
        "max_message_bytes": args.max_message_size,
        "token": read_token(args.token_file),
        "allowed_origins": args.allowed_origins,
        "ping_interval": args.ping_interval,
        "ping_timeout": args.ping_timeout,
        "certfile": args.certfile,
        "keyfile": args.keyfile,
    }


def read_token(token_file=None, environ=None):
    """Return the shared token from ``token_file`` or the environment.

    Return None when neither is set. The token is never taken from the
    command line, where other users of the machine could read it in ``ps``.
    """
    environ = os.environ if environ is None else environ
    if token_file is None:
        token = environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None
        source = TOKEN_ENVIRONMENT_VARIABLE
    else:
        try:
            with open(token_file, "rb") as stream:
                token = stream.read().decode("utf-8").strip()
        except (IOError, OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                "cannot read the token file %s (%s): pass a readable UTF-8 "
                "file" % (token_file, exc))
        source = token_file
        if not token:
            raise ConfigurationError(
                "the token file %s is empty: write the token into it"
                % (token_file,))
    if token is not None and any(character.isspace() for character in token):
        raise ConfigurationError(
            "the token in %s contains white space: use a token without "
            "spaces or line breaks" % (source,))
    return token


def check_runtime():
    """Raise ``NotifierError`` unless this interpreter can run the broker."""
    if sys.version_info < MINIMUM_PYTHON:
        raise NotifierError(
            "the broker needs Python %d.%d or newer, and this is "
            "Python %d.%d: run it with a newer interpreter, for example "
            "python3 -m job_notifier.broker" % (
                MINIMUM_PYTHON + tuple(sys.version_info[:2])))
    try:
        import websockets
    except ImportError as exc:
        raise MissingDependencyError("websockets", "broker", exc)
    version = getattr(websockets, "__version__", None) or "0"
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MINIMUM_WEBSOCKETS:
        raise MissingDependencyError(
            "websockets>=%d" % MINIMUM_WEBSOCKETS, "broker",
            "websockets %s is installed" % version)


def run_broker(host=DEFAULT_HOST, port=DEFAULT_PORT, **options):
    """Run the broker on ``host``:``port`` until SIGINT or SIGTERM.

    Options: ``max_message_bytes``, ``token``, ``allowed_origins`` (a list),
    ``ping_interval``, ``ping_timeout``, ``certfile`` and ``keyfile``. Raise
    ``NotifierError`` when the interpreter or websockets is too old and
    ``ConfigurationError`` for an invalid option.
    """
    check_runtime()
    from . import _broker_server
    _broker_server.run(host=host, port=port, **options)


def main(argv=None):
    """Run ``job-notifier broker`` with the command line ``argv``.

    Return the exit status: 0 after a clean stop, 2 for a configuration
    error.
    """
    parser = argparse.ArgumentParser(
        prog="job-notifier broker",
        description="Run a WebSocket bus for ws:// notifiers: "
                    "/bus/<topic> relays each text message to the other "
                    "peers of the topic.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: "
                               "%(message)s")
    if args.log_level != "debug":
        # The broker logs connections itself; websockets would repeat them.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        run_broker(**options_from_arguments(args))
    except NotifierError as exc:
        print("job-notifier broker: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
