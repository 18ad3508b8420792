"""Fixtures shared by the access tests."""

import pytest

from tests.access.test_gateway import ScriptedUpstream


@pytest.fixture
def upstream() -> ScriptedUpstream:
    """The scripted engine every gateway test talks to (an in-memory Upstream)."""
    return ScriptedUpstream()
