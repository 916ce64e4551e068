"""``python -m zlog``: the same entry point as the ``zlog`` console script.

Invariants:
- Behaves exactly like ``zlog``: same arguments, same exit codes.
"""

from __future__ import annotations

import sys

from zlog.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())
