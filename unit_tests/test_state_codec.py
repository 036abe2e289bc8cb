"""The sync state objects' bytes: round trips, and every truncated, corrupt or foreign object refused."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest

from destination_crowdtwist.state.codec import (
    FORMAT_VERSION,
    MAGIC,
    CreditRecord,
    Header,
    MemberRecord,
    ObjectWriter,
    Record,
    StateObjectError,
    check_header,
    encode_header,
    frame_record,
    read_header,
    read_records,
)
from destination_crowdtwist.state.layout import (
    Channel,
    ledger_channel,
    member_index_channel,
    program_hash,
    program_root,
)

PROGRAM = "https://api.crowdtwist.com"
HEADER = Header("member_index", PROGRAM, "email", "base", session="s1", written_at=1_700_000_000.5)
LEDGER = Header("ledger", PROGRAM, None, "delta")


def digest(n: int) -> bytes:
    return n.to_bytes(16, "big")


def members() -> list[MemberRecord]:
    return [
        MemberRecord(digest(1), 1000.0, gone=False, crowdtwist_id="123", fingerprint=b"f" * 16, updated_at=1000),
        MemberRecord(digest(2), 1001.5, gone=False, crowdtwist_id=None, fingerprint=None, updated_at=900),
        MemberRecord(digest(3), 1002.0, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0),
        MemberRecord(digest(4), 1003.0, gone=False, crowdtwist_id="é" * 40, fingerprint=b"\0" * 16, updated_at=-5),
    ]


def credits() -> list[CreditRecord]:
    return [
        CreditRecord("email:a@x|7|evt-1", done=True, outcome="credited", updated_at=10.25),
        CreditRecord("email:a@x|7|evt-2", done=False, outcome=None, updated_at=11.0),
        CreditRecord("email:ü@x|7|evt-3", done=True, outcome="not_awarded", updated_at=12.0),
    ]


def encode(header: Header, records: list[Record]) -> bytes:
    out = io.BytesIO()
    writer = ObjectWriter(out, header)
    for record in records:
        writer.add(record)
    assert writer.finish() == len(records)
    return out.getvalue()


def decode(data: bytes, kind: str = "member_index") -> tuple[Header, list[Record]]:
    stream = io.BytesIO(data)
    header = read_header(stream)
    return header, list(read_records(stream, kind=kind))


def test_member_records_round_trip_with_their_header() -> None:
    header, records = decode(encode(HEADER, list(members())))
    assert header == HEADER
    assert records == members()


def test_ledger_records_round_trip() -> None:
    header, records = decode(encode(LEDGER, list(credits())), kind="ledger")
    assert header == LEDGER
    assert records == credits()


def test_an_empty_object_is_valid_and_empty() -> None:
    assert decode(encode(HEADER, [])) == (HEADER, [])


def test_a_large_object_streams_across_chunks() -> None:
    many: list[Record] = [MemberRecord(digest(n), float(n), gone=False, crowdtwist_id=str(n), fingerprint=digest(-n % 997),
                                       updated_at=n) for n in range(30_000)]
    _, records = decode(encode(HEADER, many))
    assert records == many


def test_the_writer_refuses_what_it_could_not_read_back() -> None:
    writer = ObjectWriter(io.BytesIO(), HEADER)
    for bad in (members()[0]._replace(member=b"short"), members()[0]._replace(fingerprint=b"x" * 17),
                members()[0]._replace(crowdtwist_id="9" * 256), CreditRecord("k" * 70_000, done=True, outcome=None,
                                                                             updated_at=0.0)):
        with pytest.raises(ValueError, match="bytes"):
            writer.add(bad)


def test_the_writer_refuses_records_out_of_order() -> None:
    writer = ObjectWriter(io.BytesIO(), HEADER)
    writer.add(members()[1])
    with pytest.raises(ValueError, match="increasing"):
        writer.add(members()[0])
    with pytest.raises(ValueError, match="increasing"):
        writer.add(members()[1])  # a key twice


@pytest.mark.parametrize("records", [members(), credits()], ids=["members", "ledger"])
def test_every_truncation_is_refused(records: list[Record]) -> None:
    header = HEADER if isinstance(records[0], MemberRecord) else LEDGER
    data = encode(header, records)
    for cut in range(len(data)):
        with pytest.raises(StateObjectError):
            decode(data[:cut], kind=header.kind)


def test_every_flipped_byte_of_the_body_is_refused() -> None:
    data = encode(HEADER, list(members()))
    start = len(encode_header(HEADER))
    for at in range(start, len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0x41
        with pytest.raises(StateObjectError):
            decode(bytes(damaged))


def test_bytes_after_the_end_are_refused() -> None:
    with pytest.raises(StateObjectError, match="after the trailer"):
        decode(encode(HEADER, list(members())) + b"x")


def test_a_wrong_record_count_is_refused() -> None:
    # A well-formed stream whose trailer claims one record more: only the count can tell.
    body = b"".join(map(frame_record, members()))
    body += struct.pack(">H", 0) + struct.pack(">Q", len(members()) + 1)
    body += struct.pack(">I", zlib.crc32(body))
    with pytest.raises(StateObjectError, match="count or checksum"):
        decode(encode_header(HEADER) + zlib.compress(body))


def test_records_out_of_order_in_an_object_are_refused() -> None:
    body = b"".join(map(frame_record, reversed(members())))
    body += struct.pack(">H", 0) + struct.pack(">Q", len(members()))
    body += struct.pack(">I", zlib.crc32(body))
    with pytest.raises(StateObjectError, match="out of order"):
        decode(encode_header(HEADER) + zlib.compress(body))


def test_a_ledger_record_in_a_member_object_is_refused() -> None:
    with pytest.raises(StateObjectError, match="another kind"):
        decode(encode(HEADER, list(credits())), kind="member_index")


@pytest.mark.parametrize("data", [b"", b"CTSYNC", b"PK\x03\x04 a zip file", MAGIC + struct.pack(">I", 10**6),
                                  MAGIC + struct.pack(">I", 5) + b"{nope", MAGIC + struct.pack(">I", 2) + b"[]"])
def test_what_is_not_a_state_object_is_refused(data: bytes) -> None:
    with pytest.raises(StateObjectError):
        read_header(io.BytesIO(data))


@pytest.mark.parametrize(("other", "reason"), [
    (Header("member_index", "https://api.sandbox.crowdtwist.com", "email", "base"), "another program"),
    (Header("member_index", PROGRAM, "username", "base"), "identifier type 'username'"),
    (Header("ledger", PROGRAM, None, "base"), "kind 'ledger'"),
])
def test_a_foreign_object_is_refused(other: Header, reason: str) -> None:
    header = read_header(io.BytesIO(encode(other, [])))
    with pytest.raises(StateObjectError, match=reason):
        check_header(header, HEADER)


def test_a_future_format_is_refused_whatever_else_its_header_says() -> None:
    fields = {"format": FORMAT_VERSION + 1, "kind": "member_index", "program": PROGRAM, "shape": "new"}
    raw = json.dumps(fields).encode()
    header = read_header(io.BytesIO(MAGIC + struct.pack(">I", len(raw)) + raw))
    with pytest.raises(StateObjectError, match=f"format version {FORMAT_VERSION + 1}"):
        check_header(header, HEADER)
    check_header(read_header(io.BytesIO(encode(HEADER, []))), HEADER)  # this connector's own: fine


def test_layout_keeps_programs_apart_and_names_sort_by_time() -> None:
    root = program_root("/team/dlq/", PROGRAM)
    assert root == f"team/dlq/crowdtwist-sync-state/{program_hash(PROGRAM)}/"
    assert program_root("", PROGRAM) == f"crowdtwist-sync-state/{program_hash(PROGRAM)}/"
    assert program_hash(PROGRAM) != program_hash(PROGRAM + "/")
    channel = member_index_channel(root, "email")
    assert channel.base_key == root + "member_index/email/base.ctss"
    early, late = channel.delta_key(999, "abc", 2), channel.delta_key(1_700_000_000_000, "abc", 1)
    assert early < late and channel.is_delta(early)
    assert not channel.is_delta(channel.base_key)
    assert not channel.is_delta(member_index_channel(root, "username").delta_key(1, "s", 1))
    assert ledger_channel(root) == Channel("ledger", None, root + "ledger/")
    assert ledger_channel(root).label == "ledger" and channel.label == "member_index/email"
