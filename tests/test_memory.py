"""The shared behaviour tests on the in-process memory transport."""

from __future__ import absolute_import, unicode_literals

import pytest

from behaviour import NotifierBehaviour


class TestMemoryTransport(NotifierBehaviour):
    cross_process = False

    @pytest.fixture
    def url(self):
        return "memory://"
