"""The sync state objects' bytes: a header that says whose state it is, then sorted records, streamed.

::

    b"CTSYNCST"  uint32 header length  header (JSON)  zlib( frame* end-frame trailer )
    frame     = uint16 length, payload (one record)
    end-frame = uint16 0
    trailer   = uint64 record count, uint32 CRC-32 of every byte before it (frames, end frame, count)

Two body formats: **format 1** (below) is a stream of records, used for every delta and for the
bases older connectors wrote; **format 2** is a base whose body is a SQLite file of its records
(``state/table.py``: imported with one ``INSERT ... SELECT``, no row through Python). Both are read.

The header names the format version, the kind (``member_index`` / ``ledger``), the program (the API
base URL in full) and the identifier type. An object is trusted only when all of them are what the
reader expects, its records are in strictly increasing key order, and it ends with the end frame, the
right count and CRC, and the end of the zlib stream: a truncated, corrupt or foreign object (another
program, another identifier type, a future format) is reported as :class:`StateObjectError`, never
read as "these are all the entries". Records are read and written one at a time, so memory stays
flat whatever the size of the object (1,000,000 members: about 47 MB in this format, docs/sync-state.md).

Records (big-endian):

* member entry: ``1, member digest (16), version (f64), flags, updated_at (i64)[, fingerprint (16)][, id]``
* member tombstone: ``2, member digest (16), version (f64)`` -- the member was forgotten at ``version``
* ledger entry: ``3, done (u8), updated_at (f64), outcome length (u8), outcome, dedupe key``
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any, Literal, NamedTuple

MAGIC = b"CTSYNCST"
#: A stream of records (this module's body): every delta, and the bases of older connectors.
STREAM_FORMAT = 1
#: A base whose body is a SQLite file of its records (``state/table.py``).
TABLE_FORMAT = 2
#: The newest format this connector reads and writes; a greater one is a future format, never trusted.
FORMAT_VERSION = TABLE_FORMAT
READABLE_FORMATS = (STREAM_FORMAT, TABLE_FORMAT)
#: Bytes read (compressed) and produced (decompressed) at a time: bounds each reader's memory.
CHUNK = 256 * 1024
_MAX_HEADER = 64 * 1024
_MAX_RECORD = 65_000

_FRAME = struct.Struct(">H")
_TRAILER = struct.Struct(">QI")
_MEMBER = struct.Struct(">B16sd")
_MEMBER_HEAD = struct.Struct(">HB16sd")  # frame length + _MEMBER
_ENTRY = struct.Struct(">Bq")
_CREDIT = struct.Struct(">BBdB")
_ENTRY_TYPE, _GONE_TYPE, _CREDIT_TYPE = 1, 2, 3
_HAS_FINGERPRINT, _HAS_ID = 1, 2

ObjectRole = Literal["base", "delta"]


class MemberRecord(NamedTuple):
    """One member of one identifier type, as of ``version`` (the time that orders two records of it).

    ``gone``: a tombstone (the member was forgotten; the other fields are empty). Otherwise the local
    index's row: CrowdTwist id, fingerprint (None: the fields it holds are not known) and
    ``updated_at`` (the commit time of the write it records; its age limit counts from there).
    """

    member: bytes
    version: float
    gone: bool
    crowdtwist_id: str | None
    fingerprint: bytes | None
    updated_at: int


class CreditRecord(NamedTuple):
    """One ledger key: ``done`` (credited, with its outcome) or pending (sent, answer unknown)."""

    key: str
    done: bool
    outcome: str | None
    updated_at: float


Record = MemberRecord | CreditRecord


@dataclass(frozen=True)
class Header:
    """Whose state an object holds: format, kind, program, identifier type; and who wrote it."""

    kind: str
    program: str
    id_type: str | None
    role: ObjectRole
    session: str = ""
    written_at: float = 0.0
    format: int = STREAM_FORMAT  # the body's format: set by the writer (ObjectWriter: 1, table.write_table: 2)


class StateObjectError(Exception):
    """An object that must not be trusted: truncated, corrupt or foreign; the message says which."""


def encode_header(header: Header) -> bytes:
    """The magic, the header's length and the header as JSON."""
    body = json.dumps({
        "format": header.format, "kind": header.kind, "program": header.program, "id_type": header.id_type,
        "object": header.role, "session": header.session, "written_at": header.written_at,
    }, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return MAGIC + struct.pack(">I", len(body)) + body


def read_header(stream: IO[bytes]) -> Header:
    """Read and parse an object's header (raises :class:`StateObjectError` if it is not one)."""
    head = stream.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
        raise StateObjectError("not a sync state object (no CTSYNCST header)")
    (size,) = struct.unpack(">I", head[len(MAGIC):])
    if size > _MAX_HEADER:
        raise StateObjectError("corrupt header (length out of range)")
    raw = stream.read(size)
    if len(raw) < size:
        raise StateObjectError("truncated (the object ends inside its header)")
    try:
        fields: Any = json.loads(raw)
        version = fields["format"]
        if not isinstance(version, int):
            raise TypeError("format")  # noqa: TRY301 - one handler for every malformed header
        if version not in READABLE_FORMATS:
            return Header(str(fields.get("kind")), str(fields.get("program")), None, "base", format=version)
        role = fields["object"]
        if role not in ("base", "delta"):
            raise ValueError("object")  # noqa: TRY301
        id_type = fields["id_type"]
        return Header(
            kind=str(fields["kind"]), program=str(fields["program"]),
            id_type=None if id_type is None else str(id_type), role=role,
            session=str(fields.get("session", "")), written_at=float(fields.get("written_at", 0.0)), format=version,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateObjectError(f"corrupt header ({type(exc).__name__})") from exc


def check_header(header: Header, expected: Header) -> None:
    """Raise :class:`StateObjectError` unless the object is this program's, kind's and id type's."""
    if header.format not in READABLE_FORMATS:
        raise StateObjectError(
            f"format version {header.format}, this connector reads versions up to {FORMAT_VERSION}")
    if header.kind != expected.kind:
        raise StateObjectError(f"an object of kind {header.kind!r}, not {expected.kind!r}")
    if header.program != expected.program:
        raise StateObjectError("the state of another program (its header names another API base URL)")
    if header.id_type != expected.id_type:
        raise StateObjectError(f"the state of identifier type {header.id_type!r}, not {expected.id_type!r}")


# -- writing -------------------------------------------------------------------------------------


def frame_record(record: Record) -> bytes:
    """One record as written: its frame (the payload's length), then the payload."""
    if isinstance(record, CreditRecord):
        outcome = (record.outcome or "").encode("utf-8")[:255]
        key = record.key.encode("utf-8")
        size = _CREDIT.size + len(outcome) + len(key)
        if size > _MAX_RECORD:
            raise ValueError("a ledger key longer than 65,000 bytes")
        return _FRAME.pack(size) + _CREDIT.pack(_CREDIT_TYPE, 1 if record.done else 0, record.updated_at,
                                                len(outcome)) + outcome + key
    member, version, gone, crowdtwist_id, fingerprint, updated_at = record
    if len(member) != 16 or (fingerprint is not None and len(fingerprint) != 16):
        raise ValueError("member digests and fingerprints are 16 bytes")
    if gone:
        return _MEMBER_HEAD.pack(_MEMBER.size, _GONE_TYPE, member, version)
    raw_id = crowdtwist_id.encode("utf-8") if crowdtwist_id else b""
    if len(raw_id) > 255:
        raise ValueError("a CrowdTwist id longer than 255 bytes")
    flags = (_HAS_FINGERPRINT if fingerprint is not None else 0) | (_HAS_ID if raw_id else 0)
    size = _MEMBER.size + _ENTRY.size + (16 if fingerprint is not None else 0) + (1 + len(raw_id) if raw_id else 0)
    framed = _MEMBER_HEAD.pack(size, _ENTRY_TYPE, member, version) + _ENTRY.pack(flags, updated_at)
    if fingerprint is not None:
        framed += fingerprint
    if raw_id:
        framed += bytes((len(raw_id),)) + raw_id
    return framed


class ObjectWriter:
    """Stream records (in strictly increasing key order) into ``out`` after the header (format 1, always)."""

    def __init__(self, out: IO[bytes], header: Header, *, level: int = 1) -> None:
        self._out = out
        self._zip = zlib.compressobj(level)
        self._pending = bytearray()
        self._crc = 0
        self.count = 0
        self.last_key: Any = None
        out.write(encode_header(replace(header, format=STREAM_FORMAT)))

    def add(self, record: Record) -> None:
        """Append one record (its key must be greater than the previous record's)."""
        self.add_all((record,))

    def add_all(self, records: Iterable[Record]) -> None:
        """Append records in order (the hot loop of writing a million members)."""
        last, count, pending = self.last_key, self.count, self._pending
        try:
            for record in records:
                key, framed = record[0], frame_record(record)
                if last is not None and not key > last:
                    raise ValueError("records must be written in strictly increasing key order")
                last = key
                pending += framed
                count += 1
                if len(pending) >= CHUNK:
                    self._drain()
        finally:
            self.last_key, self.count = last, count

    def finish(self) -> int:
        """Write the end frame and the trailer; return the number of records."""
        self._pending += _FRAME.pack(0) + struct.pack(">Q", self.count)
        self._drain()
        self._out.write(self._zip.compress(struct.pack(">I", self._crc)))
        self._out.write(self._zip.flush())
        return self.count

    def _drain(self) -> None:
        self._crc = zlib.crc32(self._pending, self._crc)
        self._out.write(self._zip.compress(self._pending))
        self._pending.clear()


# -- reading -------------------------------------------------------------------------------------


class Inflater:
    """Decompressed bytes of a stream, at most :data:`CHUNK` at a time (no object expands into memory)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._unzip = zlib.decompressobj()

    def more(self) -> bytes:
        """The next decompressed bytes; empty at the end of the stream or of the input."""
        unzip = self._unzip
        while True:
            if unzip.unconsumed_tail:
                data = unzip.decompress(unzip.unconsumed_tail, CHUNK)
            elif unzip.eof:
                return b""
            else:
                raw = self._stream.read(CHUNK)
                if not raw:
                    return b""
                data = unzip.decompress(raw, CHUNK)
            if data:
                return data

    def finished(self) -> bool:
        """Whether the zlib stream ended exactly where the input ends."""
        return not self.more() and self._unzip.eof and not self._unzip.unused_data and not self._stream.read(1)


def _member_frames(buffer: bytes, last: Any) -> tuple[list[Record], int]:
    """The complete member records at the start of ``buffer``, and the offset after them.

    The hot loop of reading a million members: one unpack per record, no payload copies.
    """
    records: list[Record] = []
    append = records.append
    head, tail = _MEMBER_HEAD.unpack_from, _ENTRY.unpack_from
    offset, end = 0, len(buffer)
    while offset + 2 <= end:
        stop = offset + 2 + ((buffer[offset] << 8) | buffer[offset + 1])
        if stop == offset + 2 or stop > end:
            break
        if stop - offset < _MEMBER_HEAD.size:
            raise StateObjectError("corrupt (a record too short)")
        _, kind, member, version = head(buffer, offset)
        if kind == _GONE_TYPE:
            if stop - offset != _MEMBER_HEAD.size:
                raise StateObjectError("corrupt (tombstone length)")
            record = MemberRecord(member, version, True, None, None, 0)  # noqa: FBT003 - hot loop
        elif kind == _ENTRY_TYPE:
            flags, updated_at = tail(buffer, offset + _MEMBER_HEAD.size)
            at = offset + _MEMBER_HEAD.size + _ENTRY.size
            fingerprint = crowdtwist_id = None
            if flags & _HAS_FINGERPRINT:
                fingerprint, at = buffer[at:at + 16], at + 16
            if flags & _HAS_ID:
                size = buffer[at]
                crowdtwist_id, at = buffer[at + 1:at + 1 + size].decode("utf-8"), at + 1 + size
            if at != stop:
                raise StateObjectError("corrupt (entry length)")
            record = MemberRecord(member, version, False, crowdtwist_id, fingerprint, updated_at)  # noqa: FBT003
        else:
            raise StateObjectError(f"a record of another kind ({kind})")
        if last is not None and member <= last:
            raise StateObjectError("records out of order")
        last = member
        append(record)
        offset = stop
    return records, offset


def _credit_frames(buffer: bytes, last: Any) -> tuple[list[Record], int]:
    """The complete ledger records at the start of ``buffer``, and the offset after them."""
    records: list[Record] = []
    offset, end = 0, len(buffer)
    while offset + 2 <= end:
        stop = offset + 2 + ((buffer[offset] << 8) | buffer[offset + 1])
        if stop == offset + 2 or stop > end:
            break
        if stop - offset < 2 + _CREDIT.size:
            raise StateObjectError("corrupt (a record too short)")
        kind, done, updated_at, size = _CREDIT.unpack_from(buffer, offset + 2)
        if kind != _CREDIT_TYPE:
            raise StateObjectError(f"a record of another kind ({kind})")
        at = offset + 2 + _CREDIT.size
        if at + size > stop:
            raise StateObjectError("corrupt (outcome length)")
        outcome = buffer[at:at + size].decode("utf-8") or None
        key = buffer[at + size:stop].decode("utf-8")
        if last is not None and key <= last:
            raise StateObjectError("records out of order")
        last = key
        records.append(CreditRecord(key, done == 1, outcome, updated_at))
        offset = stop
    return records, offset


def read_records(stream: IO[bytes], *, kind: str) -> Iterator[Record]:
    """The records after the header (read it first), checked as they come; raises at the first fault.

    A fault can show only at the end (a missing end frame, a wrong count or CRC): a caller that
    acts on the records as they come must be able to undo that (the import runs in one transaction).
    """
    inflater = Inflater(stream)
    frames = _credit_frames if kind == "ledger" else _member_frames
    buffer, crc, count = b"", 0, 0
    last: bytes | str | None = None
    try:
        while True:
            records, offset = frames(buffer, last)
            if records:
                last = records[-1][0]
                count += len(records)
                yield from records
            crc = zlib.crc32(buffer[:offset], crc)
            buffer = buffer[offset:]
            if len(buffer) >= 2 and _FRAME.unpack_from(buffer)[0] == 0:
                break
            data = inflater.more()
            if not data:
                raise StateObjectError("truncated (the object ends before its last record)")
            buffer += data
        while len(buffer) < 2 + _TRAILER.size:
            data = inflater.more()
            if not data:
                raise StateObjectError("truncated (no trailer)")
            buffer += data
        written, stored_crc = _TRAILER.unpack_from(buffer, 2)
        crc = zlib.crc32(buffer[:2 + 8], crc)
        if written != count or stored_crc != crc:
            raise StateObjectError("corrupt (record count or checksum differs)")
        if len(buffer) > 2 + _TRAILER.size or not inflater.finished():
            raise StateObjectError("corrupt (bytes after the trailer, or an unfinished stream)")
    except (zlib.error, struct.error, UnicodeDecodeError, IndexError) as exc:
        raise StateObjectError(f"corrupt ({type(exc).__name__}: {exc})") from exc
