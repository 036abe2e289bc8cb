"""Optional local index of User Profile members (``member_index_path``), a small SQLite file.

For each program (the API base URL, as for the credit ledger) and identifier type, the index
records that a member exists, its CrowdTwist id when an answer gave one, and a *fingerprint* of the
fields last sent for it (:func:`fingerprint`). The User Profile writer uses it to

* send an update first to a member it knows exists (an unknown one gets the learner's order), and
* settle a row identical to the last accepted write as ``unchanged`` without any request.

Rules that keep it from ever lying about what CrowdTwist holds:

1. **Only accepted writes are recorded.** :meth:`MemberIndex.record` is called after CrowdTwist
   answered 2xx. Recorded entries are staged and committed in one transaction by
   :meth:`MemberIndex.commit`, which the writer's ``checkpoint`` calls before any state covering
   those rows is echoed (and every :data:`FLUSH_EVERY` entries, which bounds memory between
   states). A crash before the commit loses entries, which only costs requests next time.
2. **Write-ahead clearing.** Before a request that would change a member whose entry holds
   another fingerprint, :meth:`MemberIndex.clear_fingerprint` clears it *durably* (committed at
   once). Otherwise a crash after CrowdTwist applied the write but before the commit would leave
   the old fingerprint on disk, and a later row carrying the old values would be skipped although
   the member now holds the new ones. When the file is a copy of a state kept elsewhere (the sync
   state in the bucket, ``state/``), ``after_drop`` makes the clear durable there too, before the
   request.
3. **Scope.** Entries are keyed by (program, identifier type, member): an index filled against the
   sandbox or with another identifier type is never consulted for this program.
4. **Age.** An entry is trusted for at most ``max_age`` seconds (``member_index_max_age_days``)
   after the write it records (``updated_at``, the commit time of the last accepted write). Then
   :meth:`MemberIndex.lookup` reports it ``expired`` and the writer sends the row again, so a
   member deleted or changed in CrowdTwist outside the connector is re-created or corrected within
   that time. Each entry's limit is shortened by up to :data:`EXPIRY_SPREAD` of it, by a share
   drawn from its member digest and write time (:func:`expiry_age`): members written in one sync
   expire over the last half of the period, not all in one later sync, and since every re-send
   draws again, periodic syncs do not fall back into step. The layout is unchanged:
   ``updated_at`` has been in every index file since the first version, so an existing file ages
   from its last writes and needs no migration; an entry dated in the future (a clock set back, a
   file from another machine) is not trusted.

Memory stays flat whatever the size of the file: every lookup is one primary-key search (a B-tree,
O(log n)); nothing is loaded whole. Identifiers are stored as SHA-256 digests, never in clear
text (a digest of an email is pseudonymous, not secret: protect the file like any member export).
One connection in WAL mode, serialised by a lock, serves every worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.writers.sqlite_guard import sqlite_guard

logger = logging.getLogger("airbyte")

#: Staged entries are committed once this many are waiting, whether or not a state arrived.
FLUSH_EVERY = 1000
#: Bytes kept of each SHA-256 digest: 128 bits make an accidental collision practically impossible.
DIGEST_BYTES = 16
#: An entry's age limit is ``max_age x (1 - EXPIRY_SPREAD x share)``, ``share`` in [0, 1) drawn from the
#: member's digest and the entry's write time: entries written together expire spread over the last
#: half of the period.
EXPIRY_SPREAD = 0.5
#: An entry dated further than this in the future is not trusted (clock set back, file copied).
FUTURE_SLACK_SECONDS = 3600.0
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what expiry_age can spell as 8 signed bytes

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS member_scopes ("
    "id INTEGER PRIMARY KEY, program TEXT NOT NULL, id_type TEXT NOT NULL, UNIQUE (program, id_type))",
    # WITHOUT ROWID: the primary key is the table, so a lookup is one B-tree search and no row id is stored.
    "CREATE TABLE IF NOT EXISTS members ("
    "scope INTEGER NOT NULL, member BLOB NOT NULL, crowdtwist_id TEXT, fingerprint BLOB, "
    "updated_at INTEGER NOT NULL, PRIMARY KEY (scope, member)) WITHOUT ROWID",
)
_COLUMNS = {"member_scopes": ["id", "program", "id_type"],
            "members": ["scope", "member", "crowdtwist_id", "fingerprint", "updated_at"]}
_LOOKUP = "SELECT crowdtwist_id, fingerprint, updated_at FROM members WHERE scope = ? AND member = ?"
_UPSERT = (
    "INSERT INTO members (scope, member, crowdtwist_id, fingerprint, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, member) DO UPDATE SET "
    "crowdtwist_id = COALESCE(excluded.crowdtwist_id, members.crowdtwist_id), "
    "fingerprint = excluded.fingerprint, updated_at = excluded.updated_at"
)


def fingerprint(payload: Mapping[str, Any]) -> bytes:
    """What a write sent, reduced to 16 bytes: SHA-256 of the payload's canonical JSON.

    Canonical = keys sorted at every level, no whitespace, UTF-8, so the same fields and values give
    the same fingerprint in every run and Python version, whatever order the source sent them in.
    The canonical form is :func:`_canonical_json`'s (the fingerprints in every index file were made
    with it); a payload of the plain shapes orjson spells byte for byte the same way is encoded by
    orjson instead: every row of a re-sync is fingerprinted, and the standard encoder was a tenth of
    an unchanged row's CPU (unit_tests/test_member_index.py compares the two on tricky payloads).
    """
    if _orjson_spells_alike(payload, 0):
        try:
            canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # orjson's JSONEncodeError: an integer beyond 64 bits, a lone surrogate
            pass
        else:
            return hashlib.sha256(canonical).digest()[:DIGEST_BYTES]
    return hashlib.sha256(_canonical_json(payload)).digest()[:DIGEST_BYTES]


#: The standard encoder with the canonical settings, made once (``json.dumps`` builds one per call).
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _canonical_json(payload: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a payload, as UTF-8 bytes: what every fingerprint is the digest of.

    The same bytes as ``json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    default=str)`` (the form since the first index file); raises as it does (a lone surrogate cannot be
    encoded as UTF-8).
    """
    return _CANONICAL_ENCODER.encode(payload).encode("utf-8")


