"""What the Activity Credit writer remembers for one sync, with memory that stays flat.

Two things must be remembered for the whole sync, however many rows it has:

* **Events seen** (member, activity, dedupe key): the first row of each, and whether it was
  accepted. A later row of an accepted event is a duplicate and must never be credited again, so
  this memory cannot forget anything: a row may repeat an event seen a million rows earlier, and
  no fallback can stand in for it (activity history lags behind by the award queue delay and does
  not list credits that were accepted but not awarded, e.g. over a frequency cap).
* **Activity history read per member** (``credit_verification``): the dedupe keys found, plus the
  credits this sync made since, so each member's history is read once per sync.

Kept in Python dicts and sets these cost several hundred bytes per row (about 600 MB at a million
rows). They are kept instead in a *private temporary SQLite database* (``sqlite3.connect("")``):
SQLite holds it in its page cache (a few MB) and spills to an unnamed temporary file beyond
that, deleted when the connection closes or the process ends. Nothing is evicted, so the answers
are exactly those of the in-memory version; each call is one primary-key search or insert (tens of
microseconds, nothing next to a request). Events and members are stored as 16-byte SHA-256
digests (an accidental collision is practically impossible), so no identifier is written to disk
in clear text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager

from destination_crowdtwist.writers.sqlite_guard import key_digest, scratch_db, sqlite_guard

_SCHEMA = (
    "CREATE TABLE events (event BLOB PRIMARY KEY, seq INTEGER NOT NULL, accepted INTEGER NOT NULL DEFAULT 0) "
    "WITHOUT ROWID",
    # read_at: when the read began (epoch seconds): a read taken before an earlier request's award could
    # show proves nothing about that request (writers/credit_history.py).
    "CREATE TABLE history_members (member BLOB PRIMARY KEY, read_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE history_keys (member BLOB NOT NULL, dedupe_key BLOB NOT NULL, "
    "PRIMARY KEY (member, dedupe_key)) WITHOUT ROWID",
)
#: SQLite page cache of the scratch database, in KiB (negative = KiB in SQLite's convention).
CACHE_KIB = 8192




class CreditMemory:
    """Events and activity-history keys of one sync, exact and off the Python heap. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        with self._guard():
            self._open()

    def _open(self) -> None:
        # Any SQLite error stops the sync (see _guard), so a statement that fails half-way is never read back.
        self._db = scratch_db(CACHE_KIB, _SCHEMA)

    def _guard(self) -> AbstractContextManager[None]:
        # Forgetting an event could credit it twice: stop rather than go on without it.
        return sqlite_guard(self._lock, lambda exc: (
            f"The temporary space that holds this sync's credit events is not usable ({exc}). Free space "
            "in the temporary directory (TMPDIR, else /var/tmp or /tmp) and run the sync again."
        ))

    # -- events ----------------------------------------------------------------------------------

    def first_row(self, event: tuple[str, ...], seq: int) -> int:
        """The ``seq`` of the first row of ``event`` in this sync (``seq`` itself for a new event)."""
        key = key_digest(*event)
        with self._guard():
            self._db.execute("INSERT OR IGNORE INTO events (event, seq) VALUES (?, ?)", (key, seq))
            row = self._db.execute("SELECT seq FROM events WHERE event = ?", (key,)).fetchone()
        return int(row[0])

    def mark_accepted(self, event: tuple[str, ...]) -> None:
        """A row of ``event`` was accepted (credited, duplicate, not awarded): later rows are duplicates."""
        key = key_digest(*event)
        with self._guard():
            self._db.execute("UPDATE events SET accepted = 1 WHERE event = ?", (key,))

    def accepted(self, event: tuple[str, ...]) -> bool:
        """Whether a row of ``event`` was accepted earlier in this sync."""
        key = key_digest(*event)
        with self._guard():
            row = self._db.execute("SELECT accepted FROM events WHERE event = ?", (key,)).fetchone()
        return bool(row and row[0])

    # -- activity history --------------------------------------------------------------------------

    def history_has(self, member: tuple[str, str], dedupe_key: str, *, read_since: float | None = None) -> bool | None:
        """Whether the member's history (as read, plus this sync's credits) holds the key; None if not read
        (or, with ``read_since``, if the read began before that time).
        """
        who = key_digest(*member)
        with self._guard():
            read = self._db.execute("SELECT read_at FROM history_members WHERE member = ?", (who,)).fetchone()
            if read is None or (read_since is not None and float(read[0]) < read_since):
                return None
            row = self._db.execute(
                "SELECT 1 FROM history_keys WHERE member = ? AND dedupe_key = ?", (who, key_digest(dedupe_key))
            ).fetchone()
        return row is not None

    def set_history(self, member: tuple[str, str], dedupe_keys: Iterable[str], *, read_at: float = 0.0) -> None:
        """Replace what is known of the member's history with a fresh read, begun at ``read_at``."""
        who = key_digest(*member)
        rows = [(who, key_digest(key)) for key in set(dedupe_keys)]
        with self._guard():
            self._db.execute("DELETE FROM history_keys WHERE member = ?", (who,))
            self._db.executemany("INSERT OR IGNORE INTO history_keys (member, dedupe_key) VALUES (?, ?)", rows)
            # Marked read last: a member is never marked read with only part of its keys.
            self._db.execute(
                "INSERT INTO history_members (member, read_at) VALUES (?, ?) "
                "ON CONFLICT(member) DO UPDATE SET read_at = excluded.read_at", (who, read_at),
            )

    def remember(self, member: tuple[str, str], dedupe_key: str) -> None:
        """Add a credit this sync made to the member's history, if that history was read."""
        who = key_digest(*member)
        with self._guard():
            self._db.execute(
                "INSERT OR IGNORE INTO history_keys (member, dedupe_key) "
                "SELECT ?, ? WHERE EXISTS (SELECT 1 FROM history_members WHERE member = ?)",
                (who, key_digest(dedupe_key), who),
            )

    def close(self) -> None:
        """Drop the scratch database."""
        with self._lock:
            self._db.close()
