"""Format-2 bases (a SQLite file of their records): round trips, the bulk import, compaction over them,
and every truncated, corrupt or foreign object refused -- never a crash, never a trusted wrong entry."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from destination_crowdtwist.state.codec import (
    STREAM_FORMAT,
    TABLE_FORMAT,
    CreditRecord,
    Header,
    MemberRecord,
    Record,
    StateObjectError,
    check_header,
    encode_header,
    read_header,
)
from destination_crowdtwist.state.local import LocalState
from destination_crowdtwist.state.merge import RECORD_SECONDS, kept_in_base, member_winner, merge_sorted
from destination_crowdtwist.state.table import (
    MEMBER_TABLE,
    check_table,
    max_file_size,
    table_records,
    unpack_table,
    update_table,
    write_table,
)
from destination_crowdtwist.writers.ledger import CreditLedger, ledger_scope
from destination_crowdtwist.writers.member_index import MemberIndex

PROGRAM = "https://api.crowdtwist.com"
HEADER = Header("member_index", PROGRAM, "email", "base", session="s1", written_at=1_700_000_000.5)
LEDGER = Header("ledger", PROGRAM, None, "base")
F1, F2, F3 = b"1" * 16, b"2" * 16, b"3" * 16


def digest(user_id: str) -> bytes:
    return hashlib.sha256(user_id.encode()).digest()[:16]


def member(user: str, version: float, fingerprint: bytes | None = F1, crowdtwist_id: str | None = None,
           *, gone: bool = False) -> MemberRecord:
    if gone:
        return MemberRecord(digest(user), version, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0)
    return MemberRecord(digest(user), version, gone=False, crowdtwist_id=crowdtwist_id, fingerprint=fingerprint,
                        updated_at=int(version))


def members() -> list[MemberRecord]:
    return sorted([
        member("a@x", 1000.0, F1, "123"),
        member("b@x", 1001.5, None),
        member("c@x", 1002.0, gone=True),
        member("d@x", 1003.0, b"\0" * 16, "é" * 40),
    ])


def credits() -> list[CreditRecord]:
    return [
        CreditRecord("email:a@x|7|evt-1", done=True, outcome="credited", updated_at=10.25),
        CreditRecord("email:a@x|7|evt-2", done=False, outcome=None, updated_at=11.0),
        CreditRecord("email:ü@x|7|evt-3", done=True, outcome="not_awarded", updated_at=12.0),
    ]


def encode(header: Header, records: Sequence[Record], tmp_path: Path) -> bytes:
    out = io.BytesIO()
    assert write_table(out, header, records, tmp_path / "scratch.sqlite3") == len(records)
    assert not (tmp_path / "scratch.sqlite3").exists()
    return out.getvalue()


def unpack(data: bytes, tmp_path: Path, kind: str = "member_index") -> tuple[Header, Path]:
    """Read an object as the snapshot does: header, body unpacked to a file, the file checked."""
    stream = io.BytesIO(data)
    header = read_header(stream)
    path = tmp_path / "unpacked.sqlite3"
    path.unlink(missing_ok=True)
    check_table(path, kind, unpack_table(stream, path))
    return header, path


def envelope(header: Header, body: bytes, count: int) -> bytes:
    """A well-formed format-2 object around any bytes (length, count and CRC right)."""
    payload = struct.pack(">Q", len(body)) + body + struct.pack(">QI", count, zlib.crc32(body))
    return encode_header(Header(header.kind, header.program, header.id_type, "base", format=TABLE_FORMAT)) + \
        zlib.compress(payload)


def sqlite_file(tmp_path: Path, statements: list[str], rows: Sequence[tuple[object, ...]] | None = None) -> bytes:
    path = tmp_path / "crafted.sqlite3"
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    if rows:
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return path.read_bytes()


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "records"), [(HEADER, members()), (LEDGER, credits())], ids=["members", "ledger"])
def test_records_round_trip_through_a_sqlite_base(header: Header, records: list[Record], tmp_path: Path) -> None:
    read, path = unpack(encode(header, records, tmp_path), tmp_path, header.kind)
    assert read.format == TABLE_FORMAT and read.session == "s1" * (header is HEADER)
    check_header(read, header)
    assert list(table_records(path, header.kind)) == records


def test_an_empty_base_is_valid_and_empty(tmp_path: Path) -> None:
    _, path = unpack(encode(HEADER, [], tmp_path), tmp_path)
    assert list(table_records(path, "member_index")) == []


def test_the_writer_refuses_what_it_could_not_read_back(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="increasing"):
        encode(HEADER, list(reversed(members())), tmp_path)
    with pytest.raises(ValueError, match="16 bytes"):
        encode(HEADER, [member("a@x", 1.0, b"short")], tmp_path)
    with pytest.raises(TypeError):
        encode(HEADER, list(credits()), tmp_path)


# -- untrusted objects --------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "records"), [(HEADER, members()), (LEDGER, credits())], ids=["members", "ledger"])
def test_every_truncation_is_refused(header: Header, records: list[Record], tmp_path: Path) -> None:
    data = encode(header, records, tmp_path)
    for cut in range(len(data)):
        with pytest.raises(StateObjectError):
            unpack(data[:cut], tmp_path, header.kind)


def test_every_flipped_byte_of_the_body_is_refused_or_changes_nothing(tmp_path: Path) -> None:
    # A few bits of a deflate stream's Huffman tables describe codes the stream never uses: flipped, the
    # stream decodes to the very same bytes (checked: length, count, CRC-32 and zlib's Adler-32 agree).
    # Every other flip is refused.
    data = encode(HEADER, members(), tmp_path)
    refused = 0
    for at in range(len(encode_header(HEADER)), len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0x41
        try:
            _, path = unpack(bytes(damaged), tmp_path)
        except StateObjectError:
            refused += 1
            continue
        assert list(table_records(path, "member_index")) == members()
    assert refused >= (len(data) - len(encode_header(HEADER))) * 0.95


def test_bytes_after_the_end_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StateObjectError, match="after the trailer"):
        unpack(encode(HEADER, members(), tmp_path) + b"x", tmp_path)


def _good_file(tmp_path: Path) -> bytes:
    rows = [(r.member, r.version, int(r.gone), r.crowdtwist_id, r.fingerprint, r.updated_at) for r in members()]
    return sqlite_file(tmp_path, [MEMBER_TABLE], rows)


CRAFTED: dict[str, Callable[[Path], tuple[bytes, int]]] = {
    # A well-formed envelope (length, count and CRC right) around what this connector never writes.
    "not a SQLite file": lambda tmp: (b"\0" * 4096, 0),
    "a SQLite file cut short": lambda tmp: (_good_file(tmp)[:3000], 4),
    "a page of the file overwritten": lambda tmp: ((lambda f: f[:4096] + b"\xff" * 4096 + f[8192:])(_good_file(tmp)), 4),
    "another count": lambda tmp: (_good_file(tmp), 5),
    "another table": lambda tmp: (sqlite_file(tmp, [MEMBER_TABLE.replace("records", "other")]), 0),
    "a trigger beside the table": lambda tmp: (sqlite_file(tmp, [
        MEMBER_TABLE, "CREATE TABLE x (y)",
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN DELETE FROM records; END"]), 0),
    "a column more": lambda tmp: (sqlite_file(tmp, [MEMBER_TABLE.replace(") WITHOUT", ", extra TEXT) WITHOUT")]), 0),
    "a digest too short": lambda tmp: (sqlite_file(tmp, [MEMBER_TABLE], [(b"x" * 15, 1.0, 0, None, F1, 1)]), 1),
    "a fingerprint of another type": lambda tmp: (sqlite_file(tmp, [MEMBER_TABLE], [(F1, 1.0, 0, None, "text", 1)]), 1),
    "a tombstone with a fingerprint": lambda tmp: (sqlite_file(tmp, [MEMBER_TABLE], [(F1, 1.0, 1, None, F2, 0)]), 1),
    "gone neither 0 nor 1": lambda tmp: (sqlite_file(tmp, [MEMBER_TABLE], [(F1, 1.0, 2, None, F2, 1)]), 1),
}


@pytest.mark.parametrize("crafted", list(CRAFTED), ids=list(CRAFTED))
def test_a_well_wrapped_file_that_is_not_exactly_a_base_is_refused(crafted: str, tmp_path: Path) -> None:
    body, count = CRAFTED[crafted](tmp_path)
    with pytest.raises(StateObjectError, match="corrupt"):
        unpack(envelope(HEADER, body, count), tmp_path)


def test_a_file_longer_than_its_object_allows_is_refused_before_it_is_written(tmp_path: Path) -> None:
    data = envelope(HEADER, b"\0" * (3 << 20), 0)  # 3 MB of zeros compress to a few kB
    stream = io.BytesIO(data)
    read_header(stream)
    with pytest.raises(StateObjectError, match="length is out of range"):
        unpack_table(stream, tmp_path / "bomb.sqlite3", max_file_size(len(data)))
    assert not (tmp_path / "bomb.sqlite3").exists()


def test_the_good_file_of_those_tests_is_trusted(tmp_path: Path) -> None:
    _, path = unpack(envelope(HEADER, _good_file(tmp_path), 4), tmp_path)
    assert list(table_records(path, "member_index")) == members()


def test_a_corrupt_file_found_by_the_import_is_refused_and_undone(tmp_path: Path) -> None:
    # Past the check (which a crafted file could pass), SQLite's errors in the bulk copy are the object's
    # fault: StateObjectError (the caller distrusts it), the transaction undone, the journal intact.
    records = [member(f"m{n}@x", 10.0 + n, F1, str(n)) for n in range(3000)]
    path = tmp_path / "base.sqlite3"
    data = encode(HEADER, sorted(records), tmp_path)
    _, checked = unpack(data, tmp_path)
    raw = bytearray(checked.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 4096] = b"\x5a" * 4096  # a leaf page in the middle
    path.write_bytes(bytes(raw))
    local = LocalState(tmp_path / "files", PROGRAM)
    with pytest.raises(StateObjectError, match="corrupt"):
        local.import_members("email", iter(()), path)
    assert local.member_count("email") == 0
    index = MemberIndex(local.member_index_path, PROGRAM)
    index.record("email", "after@x", fingerprint=F1)
    index.commit()
    assert local.changed_id_types(local.marks().members) == ["email"]  # the triggers are back
    index.close()
    local.close()


# -- the bulk import ----------------------------------------------------------------------------


def _base_and_deltas() -> tuple[list[MemberRecord], list[list[MemberRecord]]]:
    base = sorted([
        member("kept@x", 100.0, F1, "1"),
        member("newer-in-delta@x", 100.0, F1, "2"),
        member("older-in-delta@x", 300.0, F1, "3"),
        member("forgotten-in-delta@x", 100.0, F1),
        member("tombstone@x", 500.0, gone=True),  # a later entry in a delta would win; an earlier one must not
        member("tombstone-then-entry@x", 100.0, gone=True),
        member("same-time@x", 100.0, F1),
    ])
    delta1 = sorted([
        member("newer-in-delta@x", 200.0, F2, "2"),
        member("older-in-delta@x", 200.0, F2),
        member("forgotten-in-delta@x", 200.0, gone=True),
        member("tombstone@x", 400.0, F2),
        member("tombstone-then-entry@x", 200.0, F3),
        member("same-time@x", 100.0, F2),
        member("only-in-delta@x", 50.0, F3),
    ])
    delta2 = sorted([member("only-in-delta@x", 60.0, F2), member("newer-in-delta@x", 150.0, F3)])
    return base, [delta1, delta2]


def _entries(local: LocalState) -> dict[bytes, tuple[str | None, bytes | None, int]]:
    db = sqlite3.connect(local.member_index_path)
    rows = db.execute("SELECT member, crowdtwist_id, fingerprint, updated_at FROM members").fetchall()
    db.close()
    return {bytes(m): (c, None if f is None else bytes(f), u) for m, c, f, u in rows}


def test_the_bulk_import_gives_what_the_record_by_record_merge_gives(tmp_path: Path) -> None:
    base, deltas = _base_and_deltas()
    _, table = unpack(encode(HEADER, list(base), tmp_path), tmp_path)
    bulk = LocalState(tmp_path / "bulk", PROGRAM)
    bulk.import_members("email", merge_sorted([iter(d) for d in deltas], member_winner), table)
    slow = LocalState(tmp_path / "slow", PROGRAM)
    slow.import_members("email", merge_sorted([iter(base), *(iter(d) for d in deltas)], member_winner))
    assert _entries(bulk) == _entries(slow)
    got = _entries(bulk)
    assert got[digest("kept@x")] == ("1", F1, 100)
    assert got[digest("newer-in-delta@x")] == ("2", F2, 200)
    assert got[digest("older-in-delta@x")] == ("3", F1, 300)
    assert digest("forgotten-in-delta@x") not in got and digest("tombstone@x") not in got
    assert got[digest("tombstone-then-entry@x")] == (None, F3, 200)
    assert got[digest("same-time@x")] == (None, None, 100)  # two fingerprints at one time: none kept
    assert got[digest("only-in-delta@x")] == (None, F2, 60)
    assert bulk.marks().members == 0  # not journaled
    for path in (bulk.member_index_path, bulk.ledger_path):  # back in WAL after the import, as the writers need
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    bulk.close()
    slow.close()


def test_a_table_imported_into_files_with_changes_not_uploaded_is_merged_record_by_record(tmp_path: Path) -> None:
    local = LocalState(tmp_path / "files", PROGRAM)
    index = MemberIndex(local.member_index_path, PROGRAM, clock=lambda: 100.0)
    index.record("email", "kept@x", fingerprint=F3)
    index.commit()
    index.clear_fingerprint("email", "kept@x")  # not uploaded: newer than anything in the bucket
    base, _ = _base_and_deltas()
    _, table = unpack(encode(HEADER, list(base), tmp_path), tmp_path)
    local.import_members("email", iter(()), table)
    got = _entries(local)
    assert got[digest("kept@x")][1] is None
    assert got[digest("newer-in-delta@x")] == ("2", F1, 100)
    index.close()
    local.close()


def test_the_ledger_bulk_import_keeps_done_whatever_the_order(tmp_path: Path) -> None:
    _, table = unpack(encode(LEDGER, list(credits()), tmp_path), tmp_path, "ledger")
    local = LocalState(tmp_path / "files", PROGRAM)
    ledger = CreditLedger(local.ledger_path, ledger_scope(PROGRAM), clock=lambda: 100.0)
    ledger.mark_done("email:a@x|7|evt-2", "credited")  # pending in the base: done stays done
    ledger.mark_pending("local-only")
    local.import_credits([CreditRecord("email:a@x|7|evt-1", done=False, outcome=None, updated_at=99.0),
                          CreditRecord("z-delta", done=True, outcome="credited", updated_at=5.0)], table)
    assert ledger.status("email:a@x|7|evt-1") == "done"  # done in the base, pending in a delta
    assert (ledger.status("email:a@x|7|evt-2"), ledger.outcome("email:a@x|7|evt-2")) == ("done", "credited")
    assert ledger.status("email:ü@x|7|evt-3") == "done" and ledger.status("z-delta") == "done"
    assert ledger.status("local-only") == "pending"
    ledger.close()
    local.close()


# -- compaction over a table --------------------------------------------------------------------


def test_compacting_over_a_table_gives_what_the_full_merge_gives(tmp_path: Path) -> None:
    base, deltas = _base_and_deltas()
    now = 600.0 + RECORD_SECONDS - 150  # old records beyond the limit are dropped, by both ways alike
    _, table = unpack(encode(HEADER, list(base), tmp_path), tmp_path)
    count = update_table(table, "member_index", merge_sorted([iter(d) for d in deltas], member_winner), now)
    expected = [r for r in merge_sorted([iter(base), *(iter(d) for d in deltas)], member_winner)
                if kept_in_base(r, now)]
    assert 0 < count == len(expected) < len(base) + 1
    assert list(table_records(table, "member_index")) == expected


def test_format_1_and_2_are_read_and_a_greater_format_is_not(tmp_path: Path) -> None:
    for version in (STREAM_FORMAT, TABLE_FORMAT):
        check_header(Header("member_index", PROGRAM, "email", "base", format=version), HEADER)
    with pytest.raises(StateObjectError, match="format version 3"):
        check_header(Header("member_index", PROGRAM, "email", "base", format=TABLE_FORMAT + 1), HEADER)


def test_a_bulk_import_into_an_empty_file_leaves_it_in_wal_and_undoes_a_failure(tmp_path: Path) -> None:
    _, table = unpack(encode(LEDGER, list(credits()), tmp_path), tmp_path, "ledger")
    local = LocalState(tmp_path / "files", PROGRAM)
    with pytest.raises(StateObjectError):  # a delta found bad after the base was copied: all undone
        local.import_credits(_failing([CreditRecord("z", done=True, outcome=None, updated_at=1.0)]), table)
    assert local.credit_count() == 0
    local.import_credits(iter(()), table)
    assert local.credit_count() == len(credits())
    db = sqlite3.connect(local.ledger_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    local.close()


def _failing(records: list[CreditRecord]) -> Iterator[CreditRecord]:
    yield from records
    raise StateObjectError("corrupt (found at its end)")
