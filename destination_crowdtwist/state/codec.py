"""The sync state objects' bytes: a header that says whose state it is, then sorted records, streamed.

::

    b"CTSYNCST"  uint32 header length  header (JSON)  zlib( frame* end-frame trailer )
    frame     = uint16 length, payload (one record)
    end-frame = uint16 0
    trailer   = uint64 record count, uint32 CRC-32 of every byte before it (frames, end frame, count)

The header names the format version, the kind (``member_index`` / ``ledger``), the program (the API
base URL in full) and the identifier type. An object is trusted only when all of them are what the
reader expects, its records are in strictly increasing key order, and it ends with the end frame, the
right count and CRC, and the end of the zlib stream: a truncated, corrupt or foreign object (another
program, another identifier type, a future format) is reported as :class:`StateObjectError`, never
read as "these are all the entries". Records are read and written one at a time, so memory stays
flat whatever the size of the object (1,000,000 members: about 40 MB, docs/sync-state.md).

Records (big-endian):

* member entry: ``1, member digest (16), version (f64), flags, updated_at (i64)[, fingerprint (16)][, id]``
* member tombstone: ``2, member digest (16), version (f64)`` -- the member was forgotten at ``version``
* ledger entry: ``3, done (u8), updated_at (f64), outcome length (u8), outcome, dedupe key``
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal, NamedTuple

MAGIC = b"CTSYNCST"
FORMAT_VERSION = 1
#: Bytes read (compressed) and produced (decompressed) at a time: bounds each reader's memory.
CHUNK = 256 * 1024
_MAX_HEADER = 64 * 1024

_FRAME = struct.Struct(">H")
_TRAILER = struct.Struct(">QI")
_MEMBER = struct.Struct(">B16sd")
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
    format: int = FORMAT_VERSION


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
        if version != FORMAT_VERSION:
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
    if header.format != FORMAT_VERSION:
        raise StateObjectError(f"format version {header.format}, this connector reads version {FORMAT_VERSION}")
    if header.kind != expected.kind:
        raise StateObjectError(f"an object of kind {header.kind!r}, not {expected.kind!r}")
    if header.program != expected.program:
        raise StateObjectError("the state of another program (its header names another API base URL)")
    if header.id_type != expected.id_type:
        raise StateObjectError(f"the state of identifier type {header.id_type!r}, not {expected.id_type!r}")


# -- writing -------------------------------------------------------------------------------------


def encode_record(record: Record) -> bytes:
    """One record's payload (without its frame)."""
    if isinstance(record, CreditRecord):
        outcome = (record.outcome or "").encode("utf-8")[:255]
        return (_CREDIT.pack(_CREDIT_TYPE, 1 if record.done else 0, record.updated_at, len(outcome))
                + outcome + record.key.encode("utf-8"))
    if record.gone:
        return _MEMBER.pack(_GONE_TYPE, record.member, record.version)
    flags = (_HAS_FINGERPRINT if record.fingerprint is not None else 0) | (_HAS_ID if record.crowdtwist_id else 0)
    parts = [_MEMBER.pack(_ENTRY_TYPE, record.member, record.version), _ENTRY.pack(flags, record.updated_at)]
    if record.fingerprint is not None:
        parts.append(record.fingerprint)
    if record.crowdtwist_id:
        raw_id = record.crowdtwist_id.encode("utf-8")
        parts.append(bytes((len(raw_id),)) + raw_id)
    return b"".join(parts)


