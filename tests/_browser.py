"""Debian's Chromium for the viewer's browser tests, driven by Playwright (no browser download).

Invariants:
- One launch line for every browser test: headless, no sandbox (root), no background network.
- ``chromium()`` is the path to run; where it is absent the calling module is skipped with the
  command that installs it, and under CI (where ``make test`` installed it) that is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("ZLOG_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is absent: `make test` puts it there (tools/sysdeps.sh)"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    return CHROMIUM
