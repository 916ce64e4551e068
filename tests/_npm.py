"""The npm clients the tests drive (winston-loki, pino-loki), installed from the registry on demand.

Invariants:
- Installed into ``tests/fixtures/js/node_modules`` (git-ignored) from the committed
  ``package.json`` + ``package-lock.json``, only when missing or older than the lock file, so a
  fresh clone installs once and later runs do nothing.
- A failed install is a test error naming the command, never a skip.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parent / "fixtures" / "js"


def node_clients() -> Path:
    """The directory to run node scripts in, with its packages installed."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("node and npm are needed (tools/sysdeps.sh installs them: apt-get install nodejs npm)")
    stamp = JS / "node_modules" / ".zlog-installed"
    with (JS / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes must not install at once
        if not stamp.exists() or stamp.stat().st_mtime < (JS / "package-lock.json").stat().st_mtime:
            cmd = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"]
            done = subprocess.run(cmd, cwd=JS, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} in {JS} failed:\n{done.stdout}\n{done.stderr}")
            stamp.touch()
    return JS