#: Leaf types whose JSON orjson writes exactly as the standard encoder does (exact types: a subclass
#: of int or str, such as an IntEnum, may be spelt differently). Floats are not among them: orjson
#: writes 1e16 where the standard encoder writes 1e+16, and NaN as null.
_ALIKE_LEAVES = frozenset({str, int, bool, type(None)})
#: Deeper payloads take the standard encoder (orjson refuses more than 255 levels anyway).
_ALIKE_MAX_DEPTH = 32


def _orjson_spells_alike(value: Any, depth: int) -> bool:
    """Whether ``orjson.dumps(value, option=OPT_SORT_KEYS)`` is the canonical JSON of ``value``, when it
    succeeds: dicts with string keys (sorted by code point by both: orjson compares UTF-8 bytes, whose
    order is the code points'), lists, and the leaves of :data:`_ALIKE_LEAVES`, all of exact types.
    """
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        items = value.values()
    elif kind is list:
        items = value
    else:
        return kind in _ALIKE_LEAVES
    if depth >= _ALIKE_MAX_DEPTH:
        return False
    for item in items:  # noqa: SIM110 - a loop: all() over a generator costs a fingerprint half again
        if type(item) not in _ALIKE_LEAVES and not _orjson_spells_alike(item, depth + 1):
            return False
    return True


def _member_digest(user_id: str) -> bytes:
    return hashlib.sha256(user_id.encode("utf-8")).digest()[:DIGEST_BYTES]


def expiry_age(member: bytes, updated_at: int, max_age: float) -> float:
    """How old (seconds) the entry of ``member`` (its digest) written at ``updated_at`` may get before
    its row is sent again.

    Between ``max_age x (1 - EXPIRY_SPREAD)`` and ``max_age``, by a share hashed from the digest and
    the write time (8 bytes of SHA-256 as a fraction of 2**64). Deterministic: every process agrees
    when an entry expires, and tests are exact. Uniform over members: a table written in one sync is
    re-sent over the last half of the period (with daily syncs and 7 days, about 2/7 of it per sync
    at most). Drawn again at each write: a share fixed per member would give each member a fixed
    period, and with periodic syncs the members of periods 4 and 5 days would all come due together
    every 20 days.
    """
    digest = hashlib.sha256(member + int(updated_at).to_bytes(8, "big", signed=True)).digest()
    share = int.from_bytes(digest[:8], "big") / 2.0**64
    return max_age * (1.0 - EXPIRY_SPREAD * share)


