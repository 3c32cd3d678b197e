"""The shared behaviour tests on the in-process memory transport."""

from __future__ import absolute_import, unicode_literals

import threading

import pytest

from behaviour import NotifierBehaviour
from job_notifier import ConfigurationError, Notifier


class TestMemoryTransport(NotifierBehaviour):
    cross_process = False

    @pytest.fixture
    def url(self):
        return "memory://"


@pytest.mark.parametrize("timeout", [float("inf"), 1e10])
def test_huge_timeout_waits_like_none(timeout):
    """Python 3's Lock.acquire() raises OverflowError past TIMEOUT_MAX."""
    notifier = Notifier.from_url("memory://")
    try:
        threading.Timer(0.1, notifier.notify, ("long", "finished")).start()
        assert notifier.wait_for("long", timeout=timeout) == "finished"
    finally:
        notifier.close()


@pytest.mark.parametrize("arguments, named", [
    ({"events": None}, "None"),
    ({"events": 5}, "5"),
    ({"check": 5}, "5"),
    ({"check": "finished"}, "'finished'"),
])
def test_invalid_wait_arguments_name_the_value(arguments, named):
    notifier = Notifier.from_url("memory://")
    try:
        with pytest.raises(ConfigurationError) as raised:
            notifier.wait_for("job", timeout=1, **arguments)
        assert named in str(raised.value)
        with pytest.raises(ConfigurationError):
            notifier.watch("job", **arguments)
        assert notifier.health()["pending_waiters"] == 0
    finally:
        notifier.close()


@pytest.mark.parametrize("digits", [1100, 5000])
def test_oversized_integer_job_id_is_rejected(digits):
    """Receivers drop ids over 1024 characters, so senders must not send them."""
    notifier = Notifier.from_url("memory://")
    try:
        with pytest.raises(ConfigurationError) as raised:
            notifier.notify(10 ** digits, "finished")
        assert "characters" in str(raised.value)
        with pytest.raises(ConfigurationError):
            notifier.wait_for(10 ** digits, timeout=0)
    finally:
        notifier.close()


def test_extras_that_are_not_a_dict_raise():
    """Only a dict or None is accepted as extras, even when it is empty."""
    from job_notifier import ConfigurationError, Notifier
    notifier = Notifier.from_url("memory://extras-check")
    try:
        for extras in ([], 0, "", (), "error"):
            with pytest.raises(ConfigurationError) as raised:
                notifier.notify(1, "failed", extras=extras)
            assert "dict" in str(raised.value)
        notifier.notify(1, "failed", extras={})
        notifier.notify(1, "failed", extras=None)
    finally:
        notifier.close()
