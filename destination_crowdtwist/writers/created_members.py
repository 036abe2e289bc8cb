"""Members this sync created: what the User Profile writer tells the Activity Credit writer.

A member whose create CrowdTwist answered as done (200, not an "already taken" read back after a lost
answer) did not exist a moment before, so it can hold no credit from an earlier attempt: that
attempt ended before this sync started, and a credit to a member that did not exist was refused as
"not found" (nothing queued). Its activity history can then only hold this sync's own credits, which
the credit writer remembers anyway (``writers/credit_memory.py``), so the replay verification of its
rows needs no history read (``writers/activities.py``, point 6). Streams arrive in any order: this
only helps a credit row applied after its member's profile row settled (the pipeline runs one
member's rows in input order, so a credit row placed before the profile row, or one waiting for its
member in ``sync/deferral.py``, is verified or retried as before).

Keyed exactly as a credit names its member: (identifier type, normalised identifier), the same rules
for both writers (``records/mapping.py``). Held in a private temporary SQLite database, like
``CreditMemory``: a sync may create a million members, and 16-byte digests there cost a few MB of
page cache instead of ~100 bytes each on the Python heap. Every failure answers "not created"
(the credit is then verified), so an error here costs a history read, never a credit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from destination_crowdtwist.writers.sqlite_guard import key_digest, scratch_db

logger = logging.getLogger("airbyte")

#: SQLite page cache of the scratch database, in KiB.
CACHE_KIB = 2048




class CreatedMembers:
    """The members created in this sync (thread-safe). Built by wiring when a sync writes both objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._warned = False
        try:
            self._db = scratch_db(CACHE_KIB, ("CREATE TABLE created (member BLOB PRIMARY KEY) WITHOUT ROWID",))
        except sqlite3.Error as exc:
            self._failed(exc)

    def add(self, id_type: str, user_id: str) -> None:
        """CrowdTwist answered this member's create as done (called by the User Profile writer)."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("INSERT OR IGNORE INTO created (member) VALUES (?)", (key_digest(id_type, user_id),))
            except sqlite3.Error as exc:
                self._failed(exc)

    def created(self, id_type: str, user_id: str) -> bool:
        """Whether this sync created the member (False when unsure: the credit is then verified)."""
        with self._lock:
            if self._db is None:
                return False
            try:
                row = self._db.execute(
                    "SELECT 1 FROM created WHERE member = ?", (key_digest(id_type, user_id),)
                ).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc)
                return False
        return row is not None

    def close(self) -> None:
        """Drop the scratch database; from now on every member is "not created"."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _failed(self, exc: sqlite3.Error) -> None:
        """Forget everything (every later answer is "not created") and say so once. Caller holds the lock."""
        if self._db is not None:
            self._db.close()
        self._db = None
        if not self._warned:
            self._warned = True
            logger.warning(
                f"Activity Credit: the temporary list of members created in this sync is not usable ({exc}); "
                "their credits are verified in activity history like any other."
            )
