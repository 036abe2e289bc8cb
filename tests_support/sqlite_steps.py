"""The work of SQLite statements, counted in virtual-machine instructions instead of timed.

A count is exact and the same on any machine, so a test can say "this lookup is a primary-key search"
without a clock: a B-tree search or insert is one instruction however deep the tree (its O(log n) page
visits happen inside it), while a scan runs a few instructions per row. A call that costs the same with
10 rows stored as with thousands is therefore no scan.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def sqlite_steps(db: sqlite3.Connection, call: Callable[[], object]) -> int:
    """The virtual-machine instructions that ``call`` runs on ``db`` (the progress handler, called on each)."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0  # 0 = go on

    db.set_progress_handler(tick, 1)
    try:
        call()
    finally:
        db.set_progress_handler(None, 1)
    return steps
