"""Optional local ledger of activity credits (``ledger_path``), a small SQLite file.

Each dedupe key is written as ``pending`` *before* its credit request is sent and as ``done`` once
CrowdTwist answered. On a later run (a replayed attempt, or a re-run outside the platform that
re-sends every row):

* ``done``    -> the credit was accepted before: report a duplicate, send nothing;
* ``pending`` -> the earlier request may or may not have landed: verify in activity history;
* absent      -> the key was never sent from this ledger: no lookup needed, *if* the ledger has a
  history for this program (see :meth:`CreditLedger.size`; an empty ledger proves nothing, e.g.
  a fresh container of a replayed attempt).

Keys are scoped by ``scope`` (the writer passes the API base URL, i.e. the CrowdTwist program), so
a ledger first used against the sandbox never makes production credits look like duplicates.
Writes are committed at once (autocommit) so a crash never loses a ``pending`` mark.

**Which session sent a pending key, and whether it ended quietly** (issue 20: the award-queue wait).
A ``pending`` key is verified in activity history, and that read normally waits until
``award_queue_delay_seconds`` after the sync started: the earlier request may still be queued. Each
pending mark also records the writer's session id (``credit_sent_by``, in the same transaction), and
a session that closes with no credit request on the way records when (``credit_sessions.quiet_at``);
after its close it can send nothing more (the writer refuses, and its ledger is closed). So a key
whose mark is no newer than its session's quiet close had its last request answered, or given up on,
by then: :meth:`CreditLedger.quiet_since` gives that time, and its award is visible
``award_queue_delay_seconds`` later (the same bound the writer already trusts after a lost answer).
A session killed (kill -9) never records a quiet close, so its keys keep the wait; a mark by a writer
that records no session (an older version) is newer than any quiet close, so it keeps it too. These
two tables live beside ``credits`` in the same file; the sync state in the bucket copies only
``credits`` (a ledger from the bucket is never trusted to prove this: ``writers/activities.py``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from destination_crowdtwist.api.errors import ConfigError

PENDING = "pending"
DONE = "done"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS credits ("
    "scope TEXT NOT NULL, dedupe_key TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, "
    "updated_at REAL NOT NULL, PRIMARY KEY (scope, dedupe_key))"
)
_SESSION_SCHEMA = (
    # The session whose request a pending key is waiting on (dropped when the key is done or forgotten).
    "CREATE TABLE IF NOT EXISTS credit_sent_by (scope TEXT NOT NULL, dedupe_key TEXT NOT NULL, "
    "session TEXT NOT NULL, PRIMARY KEY (scope, dedupe_key))",
    # Sessions that closed with no credit request on the way, and when (only those some pending key names).
    "CREATE TABLE IF NOT EXISTS credit_sessions (scope TEXT NOT NULL, session TEXT NOT NULL, "
    "quiet_at REAL NOT NULL, PRIMARY KEY (scope, session))",
)


def ledger_scope(api_base_url: str) -> str:
    """The scope of a program's keys. "v2": since 0.2.0 keys are events (see :func:`event_key`); a
    0.1.0 ledger's bare keys sit in another scope, so an upgraded ledger starts empty (untrusted,
    so rows are verified) instead of silently matching nothing.
    """
    return f"v2|{api_base_url}"


def event_key(id_type: str, user_id: str, activity_id: str, dedupe_key: str) -> str:
    """One credit event as a ledger key: the same dedupe key for two members or activities is two events."""
    return f"{id_type}:{user_id}|{activity_id}|{dedupe_key}"


class CreditLedger:
    """Thread-safe SQLite ledger of dedupe keys for one scope (CrowdTwist program)."""

    def __init__(self, path: str, scope: str = "", *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        try:
            # One connection shared by the worker threads, serialised by self._lock.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(credits)")]
            if columns and "scope" not in columns:
                raise sqlite3.DatabaseError("the file holds a 'credits' table of another layout")
            self._db.execute(_SCHEMA)
            for statement in _SESSION_SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"ledger_path cannot be used as a SQLite ledger ({exc}); choose a writable file path"
            ) from exc

    def size(self) -> int:
        """How many keys (pending or done) this ledger holds for its scope."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM credits WHERE scope = ?", (self.scope,)).fetchone()
        return int(row[0])

    def status(self, key: str) -> str | None:
        """``done``, ``pending`` or None for a key never sent."""
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM credits WHERE scope = ? AND dedupe_key = ?", (self.scope, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def outcome(self, key: str) -> str | None:
        """The outcome recorded with a ``done`` key (``credited``, ``not_awarded``, ...), else None."""
        with self._lock:
            row = self._db.execute(
                "SELECT outcome FROM credits WHERE scope = ? AND dedupe_key = ? AND status = ?",
                (self.scope, key, DONE),
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def mark_pending(self, key: str, session: str | None = None) -> None:
        """Record that a credit request for ``key`` is about to be sent (a done key stays done), by ``session``.

        One transaction: a pending mark never names the session of an earlier request of the same key.
        """
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO credits (scope, dedupe_key, status, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(scope, dedupe_key) DO UPDATE SET status = excluded.status, "
                "updated_at = excluded.updated_at WHERE credits.status != 'done'",
                (self.scope, key, PENDING, self._clock()),
            )
            if session is None:
                self._db.execute("DELETE FROM credit_sent_by WHERE scope = ? AND dedupe_key = ?", (self.scope, key))
            else:
                self._db.execute(
                    "INSERT INTO credit_sent_by (scope, dedupe_key, session) VALUES (?, ?, ?) "
                    "ON CONFLICT(scope, dedupe_key) DO UPDATE SET session = excluded.session",
                    (self.scope, key, session),
                )

    def mark_done(self, key: str, outcome: str) -> None:
        """Record that CrowdTwist accepted the credit for ``key`` (or already had it)."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO credits (scope, dedupe_key, status, outcome, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(scope, dedupe_key) DO UPDATE SET status = excluded.status, "
                "outcome = excluded.outcome, updated_at = excluded.updated_at",
                (self.scope, key, DONE, outcome, self._clock()),
            )
            self._db.execute("DELETE FROM credit_sent_by WHERE scope = ? AND dedupe_key = ?", (self.scope, key))

    def forget(self, key: str) -> None:
        """Drop a pending key whose credit was refused (nothing landed; a fixed row may be re-sent)."""
        with self._lock, self._transaction():
            self._db.execute(
                "DELETE FROM credits WHERE scope = ? AND dedupe_key = ? AND status = ?", (self.scope, key, PENDING)
            )
            self._db.execute("DELETE FROM credit_sent_by WHERE scope = ? AND dedupe_key = ?", (self.scope, key))

    def quiet_since(self, key: str) -> float | None:
        """When the last request of a pending ``key`` was over for sure, or None when that is unknown.

        Known only when the key's pending mark names a session that closed quietly afterwards (see the
        module docstring); a kill, a mark by an older version or a mark newer than that close answer None.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT s.quiet_at FROM credits AS c "
                "JOIN credit_sent_by AS b ON b.scope = c.scope AND b.dedupe_key = c.dedupe_key "
                "JOIN credit_sessions AS s ON s.scope = b.scope AND s.session = b.session "
                "WHERE c.scope = ? AND c.dedupe_key = ? AND c.status = ? AND c.updated_at <= s.quiet_at",
                (self.scope, key, PENDING),
            ).fetchone()
        return None if row is None else float(row[0])

    def close_session(self, session: str, *, quiet: bool) -> None:
        """The writer's session ends; ``quiet``: no credit request of it is on the way, nor can one start.

        Only a quiet close is recorded. Sessions no pending key names are dropped (nothing asks for them).
        """
        with self._lock, self._transaction():
            if quiet:
                self._db.execute(
                    "INSERT INTO credit_sessions (scope, session, quiet_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(scope, session) DO UPDATE SET quiet_at = excluded.quiet_at",
                    (self.scope, session, self._clock()),
                )
            self._db.execute(
                "DELETE FROM credit_sessions WHERE scope = ? AND session NOT IN "
                "(SELECT session FROM credit_sent_by WHERE scope = ?)",
                (self.scope, self.scope),
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction (the connection autocommits otherwise); rolled back if a statement fails."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
