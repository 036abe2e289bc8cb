"""The local side of the sync state: the SQLite files the writers use, filled from the bucket and journaled.

The files are the writers' own (``writers/member_index.py``, ``writers/ledger.py``), created by their
classes so the layout is theirs. This module adds one table per file, ``sync_state_journal``, filled
by triggers on the writers' tables: every insert, update and delete of a member (and every insert and
update of a ledger key) appends the key, in the writers' own transaction. So nothing the writers do
can be missed by an upload (a cleared fingerprint, a forgotten member, a pending mark), and the
writers need no change: the journal is read by :meth:`LocalState.export_members` /
:meth:`LocalState.export_credits` and emptied up to what an upload covered
(``acknowledge_*``). A ledger key that the writer drops (a refused credit) is not
propagated: a pending key kept in the bucket costs one history read, never a credit (``state/merge.py``).

The writers keep their one connection each; this module opens its own (WAL: readers never block the
writers, and its short writes wait for theirs).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from destination_crowdtwist.state.codec import CreditRecord, MemberRecord, StateObjectError
from destination_crowdtwist.state.merge import member_winner, merge_sorted
from destination_crowdtwist.state.table import table_records, uri
from destination_crowdtwist.writers.ledger import DONE, PENDING, CreditLedger, ledger_scope
from destination_crowdtwist.writers.member_index import MemberIndex

MEMBER_INDEX_FILE = "member_index.sqlite3"
LEDGER_FILE = "ledger.sqlite3"
#: The writers' layouts this module reads and writes; a change there must fail here, not corrupt state.
MEMBER_COLUMNS = ["scope", "member", "crowdtwist_id", "fingerprint", "updated_at"]
CREDIT_COLUMNS = ["scope", "dedupe_key", "status", "outcome", "updated_at"]
#: A local change not uploaded yet is newer than anything in the bucket.
_LOCAL_CHANGE = float("inf")
_BATCH = 5000

_MEMBER_JOURNAL = (
    "CREATE TABLE IF NOT EXISTS sync_state_journal ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, scope INTEGER NOT NULL, member BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS sync_state_member_inserted AFTER INSERT ON members BEGIN "
    "INSERT INTO sync_state_journal (scope, member) VALUES (new.scope, new.member); END",
    "CREATE TRIGGER IF NOT EXISTS sync_state_member_updated AFTER UPDATE ON members BEGIN "
    "INSERT INTO sync_state_journal (scope, member) VALUES (new.scope, new.member); END",
    "CREATE TRIGGER IF NOT EXISTS sync_state_member_deleted AFTER DELETE ON members BEGIN "
    "INSERT INTO sync_state_journal (scope, member) VALUES (old.scope, old.member); END",
)
_CREDIT_JOURNAL = (
    "CREATE TABLE IF NOT EXISTS sync_state_journal ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, dedupe_key TEXT NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS sync_state_credit_inserted AFTER INSERT ON credits BEGIN "
    "INSERT INTO sync_state_journal (scope, dedupe_key) VALUES (new.scope, new.dedupe_key); END",
    "CREATE TRIGGER IF NOT EXISTS sync_state_credit_updated AFTER UPDATE ON credits BEGIN "
    "INSERT INTO sync_state_journal (scope, dedupe_key) VALUES (new.scope, new.dedupe_key); END",
)
_MEMBER_TRIGGERS = ("sync_state_member_inserted", "sync_state_member_updated", "sync_state_member_deleted")
_CREDIT_TRIGGERS = ("sync_state_credit_inserted", "sync_state_credit_updated")
_INSERT_MEMBER = (
    "INSERT OR REPLACE INTO members (scope, member, crowdtwist_id, fingerprint, updated_at) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_CREDIT = (
    "INSERT INTO credits (scope, dedupe_key, status, outcome, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, dedupe_key) DO UPDATE SET status = excluded.status, outcome = excluded.outcome, "
    "updated_at = excluded.updated_at WHERE (excluded.status = 'done' AND credits.status != 'done') "
    "OR (excluded.status = credits.status AND excluded.updated_at > credits.updated_at)"
)
# From a base's SQLite file (state/table.py), in SQLite alone; the same rules as above. "WHERE true":
# SQLite's rule for an upsert's SELECT (else ON CONFLICT would parse as a join's).
_COPY_MEMBERS = (
    "INSERT INTO members (scope, member, crowdtwist_id, fingerprint, updated_at) "
    "SELECT ?, member, crowdtwist_id, fingerprint, updated_at FROM base.records WHERE gone = 0 ORDER BY member"
)
_COPY_CREDITS = (
    "INSERT INTO credits (scope, dedupe_key, status, outcome, updated_at) "
    "SELECT ?, dedupe_key, CASE done WHEN 1 THEN 'done' ELSE 'pending' END, outcome, updated_at "
    "FROM base.records WHERE true "
    "ON CONFLICT (scope, dedupe_key) DO UPDATE SET status = excluded.status, outcome = excluded.outcome, "
    "updated_at = excluded.updated_at WHERE (excluded.status = 'done' AND credits.status != 'done') "
    "OR (excluded.status = credits.status AND excluded.updated_at > credits.updated_at)"
)
#: Errors of this process's own files (not of a base's contents): they are not the object's fault.
_LOCAL_FAILURES = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOMEM", "SQLITE_READONLY",
                   "SQLITE_CANTOPEN", "SQLITE_INTERRUPT")


@dataclass(frozen=True)
class Marks:
    """The last journal sequence numbers of each file: an upload covers the changes up to them."""

    members: int
    credits: int


def _connect(path: Path, table: str, expected: list[str]) -> sqlite3.Connection:
    # uri=True: a base's file is attached read-only by URI (a plain path still names a plain file).
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0, uri=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    if columns != expected:
        db.close()
        raise RuntimeError(f"the writers' {table!r} table has columns {columns}; state/local.py expects {expected}")
    return db


@contextmanager
def _untracked(db: sqlite3.Connection, triggers: tuple[str, ...], journal: tuple[str, ...]) -> Iterator[None]:
    """One transaction in which the journal's triggers are off (dropped, then created again)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in triggers:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        yield
        for statement in journal:
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def _attached(db: sqlite3.Connection, table: Path | None) -> Iterator[None]:
    """``table`` (a checked base file) attached as ``base``, read-only, outside any transaction.

    A SQLite error that the file's contents cause is reported as :class:`StateObjectError` (the
    caller distrusts the object); one of this process's own files (a full disk) is raised as is.
    """
    if table is None:
        yield
        return
    try:
        db.execute("ATTACH DATABASE ? AS base", (uri(table),))
    except sqlite3.DatabaseError as exc:
        raise StateObjectError(f"corrupt (SQLite: {exc})") from exc
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") in _LOCAL_FAILURES:
            raise
        raise StateObjectError(f"corrupt (SQLite: {exc})") from exc
    finally:
        db.execute("DETACH DATABASE base")