@dataclass(frozen=True)
class MemberEntry:
    """What the index knows of one member: it exists, and maybe its id and last written fields.

    ``fingerprint`` is None when the fields the member holds are not known (cleared before a write
    that did not commit, or a write whose answer did not say). ``expired``: the entry is older than
    the member's age limit (rule 4 of the module docstring); its row must be sent again.
    """

    crowdtwist_id: str | None
    fingerprint: bytes | None
    expired: bool = False


class MemberIndex:
    """Thread-safe SQLite member index for one program. See the module docstring."""

    def __init__(
        self, path: str, program: str, *, clock: Callable[[], float] = time.time, flush_every: int = FLUSH_EVERY,
        max_age: float | None = None, after_drop: Callable[[], None] | None = None,
    ) -> None:
        """``max_age``: seconds an entry is trusted (rule 4); None trusts entries without limit.

        ``after_drop``: called after a clear or forget is committed to the file and before it returns
        (so before the request it precedes), outside the index's lock (rule 2).
        """
        self.path = path
        self._after_drop = after_drop
        self.program = program
        self._clock = clock
        self._max_age = max_age
        self._flush_every = max(1, flush_every)
        self._lock = threading.Lock()
        self._scopes: dict[str, int] = {}
        # Accepted writes not committed yet, newest per member: (scope, member) -> (crowdtwist_id, fingerprint).
        self._staged: dict[tuple[int, bytes], tuple[str | None, bytes | None]] = {}
        try:
            # isolation_level=None: statements autocommit unless commit() opens a transaction itself.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for table, expected in _COLUMNS.items():
                columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
                if columns and columns != expected:
                    raise sqlite3.DatabaseError(f"the file holds a {table!r} table of another layout")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"member_index_path cannot be used as a SQLite member index ({exc}); choose a writable file path"
            ) from exc

    # -- reading -----------------------------------------------------------------------------

    def lookup(self, id_type: str, user_id: str) -> MemberEntry | None:
        """The member's entry (staged writes included), or None when the index does not know it.

        A committed entry past its age limit comes back with ``expired`` set (rule 4).
        """
        member = _member_digest(user_id)
        # _guard()'s lock and error rule, written out: a re-sync looks up every row, and a generator-based
        # context manager per lookup was a tenth of its CPU.
        with self._lock:
            try:
                scope = self._scope(id_type, create=False)
                if scope is None:
                    return None
                staged = self._staged.get((scope, member))
                if staged is not None:
                    return MemberEntry(*staged)  # written in this sync: fresh
                row = self._db.execute(_LOOKUP, (scope, member)).fetchone()
            except sqlite3.Error as exc:
                raise ConfigError(self._failure(exc)) from exc
        if row is None:
            return None
        return MemberEntry(row[0], None if row[1] is None else bytes(row[1]), self._expired(member, row[2]))

    def has_entries(self) -> bool:
        """Whether the index knows any member of this program (any identifier type)."""
        with self._guard():
            row = self._db.execute(
                "SELECT 1 FROM members WHERE scope IN (SELECT id FROM member_scopes WHERE program = ?) LIMIT 1",
                (self.program,),
            ).fetchone()
            return row is not None or bool(self._staged)

    def size(self, id_type: str) -> int:
        """How many members of this program and identifier type the index holds (committed ones)."""
        with self._guard():
            scope = self._scope(id_type, create=False)
            if scope is None:
                return 0
            row = self._db.execute("SELECT COUNT(*) FROM members WHERE scope = ?", (scope,)).fetchone()
        return int(row[0])

    # -- writing -----------------------------------------------------------------------------

    def clear_fingerprint(self, id_type: str, user_id: str) -> None:
        """Before a write that changes the member: forget what it holds, durably and at once."""
        # A staged (older) fingerprint must not be committed after this write either.
        self._drop_now(id_type, user_id, "UPDATE members SET fingerprint = NULL "
                       "WHERE scope = ? AND member = ? AND fingerprint IS NOT NULL")

    def record(
        self, id_type: str, user_id: str, *, fingerprint: bytes | None, crowdtwist_id: str | None = None
    ) -> None:
        """After CrowdTwist accepted a write: the member exists and holds ``fingerprint``'s fields.

        Staged until :meth:`commit` (called before the covering state is echoed).
        """
        member = _member_digest(user_id)
        with self._guard():
            scope = self._scope(id_type, create=True)
            assert scope is not None
            key = (scope, member)
            if crowdtwist_id is None:
                crowdtwist_id = self._known_id(key)
            self._staged[key] = (crowdtwist_id, fingerprint)
            if len(self._staged) >= self._flush_every:
                self._commit_locked()

    def forget(self, id_type: str, user_id: str) -> None:
        """CrowdTwist said the member does not exist: drop its entry, durably and at once."""
        self._drop_now(id_type, user_id, "DELETE FROM members WHERE scope = ? AND member = ?")

    def commit(self) -> None:
        """Commit the staged entries in one transaction (before a state covering them is echoed)."""
        with self._guard():
            self._commit_locked()

    def close(self) -> None:
        """Commit what is staged (best effort: a lost entry only costs a request) and close the file."""
        with self._lock:
            try:
                self._commit_locked()
            except sqlite3.Error as exc:
                logger.warning(f"Member index: the last entries could not be saved ({exc}); their rows are sent again.")
            self._db.close()

    # -- internals ---------------------------------------------------------------------------

    def _guard(self) -> AbstractContextManager[None]:
        return sqlite_guard(self._lock, self._failure)

    @staticmethod
    def _failure(exc: sqlite3.Error) -> str:
        return (
            f"The member index (member_index_path) could not be read or written ({exc}). Check that the "
            "file is on a writable disk with free space, or remove member_index_path."
        )

    def _expired(self, member: bytes, updated_at: Any) -> bool:
        if self._max_age is None:
            return False
        if not isinstance(updated_at, int):
            return True  # not a time this code wrote: not trusted
        age = self._clock() - updated_at
        if (
            -FUTURE_SLACK_SECONDS <= age < self._max_age * (1.0 - EXPIRY_SPREAD)
            and self._max_age >= 0
            and _INT64_MIN <= updated_at <= _INT64_MAX
        ):
            # Younger than the least limit expiry_age gives any entry (max_age x (1 - EXPIRY_SPREAD x
            # share) with share at most 1): not expired, without the digest. Most entries a re-sync
            # looks up are. (A write time beyond 64 bits still raises below, as it always did.)
            return False
        return age >= expiry_age(member, updated_at, self._max_age) or age < -FUTURE_SLACK_SECONDS

    def _drop_now(self, id_type: str, user_id: str, statement: str) -> None:
        """Unstage a member's pending entry and run ``statement`` (scope, member) on the file at once."""
        member = _member_digest(user_id)
        with self._guard():
            scope = self._scope(id_type, create=False)
            if scope is None:
                return
            self._staged.pop((scope, member), None)
            self._db.execute(statement, (scope, member))
        if self._after_drop is not None:
            # Outside the lock: an upload may take a while, and other workers keep using the index.
            self._after_drop()

    def _commit_locked(self) -> None:
        if not self._staged:
            return
        now = int(self._clock())
        rows = [(scope, member, ct_id, fp, now) for (scope, member), (ct_id, fp) in self._staged.items()]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_UPSERT, rows)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                self._db.execute("ROLLBACK")
            raise
        self._staged.clear()

    def _known_id(self, key: tuple[int, bytes]) -> str | None:
        # An answer without the id must not erase one learnt before (staged or committed).
        staged = self._staged.get(key)
        if staged is not None:
            return staged[0]
        row = self._db.execute("SELECT crowdtwist_id FROM members WHERE scope = ? AND member = ?", key).fetchone()
        return None if row is None else row[0]

    def _scope(self, id_type: str, *, create: bool) -> int | None:
        scope = self._scopes.get(id_type)
        if scope is not None:
            return scope
        row = self._db.execute(
            "SELECT id FROM member_scopes WHERE program = ? AND id_type = ?", (self.program, id_type)
        ).fetchone()
        if row is None:
            if not create:
                return None
            cursor = self._db.execute(
                "INSERT INTO member_scopes (program, id_type) VALUES (?, ?)", (self.program, id_type)
            )
            scope = int(cursor.lastrowid or 0)
        else:
            scope = int(row[0])
        self._scopes[id_type] = scope
        return scope
