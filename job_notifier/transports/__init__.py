"""Transport registry: URL scheme to transport class, imported lazily."""

from __future__ import absolute_import, unicode_literals

import importlib

from .._compat import quote
from ..exceptions import ConfigurationError
from ..urls import redact_url, scheme_of

# Each value is "module:Class"; the module is imported on first use, so a
# missing client library only matters for the transport that needs it.
TRANSPORTS = {
    "memory": "job_notifier.transports.memory:MemoryTransport",
    "redis": "job_notifier.transports.redis:RedisTransport",
    "rediss": "job_notifier.transports.redis:RedisTransport",
    "unix": "job_notifier.transports.redis:RedisTransport",
    "postgresql": "job_notifier.transports.postgres:PostgresTransport",
    "postgres": "job_notifier.transports.postgres:PostgresTransport",
    "ws": "job_notifier.transports.websocket:WebSocketTransport",
    "wss": "job_notifier.transports.websocket:WebSocketTransport",
}


def transport_class(url):
    """Return the transport class that handles ``url``'s scheme."""
    scheme = scheme_of(url)
    target = TRANSPORTS.get(scheme)
    if target is None:
        raise ConfigurationError(
            "unsupported URL scheme %s in %s: use redis://, rediss://, "
            "unix://, postgresql://, ws://, wss:// or memory://"
            % (quote(scheme), redact_url(url)))
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)
