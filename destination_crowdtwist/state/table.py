"""Base objects of format 2: a channel's records as a SQLite file, imported with one ``INSERT ... SELECT``.

A million members decoded and inserted one row at a time through Python cost about 9 s of CPU at the
start of every sync (about 5 µs a row of it in sqlite3's parameter binding alone); the same rows
copied by SQLite from an attached file take about 1 s (docs/sync-state.md). So a base is written as
a SQLite file, compressed::

    header (codec.encode_header, format 2)  zlib( uint64 file length, file bytes, trailer )
    trailer = uint64 record count, uint32 CRC-32 of the file bytes

The file holds exactly one table, ``records``, WITHOUT ROWID and keyed by the member digest (or the
ledger key), so its rows are unique and read in key order: every record of the base, tombstones
included, as format 1 holds them. Deltas stay in format 1 (small, streamed).

**Never trusted blindly.** An object is trusted only when its zlib stream ends exactly at the end of
the input with the right length, count and CRC (every byte covered, as format 1), its schema is
exactly this module's (no trigger, no view, no index, nothing else) and one scan finds every row of
the types and lengths format 1 would allow. Every SQLite error on the file is a
:class:`~destination_crowdtwist.state.codec.StateObjectError`: a corrupt file is untrusted, never a
crash and never a trusted wrong entry. The files are opened read-only and immutable.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from destination_crowdtwist.state.codec import (
    CHUNK,
    TABLE_FORMAT,
    CreditRecord,
    Header,
    Inflater,
    MemberRecord,
    Record,
    StateObjectError,
    encode_header,
)
from destination_crowdtwist.state.merge import RECORD_SECONDS, credit_winner, member_winner

_LENGTH = struct.Struct(">Q")
_TRAILER = struct.Struct(">QI")

MEMBER_TABLE = (
    "CREATE TABLE records (member BLOB NOT NULL PRIMARY KEY, version REAL NOT NULL, gone INTEGER NOT NULL, "
    "crowdtwist_id TEXT, fingerprint BLOB, updated_at INTEGER NOT NULL) WITHOUT ROWID"
)
LEDGER_TABLE = (
    "CREATE TABLE records (dedupe_key TEXT NOT NULL PRIMARY KEY, done INTEGER NOT NULL, outcome TEXT, "
    "updated_at REAL NOT NULL) WITHOUT ROWID"
)
#: A row format 1 could not hold (one scan of the table must find none).
_BAD_MEMBER = (
    "typeof(member) != 'blob' OR length(member) != 16 OR typeof(version) != 'real' OR typeof(gone) != 'integer' "
    "OR gone NOT IN (0, 1) OR typeof(updated_at) != 'integer' "
    "OR (crowdtwist_id IS NOT NULL AND (typeof(crowdtwist_id) != 'text' OR crowdtwist_id = '')) "
    "OR (fingerprint IS NOT NULL AND (typeof(fingerprint) != 'blob' OR length(fingerprint) != 16)) "
    "OR (gone = 1 AND (crowdtwist_id IS NOT NULL OR fingerprint IS NOT NULL OR updated_at != 0))"
)
_BAD_CREDIT = (
    "typeof(dedupe_key) != 'text' OR typeof(done) != 'integer' OR done NOT IN (0, 1) "
    "OR typeof(updated_at) != 'real' OR (outcome IS NOT NULL AND (typeof(outcome) != 'text' OR outcome = ''))"
)


def schema(kind: str) -> str:
    """The one statement a base's file of ``kind`` holds."""
    return LEDGER_TABLE if kind == "ledger" else MEMBER_TABLE


def uri(path: Path) -> str:
    """The file as a read-only, immutable SQLite URI (for ``connect(uri=True)`` or ``ATTACH``)."""
    return path.resolve().as_uri() + "?mode=ro&immutable=1"


# -- writing -------------------------------------------------------------------------------------


def _member_row(record: Record) -> tuple[Any, ...]:
    if not isinstance(record, MemberRecord):
        raise TypeError("a ledger record in a member index base")
    member, version, gone, crowdtwist_id, fingerprint, updated_at = record
    if len(member) != 16 or (fingerprint is not None and len(fingerprint) != 16):
        raise ValueError("member digests and fingerprints are 16 bytes")
    if gone:
        return member, float(version), 1, None, None, 0
    return member, float(version), 0, crowdtwist_id or None, fingerprint, int(updated_at)


