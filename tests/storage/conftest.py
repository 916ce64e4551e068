"""Fixtures of the storage tests (helpers live in storage_helpers.py)."""

from __future__ import annotations

import pytest
from storage_helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
