"""URL parsing helpers shared by the transports."""

from __future__ import absolute_import, unicode_literals

import re

from six.moves.urllib.parse import urlsplit, urlunsplit

from .exceptions import ConfigurationError

# libpq and redis-py also read a password from the query string.
_QUERY_PASSWORD = re.compile(r"(^|&)(password=)[^&]*", re.IGNORECASE)


def redact_url(url):
    """Return ``url`` with its passwords replaced by ``***``.

    Both the password before the host and a ``password=`` query parameter
    are replaced.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    query = _QUERY_PASSWORD.sub(r"\1\2***", parts.query)
    if parts.password is None and query == parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = "%s:***@%s" % (parts.username or "", host)
    return urlunsplit((parts.scheme, netloc, parts.path, query,
                       parts.fragment))


def scheme_of(url):
    if not isinstance(url, str) and not hasattr(url, "split"):
        raise ConfigurationError(
            "invalid notifier URL %r: pass a string such as "
            "redis://127.0.0.1:6379/0" % (url,))
    if "://" not in url:
        raise ConfigurationError(
            "invalid notifier URL %r: it has no scheme; use redis://, "
            "rediss://, unix://, postgresql://, ws://, wss:// or memory://"
            % (redact_url(url),))
    return url.split("://", 1)[0].lower()