class ObjectWriter:
    """Stream records (in strictly increasing key order) into ``out`` after the header."""

    def __init__(self, out: IO[bytes], header: Header, *, level: int = 1) -> None:
        self._out = out
        self._zip = zlib.compressobj(level)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._crc = 0
        self.count = 0
        self.last_key: bytes | str | None = None
        out.write(encode_header(header))

    def add(self, record: Record) -> None:
        """Append one record (its key must be greater than the previous record's)."""
        key = record[0]
        if self.last_key is not None and not key > self.last_key:  # type: ignore[operator]
            raise ValueError("records must be written in strictly increasing key order")
        self.last_key = key
        payload = encode_record(record)
        if len(payload) > 0xFFFE:
            raise ValueError("a record longer than 65,534 bytes")
        self._pending.append(_FRAME.pack(len(payload)))
        self._pending.append(payload)
        self._pending_bytes += len(payload) + 2
        self.count += 1
        if self._pending_bytes >= CHUNK:
            self._drain()

    def finish(self) -> int:
        """Write the end frame and the trailer; return the number of records."""
        self._pending.append(_FRAME.pack(0))
        self._pending.append(struct.pack(">Q", self.count))
        self._drain()
        self._out.write(self._zip.compress(struct.pack(">I", self._crc)))
        self._out.write(self._zip.flush())
        return self.count

    def _drain(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._crc = zlib.crc32(data, self._crc)
        self._out.write(self._zip.compress(data))


# -- reading -------------------------------------------------------------------------------------


def _decode(payload: bytes) -> Record:
    kind = payload[0]
    if kind == _CREDIT_TYPE:
        _, done, updated_at, size = _CREDIT.unpack_from(payload)
        start = _CREDIT.size
        outcome = payload[start:start + size].decode("utf-8") or None
        return CreditRecord(payload[start + size:].decode("utf-8"), done == 1, outcome, updated_at)
    _, member, version = _MEMBER.unpack_from(payload)
    if kind == _GONE_TYPE:
        if len(payload) != _MEMBER.size:
            raise ValueError("tombstone length")
        return MemberRecord(member, version, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0)
    if kind != _ENTRY_TYPE:
        raise ValueError(f"record type {kind}")
    flags, updated_at = _ENTRY.unpack_from(payload, _MEMBER.size)
    at = _MEMBER.size + _ENTRY.size
    fingerprint = None
    if flags & _HAS_FINGERPRINT:
        fingerprint = payload[at:at + 16]
        at += 16
    crowdtwist_id = None
    if flags & _HAS_ID:
        size = payload[at]
        crowdtwist_id = payload[at + 1:at + 1 + size].decode("utf-8")
        at += 1 + size
    if at != len(payload) or (fingerprint is not None and len(fingerprint) != 16):
        raise ValueError("entry length")
    return MemberRecord(member, version, gone=False, crowdtwist_id=crowdtwist_id, fingerprint=fingerprint,
                        updated_at=updated_at)


class _Inflater:
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


def _frames(buffer: bytes, last: bytes | str | None, *, credit: bool) -> tuple[list[Record], int]:
    """The complete records at the start of ``buffer`` and the offset after them (at the end frame if seen)."""
    records: list[Record] = []
    offset = 0
    while offset + 2 <= len(buffer):
        (size,) = _FRAME.unpack_from(buffer, offset)
        if size == 0 or offset + 2 + size > len(buffer):
            break
        record = _decode(buffer[offset + 2:offset + 2 + size])
        if credit != isinstance(record, CreditRecord):
            raise StateObjectError("a record of another kind")
        key = record[0]
        if last is not None and not key > last:  # type: ignore[operator]
            raise StateObjectError("records out of order")
        last = key
        records.append(record)
        offset += 2 + size
    return records, offset


def read_records(stream: IO[bytes], *, kind: str) -> Iterator[Record]:
    """The records after the header (read it first), checked as they come; raises at the first fault.

    A fault can show only at the end (a missing end frame, a wrong count or CRC): a caller that
    acts on the records as they come must be able to undo that (the import runs in one transaction).
    """
    inflater = _Inflater(stream)
    buffer, crc, count = b"", 0, 0
    last: bytes | str | None = None
    try:
        while True:
            records, offset = _frames(buffer, last, credit=kind == "ledger")
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
    except (zlib.error, struct.error, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise StateObjectError(f"corrupt ({type(exc).__name__}: {exc})") from exc