@contextmanager
def _bulk(db: sqlite3.Connection, table: str) -> Iterator[None]:
    """An import into a file that holds nothing yet, written once instead of twice (WAL, then checkpoint).

    The rollback journal is kept in memory meanwhile: a failed import is still undone, and a crash
    in the middle can only damage a file that held nothing and that no later sync opens (the store's
    files are this sync's own). Back to WAL after, which the writers need (readers never block them).
    A file that is not empty, or that another connection holds, is imported in WAL as before.
    """
    if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:  # noqa: S608 - a constant
        yield
        return
    try:
        switched = db.execute("PRAGMA journal_mode=MEMORY").fetchone()[0] == "memory"
    except sqlite3.OperationalError:
        switched = False
    try:
        yield
    finally:
        if switched:
            db.execute("PRAGMA journal_mode=WAL")


def _insert_batches(db: sqlite3.Connection, statement: str, rows: Iterable[tuple[object, ...]]) -> None:
    batch: list[tuple[object, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            db.executemany(statement, batch)
            batch.clear()
    db.executemany(statement, batch)


class LocalState:
    """The member index and ledger files of one program in ``workdir``, with their journals.

    Not thread-safe but for :meth:`marks`: the store calls it under its own lock.
    """

    def __init__(self, workdir: str | Path, program: str) -> None:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        self.program = program
        self.credit_scope = ledger_scope(program)
        self.member_index_path = str(folder / MEMBER_INDEX_FILE)
        self.ledger_path = str(folder / LEDGER_FILE)
        # The writers' classes create their own tables: the layout is theirs, never copied here.
        MemberIndex(self.member_index_path, program).close()
        CreditLedger(self.ledger_path, self.credit_scope).close()
        self._members = _connect(Path(self.member_index_path), "members", MEMBER_COLUMNS)
        self._credits = _connect(Path(self.ledger_path), "credits", CREDIT_COLUMNS)
        for statement in _MEMBER_JOURNAL:
            self._members.execute(statement)
        for statement in _CREDIT_JOURNAL:
            self._credits.execute(statement)
        # Marks are read from any thread (a flush notes what it waits for before it queues for the
        # upload), so they have connections and a lock of their own.
        self._marks_lock = threading.Lock()
        self._marks_db = (sqlite3.connect(self.member_index_path, check_same_thread=False, timeout=30.0),
                          sqlite3.connect(self.ledger_path, check_same_thread=False, timeout=30.0))

    # -- scopes --------------------------------------------------------------------------------

    def id_types(self) -> dict[int, str]:
        """The identifier types this program has member index scopes for, by scope id."""
        rows = self._members.execute("SELECT id, id_type FROM member_scopes WHERE program = ?", (self.program,))
        return {int(scope): str(id_type) for scope, id_type in rows}

    def _scope(self, id_type: str) -> int:
        self._members.execute(
            "INSERT OR IGNORE INTO member_scopes (program, id_type) VALUES (?, ?)", (self.program, id_type)
        )
        row = self._members.execute(
            "SELECT id FROM member_scopes WHERE program = ? AND id_type = ?", (self.program, id_type)
        ).fetchone()
        return int(row[0])

    def member_count(self, id_type: str) -> int:
        """How many members of ``id_type`` the local index holds."""
        scope = self._scope(id_type)
        return int(self._members.execute("SELECT COUNT(*) FROM members WHERE scope = ?", (scope,)).fetchone()[0])

    def credit_count(self) -> int:
        """How many keys of this program the local ledger holds."""
        row = self._credits.execute("SELECT COUNT(*) FROM credits WHERE scope = ?", (self.credit_scope,)).fetchone()
        return int(row[0])

    # -- import (at the start of a sync) --------------------------------------------------------

    def import_members(self, id_type: str, records: Iterable[MemberRecord], table: Path | None = None) -> None:
        """Merge the bucket's records of ``id_type`` into the local index, in one transaction.

        ``table``: the base as a checked SQLite file (format 2, ``state/table.py``); ``records`` are
        then the other objects' records (the deltas), merged. Only before the writers open the file
        (their triggers are off meanwhile).

        The import is not journaled (it is what the bucket holds already; the triggers are dropped
        for it, in the same transaction, so a failed import leaves them as they were). A local change
        not uploaded yet (a file kept between runs) is newer than anything in the bucket.
        """
        scope = self._scope(id_type)
        db = self._members
        pending = {bytes(row[0]) for row in db.execute(
            "SELECT DISTINCT member FROM sync_state_journal WHERE scope = ?", (scope,))}
        fresh = not pending and db.execute("SELECT 1 FROM members WHERE scope = ? LIMIT 1", (scope,)).fetchone() is None
        if table is not None and fresh:
            # The bulk of the start of a sync: the base copied by SQLite alone (about 1 s a million
            # members), then each delta's record decided against the base's record of its member.
            with _attached(db, table), _bulk(db, "members"), _untracked(db, _MEMBER_TRIGGERS, _MEMBER_JOURNAL):
                db.execute(_COPY_MEMBERS, (scope,))
                for record in records:
                    self._apply_over_base(scope, record)
            return
        if table is not None:
            base = cast("Iterator[MemberRecord]", table_records(table, "member_index"))
            records = merge_sorted([base, iter(records)], member_winner)
        with _untracked(db, _MEMBER_TRIGGERS, _MEMBER_JOURNAL):
            if fresh:
                _insert_batches(db, _INSERT_MEMBER, (
                    (scope, r.member, r.crowdtwist_id, r.fingerprint, r.updated_at) for r in records if not r.gone
                ))
            else:
                for record in records:
                    self._merge_member(scope, record, pending=record.member in pending)

    def _apply_over_base(self, scope: int, incoming: MemberRecord) -> None:
        """Make the member's row the winner of ``incoming`` and the attached base's record (tombstones included)."""
        db = self._members
        row = db.execute(
            "SELECT version, gone, crowdtwist_id, fingerprint, updated_at FROM base.records WHERE member = ?",
            (incoming.member,),
        ).fetchone()
        winner = incoming
        if row is not None:
            base = MemberRecord(incoming.member, row[0], row[1] == 1, row[2], row[3], row[4])
            winner = member_winner(base, incoming)
            if winner is base:
                return  # the row copied from the base (or its absence, for a tombstone) stands
        if winner.gone:
            db.execute("DELETE FROM members WHERE scope = ? AND member = ?", (scope, incoming.member))
        else:
            db.execute(_INSERT_MEMBER, (scope, winner.member, winner.crowdtwist_id, winner.fingerprint,
                                        winner.updated_at))

    def _merge_member(self, scope: int, incoming: MemberRecord, *, pending: bool) -> None:
        db = self._members
        row = db.execute(
            "SELECT crowdtwist_id, fingerprint, updated_at FROM members WHERE scope = ? AND member = ?",
            (scope, incoming.member),
        ).fetchone()
        if row is None:
            if pending:
                return  # forgotten here, not uploaded yet: the newest news
            local = None
        else:
            fingerprint = None if row[1] is None else bytes(row[1])
            version = _LOCAL_CHANGE if pending and fingerprint is None else float(row[2])
            local = MemberRecord(incoming.member, version, gone=False, crowdtwist_id=row[0], fingerprint=fingerprint,
                                 updated_at=int(row[2]))
        winner = incoming if local is None else member_winner(local, incoming)
        if winner is local:
            return
        if winner.gone:
            db.execute("DELETE FROM members WHERE scope = ? AND member = ?", (scope, incoming.member))
        else:
            db.execute(_INSERT_MEMBER, (scope, winner.member, winner.crowdtwist_id, winner.fingerprint,
                                        winner.updated_at))

    def import_credits(self, records: Iterable[CreditRecord], table: Path | None = None) -> None:
        """Merge the bucket's ledger keys into the local ledger (done wins), in one transaction, not journaled.

        ``table``: the base as a checked SQLite file (format 2), copied by SQLite alone; ``records``
        are then the other objects'. The rule (done wins, then the later) does not depend on the order.
        Only before the writers open the file (their triggers are off meanwhile).
        """
        scope = self.credit_scope
        db = self._credits
        with _attached(db, table), _bulk(db, "credits"), _untracked(db, _CREDIT_TRIGGERS, _CREDIT_JOURNAL):
            if table is not None:
                self._credits.execute(_COPY_CREDITS, (scope,))
            _insert_batches(self._credits, _INSERT_CREDIT, (
                (scope, r.key, DONE if r.done else PENDING, r.outcome, r.updated_at) for r in records
            ))

    # -- export (during the sync) ---------------------------------------------------------------

    @staticmethod
    def _mark(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM sync_state_journal").fetchone()[0])

    def marks(self) -> Marks:
        """The journals' last sequence numbers (what has changed locally so far); thread-safe."""
        with self._marks_lock:
            return Marks(self._mark(self._marks_db[0]), self._mark(self._marks_db[1]))

    def changed_id_types(self, upto: int) -> list[str]:
        """The identifier types with journaled member changes up to ``upto``."""
        rows = self._members.execute(
            "SELECT DISTINCT s.id_type FROM sync_state_journal AS j JOIN member_scopes AS s ON s.id = j.scope "
            "WHERE j.seq <= ? AND s.program = ? ORDER BY s.id_type", (upto, self.program),
        )
        return [str(row[0]) for row in rows]

    def export_members(self, id_type: str, upto: int, now: float) -> Iterator[MemberRecord]:
        """The current records of the members of ``id_type`` changed up to ``upto``, by member.

        A missing row is a tombstone and a row without a fingerprint a clear, both dated ``now``
        (the upload time is never earlier than the change, so they win over what they replace).
        """
        scope = self._scope(id_type)
        rows = self._members.execute(
            "SELECT j.member, m.crowdtwist_id, m.fingerprint, m.updated_at FROM "
            "(SELECT DISTINCT member FROM sync_state_journal WHERE scope = ? AND seq <= ?) AS j "
            "LEFT JOIN members AS m ON m.scope = ? AND m.member = j.member ORDER BY j.member",
            (scope, upto, scope),
        )
        for member, crowdtwist_id, fingerprint, updated_at in rows:
            if updated_at is None:
                yield MemberRecord(bytes(member), now, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0)
                continue
            version = float(updated_at) if fingerprint is not None else max(now, float(updated_at))
            yield MemberRecord(bytes(member), version, gone=False, crowdtwist_id=crowdtwist_id,
                               fingerprint=None if fingerprint is None else bytes(fingerprint),
                               updated_at=int(updated_at))

    def export_credits(self, upto: int) -> Iterator[CreditRecord]:
        """The current records of the ledger keys changed up to ``upto`` (dropped keys are skipped), by key."""
        rows = self._credits.execute(
            "SELECT c.dedupe_key, c.status, c.outcome, c.updated_at FROM "
            "(SELECT DISTINCT dedupe_key FROM sync_state_journal WHERE scope = ? AND seq <= ?) AS j "
            "JOIN credits AS c ON c.scope = ? AND c.dedupe_key = j.dedupe_key ORDER BY c.dedupe_key",
            (self.credit_scope, upto, self.credit_scope),
        )
        for key, status, outcome, updated_at in rows:
            yield CreditRecord(str(key), status == DONE, outcome, float(updated_at))

    def acknowledge_members(self, upto: int) -> None:
        """Forget the journaled member changes up to ``upto``: an upload put them in the bucket."""
        self._members.execute("DELETE FROM sync_state_journal WHERE seq <= ?", (upto,))

    def acknowledge_credits(self, upto: int) -> None:
        """Forget the journaled ledger changes up to ``upto``: an upload put them in the bucket."""
        self._credits.execute("DELETE FROM sync_state_journal WHERE seq <= ?", (upto,))

    def close(self) -> None:
        """Close this module's connections (the writers close theirs)."""
        for db in (self._members, self._credits, *self._marks_db):
            db.close()
