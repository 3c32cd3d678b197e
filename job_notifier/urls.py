"""URL parsing helpers shared by the transports."""

from __future__ import absolute_import, unicode_literals

from six.moves.urllib.parse import urlsplit, urlunsplit

from .exceptions import ConfigurationError


def redact_url(url):
    """Return ``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = parts.username or ""
    host = netloc[-1]
    return urlunsplit((parts.scheme, "%s:***@%s" % (userinfo, host),
                       parts.path, parts.query, parts.fragment))


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
