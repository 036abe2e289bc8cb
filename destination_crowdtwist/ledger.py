"""Optional local ledger of activity credits (``ledger_path``), a small SQLite file.

Each dedupe key is written as ``pending`` *before* its credit request is sent and as ``done`` once
CrowdTwist answered. On a later run (a replayed attempt, or a re-run outside the platform that
re-sends every row):

* ``done``    -> the credit was accepted before: report a duplicate, send nothing;
* ``pending`` -> the earlier request may or may not have landed: verify in activity history;
* absent      -> the key was never sent from this machine: credit it without any lookup.

So runs that share a ledger are exactly-once without extra requests. Writes are committed at
once (autocommit) so a crash never loses a ``pending`` mark.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from destination_crowdtwist.errors import ConfigError

PENDING = "pending"
DONE = "done"


class CreditLedger:
    """Thread-safe SQLite ledger of dedupe keys."""

    def __init__(self, path: str) -> None:
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS credits (dedupe_key TEXT PRIMARY KEY, status TEXT NOT NULL, "
                "outcome TEXT, updated_at REAL NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"ledger_path cannot be used as a SQLite ledger ({exc}); choose a writable file path") from exc
        self._lock = threading.Lock()

    def status(self, key: str) -> str | None:
        """``done``, ``pending`` or None for a key never sent."""
        with self._lock:
            row = self._db.execute("SELECT status FROM credits WHERE dedupe_key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def mark_pending(self, key: str) -> None:
        """Record that a credit request for ``key`` is about to be sent."""
        with self._lock:
            self._db.execute(
                "INSERT INTO credits (dedupe_key, status, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(dedupe_key) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at "
                "WHERE credits.status != 'done'",
                (key, PENDING, time.time()),
            )

    def mark_done(self, key: str, outcome: str) -> None:
        """Record that CrowdTwist accepted the credit for ``key`` (or already had it)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO credits (dedupe_key, status, outcome, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(dedupe_key) DO UPDATE SET status = excluded.status, outcome = excluded.outcome, "
                "updated_at = excluded.updated_at",
                (key, DONE, outcome, time.time()),
            )

    def forget(self, key: str) -> None:
        """Drop a pending key whose credit was refused (nothing landed; a fixed row may be re-sent)."""
        with self._lock:
            self._db.execute("DELETE FROM credits WHERE dedupe_key = ? AND status = ?", (key, PENDING))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