def _credit_row(record: Record) -> tuple[Any, ...]:
    if not isinstance(record, CreditRecord):
        raise TypeError("a member record in a ledger base")
    return record.key, 1 if record.done else 0, record.outcome or None, float(record.updated_at)


def _increasing(records: Iterable[Record], what: str) -> Iterator[Record]:
    """``records``, checked to come in strictly increasing key order (a base holds one record a key)."""
    last: Any = None
    for record in records:
        if last is not None and not record[0] > last:
            raise ValueError(f"records must be {what} in strictly increasing key order")
        last = record[0]
        yield record


def _rows(kind: str, records: Iterable[Record]) -> Iterator[tuple[Any, ...]]:
    row = _credit_row if kind == "ledger" else _member_row
    for record in _increasing(records, "written"):
        yield row(record)


def _insert(kind: str, verb: str = "INSERT") -> str:
    return f"{verb} INTO records VALUES ({', '.join('?' * (4 if kind == 'ledger' else 6))})"


def _scratch_db(scratch: Path) -> sqlite3.Connection:
    db = sqlite3.connect(scratch, isolation_level=None)
    # A scratch file: nothing to roll back to, and nothing to keep if the process dies.
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    return db


def build_table(scratch: Path, kind: str, records: Iterable[Record]) -> int:
    """A new base file of ``records`` (strictly increasing keys) in ``scratch``; return the record count."""
    scratch.unlink(missing_ok=True)
    db = _scratch_db(scratch)
    try:
        db.execute(schema(kind))
        db.execute("BEGIN")
        db.executemany(_insert(kind), _rows(kind, records))
        db.execute("COMMIT")
        return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    finally:
        db.close()


def update_table(scratch: Path, kind: str, records: Iterable[Record], now: float) -> int:
    """Merge ``records`` (one per key, sorted) into the base file ``scratch`` (a writable copy of a checked
    one) by the rules of ``state/merge.py``, then drop what a compaction drops (``merge.kept_in_base``);
    return the record count. A compaction over a base of a million members touches only what changed.
    """
    winner: Callable[[Any, Any], Any] = credit_winner if kind == "ledger" else member_winner
    key = "dedupe_key" if kind == "ledger" else "member"
    columns = "dedupe_key, done, outcome, updated_at" if kind == "ledger" else (
        "member, version, gone, crowdtwist_id, fingerprint, updated_at")
    replace_row = _insert(kind, "INSERT OR REPLACE")
    db = _scratch_db(scratch)
    try:
        db.execute("BEGIN")
        row_of = _credit_row if kind == "ledger" else _member_row
        for incoming in _increasing(records, "merged"):
            found = db.execute(f"SELECT {columns} FROM records WHERE {key} = ?", (incoming[0],)).fetchone()  # noqa: S608
            kept = incoming
            if found is not None:
                current = _record(kind, found)
                kept = winner(current, incoming)
                if kept is current:
                    continue
            db.execute(replace_row, row_of(kept))
        if kind != "ledger":
            db.execute("DELETE FROM records WHERE ? - (CASE gone WHEN 1 THEN version ELSE updated_at END) >= ?",
                       (now, RECORD_SECONDS))
        db.execute("COMMIT")
        return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StateObjectError(f"corrupt (SQLite: {exc})") from exc
    finally:
        db.close()


def pack_table(out: IO[bytes], header: Header, scratch: Path, count: int, *, level: int = 1) -> None:
    """Write the base file ``scratch`` of ``count`` records to ``out`` as a format-2 object, streamed."""
    out.write(encode_header(replace(header, format=TABLE_FORMAT)))
    packer = zlib.compressobj(level)
    out.write(packer.compress(_LENGTH.pack(scratch.stat().st_size)))
    crc = 0
    with scratch.open("rb") as source:
        while chunk := source.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            out.write(packer.compress(chunk))
    out.write(packer.compress(_TRAILER.pack(count, crc)))
    out.write(packer.flush())


def write_table(out: IO[bytes], header: Header, records: Iterable[Record], scratch: Path) -> int:
    """Write a format-2 base of ``records`` (strictly increasing keys) to ``out``; return the record count.

    The SQLite file is built in ``scratch`` (removed here), then streamed through zlib: memory stays flat.
    """
    try:
        count = build_table(scratch, header.kind, records)
        pack_table(out, header, scratch, count)
    finally:
        scratch.unlink(missing_ok=True)
    return count


# -- reading -------------------------------------------------------------------------------------


def max_file_size(object_size: int) -> int:
    """The largest file an object of ``object_size`` bytes may unpack to.

    A base compresses about 1.4:1, an empty one about 80:1: a corrupt or hostile length never fills the disk.
    """
    return max(1 << 20, 100 * object_size)


def unpack_table(stream: IO[bytes], dest: Path, max_size: int | None = None) -> int:
    """Decompress a format-2 body (``stream`` is past its header) into ``dest``; return the record count.

    Raises :class:`StateObjectError` for a truncated or corrupt body, or a file longer than ``max_size``.
    The count is checked by :func:`check_table`.
    """
    inflater = Inflater(stream)
    pending = bytearray()

    def fill(size: int, where: str) -> None:
        while len(pending) < size:
            data = inflater.more()
            if not data:
                raise StateObjectError(f"truncated (the object ends inside its {where})")
            pending.extend(data)

    try:
        fill(_LENGTH.size, "length")
        (left,) = _LENGTH.unpack_from(pending)
        del pending[:_LENGTH.size]
        if max_size is not None and left > max_size:
            raise StateObjectError("corrupt (the file's length is out of range)")
        crc = 0
        with dest.open("wb") as out:
            while left:
                if not pending:
                    fill(1, "file")
                piece = bytes(pending[:left])
                del pending[:len(piece)]
                crc = zlib.crc32(piece, crc)
                out.write(piece)
                left -= len(piece)
        fill(_TRAILER.size, "trailer")
        count, stored = _TRAILER.unpack_from(pending)
        del pending[:_TRAILER.size]
        if stored != crc:
            raise StateObjectError("corrupt (checksum differs)")
        if pending or not inflater.finished():
            raise StateObjectError("corrupt (bytes after the trailer, or an unfinished stream)")
    except zlib.error as exc:
        raise StateObjectError(f"corrupt (zlib: {exc})") from exc
    return int(count)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(uri(path), uri=True, isolation_level=None)
    db.execute("PRAGMA trusted_schema=OFF")  # no function from a file's schema runs (defence in depth)
    return db


def check_table(path: Path, kind: str, count: int) -> None:
    """Raise :class:`StateObjectError` unless ``path`` is exactly a base file of ``kind`` with ``count`` rows."""
    try:
        db = _connect(path)
        try:
            objects = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
            if objects != [("table", "records", "records", schema(kind))]:
                raise StateObjectError("corrupt (not the base table this connector writes)")
            bad = _BAD_CREDIT if kind == "ledger" else _BAD_MEMBER
            rows, faults = db.execute(f"SELECT COUNT(*), COUNT(*) FILTER (WHERE {bad}) FROM records").fetchone()  # noqa: S608 - constants
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StateObjectError(f"corrupt (SQLite: {exc})") from exc
    if rows != count:
        raise StateObjectError("corrupt (record count differs)")
    if faults:
        raise StateObjectError(f"corrupt ({faults} rows of the wrong type or length)")


def _record(kind: str, row: tuple[Any, ...]) -> Record:
    if kind == "ledger":
        return CreditRecord(row[0], row[1] == 1, row[2], row[3])
    return MemberRecord(row[0], row[1], row[2] == 1, row[3], row[4], row[5])


def table_records(path: Path, kind: str) -> Iterator[Record]:
    """The records of a checked base file, in key order (for merging and compaction)."""
    try:
        db = _connect(path)
        try:
            if kind == "ledger":
                for key, done, outcome, updated_at in db.execute(
                        "SELECT dedupe_key, done, outcome, updated_at FROM records ORDER BY dedupe_key"):
                    yield CreditRecord(key, done == 1, outcome, updated_at)
            else:
                for member, version, gone, crowdtwist_id, fingerprint, updated_at in db.execute(
                        "SELECT member, version, gone, crowdtwist_id, fingerprint, updated_at FROM records "
                        "ORDER BY member"):
                    yield MemberRecord(member, version, gone == 1, crowdtwist_id, fingerprint, updated_at)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StateObjectError(f"corrupt (SQLite: {exc})") from exc
