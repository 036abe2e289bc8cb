"""One channel's objects read as a consistent snapshot, merged, and compacted into a new base.

**A consistent read** lists the deltas first, then reads the base, then each listed delta. A
compaction writes its base before it deletes the deltas it merged, so a delta missing at the last
step means the base read may be older than that compaction: the read starts again. Whatever order
syncs and compactions interleave in, a snapshot never lacks a delta that its base does not cover.
(A delta written after the listing is simply not in the snapshot; it stays in the bucket.)

**Untrusted objects** (a header of another program, identifier type, kind or format; a body that is
truncated or corrupt) are left out, each with one warning, and replaced by the next compaction.
A body fault can show only at its end, so merging is retried without the faulty object: the
caller's import runs in one transaction and is undone first.

**Compaction** merges the snapshot into a new base (format 2, a SQLite file: ``state/table.py``)
and writes it only if the base is still the one read (``If-Match`` on its ETag; ``If-None-Match: *``
when there was none), then deletes the deltas it merged. If another sync replaced the base
meanwhile, this one gives up: its deltas stay in the bucket and a later compaction merges them, so
nothing is lost or rolled back.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from destination_crowdtwist.state.bucket import UNCHANGED, Bucket, Downloaded, remove
from destination_crowdtwist.state.codec import (
    TABLE_FORMAT,
    Header,
    StateObjectError,
    check_header,
    read_header,
    read_records,
)
from destination_crowdtwist.state.errors import is_missing, is_precondition_failed
from destination_crowdtwist.state.layout import Channel
from destination_crowdtwist.state.merge import credit_winner, kept_in_base, member_winner, merge_sorted
from destination_crowdtwist.state.table import (
    check_table,
    max_file_size,
    pack_table,
    table_records,
    unpack_table,
    update_table,
    write_table,
)

logger = logging.getLogger("airbyte")

#: Reads started again because a compaction ran meanwhile, before giving up.
READ_ATTEMPTS = 5


class ChangingObjects(Exception):
    """The channel's objects kept changing under a read (compactions racing it)."""


class BadObject(Exception):
    """An object's body turned out untrusted while it was merged."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass
class ChannelState:
    """What this sync holds of one channel: local copies of its trusted objects, and the base's ETag."""

    channel: Channel
    expected: Header
    base_etag: str | None = None
    base_size: int = 0
    copies: dict[str, Downloaded] = field(default_factory=dict)
    deltas: list[str] = field(default_factory=list)
    untrusted: dict[str, str] = field(default_factory=dict)

    @property
    def delta_bytes(self) -> int:
        """Bytes of the trusted deltas held."""
        return sum(copy.size for key, copy in self.copies.items() if key != self.channel.base_key)

    def distrust(self, key: str, reason: str, where: str) -> None:
        """Leave an object out, with one warning."""
        if key not in self.untrusted:
            logger.warning(
                f"Sync state: {where} is not trusted ({reason}). It is left out, so the rows it covered are sent or "
                "verified again, and it is replaced at the end of this sync."
            )
        self.untrusted[key] = reason
        copy = self.copies.pop(key, None)
        remove(copy.path if copy else None)


def _trusted(bucket: Bucket, state: ChannelState, copy: Downloaded) -> bool:
    try:
        with copy.path.open("rb") as stream:
            check_header(read_header(stream), state.expected)
    except StateObjectError as exc:
        state.distrust(copy.key, str(exc), bucket.where(copy.key))
        return False
    return True


def read_channel(bucket: Bucket, state: ChannelState) -> None:
    """Bring ``state`` up to a consistent snapshot of its channel, reusing the copies held."""
    channel = state.channel
    for _ in range(READ_ATTEMPTS):
        listed = [item for item in bucket.listing(channel.deltas_prefix) if channel.is_delta(item.key)]
        held = state.copies.get(channel.base_key)
        # An untrusted base is not read again while it is the same object (its ETag is still ours).
        known = held.etag if held else (state.base_etag if channel.base_key in state.untrusted else None)
        base = bucket.download(channel.base_key, unless_etag=known)
        if base is None:
            remove(held.path if held else None)
            state.copies.pop(channel.base_key, None)
            state.base_etag, state.base_size = None, 0
        elif base != UNCHANGED:
            assert isinstance(base, Downloaded)
            remove(held.path if held else None)
            state.copies[channel.base_key] = base
            state.base_etag, state.base_size = base.etag, base.size
            state.untrusted.pop(channel.base_key, None)  # another object now: judged afresh
            _trusted(bucket, state, base)
        complete = True
        for item in listed:
            if item.key in state.copies or item.key in state.untrusted:
                continue  # deltas never change: the copy held is the object
            copy = bucket.download(item.key)
            if copy is None:
                complete = False  # merged and deleted by a compaction: its base may be newer than ours
                break
            assert isinstance(copy, Downloaded)
            state.copies[item.key] = copy
            _trusted(bucket, state, copy)
        if complete:
            names = {item.key for item in listed}
            for key in [key for key in state.copies if key != channel.base_key and key not in names]:
                remove(state.copies.pop(key).path)  # deleted by a compaction whose base we read
            state.deltas = sorted(names)
            return
    raise ChangingObjects(f"the objects in {bucket.where(channel.folder)} kept changing while they were read")


def _stream(copy: Downloaded, kind: str, files: ExitStack) -> Iterator[Any]:
    stream: IO[bytes] = files.enter_context(copy.path.open("rb"))
    read_header(stream)
    try:
        yield from read_records(stream, kind=kind)
    except StateObjectError as exc:
        raise BadObject(copy.key, str(exc)) from exc


def _table(copy: Downloaded, kind: str, files: ExitStack) -> Path | None:
    """A format-2 object's SQLite file, unpacked beside its copy and checked; None for a format-1 object."""
    with copy.path.open("rb") as stream:
        if read_header(stream).format != TABLE_FORMAT:
            return None
        path = copy.path.with_name(copy.path.name + ".sqlite3")
        files.callback(remove, path)
        try:
            check_table(path, kind, unpack_table(stream, path, max_file_size(copy.size)))
        except StateObjectError as exc:
            raise BadObject(copy.key, str(exc)) from exc
    return path


def _table_stream(key: str, path: Path, kind: str) -> Iterator[Any]:
    try:
        yield from table_records(path, kind)
    except StateObjectError as exc:
        raise BadObject(key, str(exc)) from exc


def _merge(streams: list[Iterator[Any]], kind: str) -> Iterator[Any]:
    if len(streams) == 1:
        return streams[0]  # one object: sorted and unique already (its reader checks the order)
    winner: Callable[[Any, Any], Any] = credit_winner if kind == "ledger" else member_winner
    return merge_sorted(streams, winner)


def sources(state: ChannelState, files: ExitStack) -> tuple[Path | None, Iterator[Any]]:
    """The base as a checked SQLite file when it is one (format 2), and every other object's records merged.

    Raises :class:`BadObject` for a format-2 object found untrusted (its body is checked whole here).
    """
    kind, base_key = state.channel.kind, state.channel.base_key
    table: Path | None = None
    streams: list[Iterator[Any]] = []
    for copy in list(state.copies.values()):
        path = _table(copy, kind, files)
        if path is None:
            streams.append(_stream(copy, kind, files))
        elif copy.key == base_key:
            table = path
        else:  # a delta in format 2: never written, read all the same
            streams.append(_table_stream(copy.key, path, kind))
    return table, _merge(streams, kind)


def merged(state: ChannelState, files: ExitStack) -> Iterator[Any]:
    """The channel's records merged from every trusted copy, one per key, in key order."""
    table, others = sources(state, files)
    if table is None:
        return others
    return _merge([_table_stream(state.channel.base_key, table, state.channel.kind), others], state.channel.kind)


def _retrying(bucket: Bucket, state: ChannelState, run: Callable[[ExitStack], None]) -> None:
    while True:
        with ExitStack() as files:
            try:
                run(files)
            except BadObject as bad:
                failure = bad
            else:
                return
        state.distrust(failure.key, failure.reason, bucket.where(failure.key))


def with_sources(bucket: Bucket, state: ChannelState, use: Callable[[Iterator[Any], Path | None], None]) -> None:
    """Run ``use(others, table)`` (see :func:`sources`); an object found faulty is left out and it runs again.

    ``use`` reads the table itself (SQLite, ``state/local.py``): a :class:`StateObjectError` it raises is
    the table's fault (the other objects' faults come as :class:`BadObject`).
    """

    def run(files: ExitStack) -> None:
        table, others = sources(state, files)
        try:
            use(others, table)
        except StateObjectError as exc:
            if table is None:
                raise
            raise BadObject(state.channel.base_key, str(exc)) from exc

    _retrying(bucket, state, run)


@dataclass(frozen=True)
class Compaction:
    """What a compaction did: ``replaced`` the base (and deleted ``deleted`` deltas), or lost a race."""

    replaced: bool
    records: int = 0
    size: int = 0
    deleted: int = 0


def compact(bucket: Bucket, state: ChannelState, header: Header, now: float) -> Compaction:
    """Merge the snapshot into a new base, written only over the base read; then delete merged deltas."""
    channel = state.channel
    path = bucket.scratch_file("base")
    counts: list[int] = []

    def write(files: ExitStack) -> None:
        table, others = sources(state, files)
        scratch = path.with_name(path.name + ".sqlite3")
        with path.open("wb") as out:
            if table is None:
                counts[:] = [write_table(out, header, (r for r in others if kept_in_base(r, now)), scratch)]
                return
            # Over a base that is a SQLite file already: a copy of it, with what the others changed.
            files.callback(remove, scratch)
            shutil.copyfile(table, scratch)
            try:
                count = update_table(scratch, channel.kind, others, now)
            except StateObjectError as exc:
                raise BadObject(channel.base_key, str(exc)) from exc
            pack_table(out, header, scratch, count)
            counts[:] = [count]

    try:
        _retrying(bucket, state, write)
        size = path.stat().st_size
        try:
            if state.base_etag is None:
                etag = bucket.put_file(channel.base_key, path, if_none_match=True)
            else:
                etag = bucket.put_file(channel.base_key, path, if_match=state.base_etag)
        except Exception as exc:
            if is_precondition_failed(exc) or is_missing(exc):
                return Compaction(replaced=False)
            raise
    except BaseException:
        remove(path)
        raise
    old = state.copies.pop(channel.base_key, None)
    remove(old.path if old else None)
    state.copies[channel.base_key] = Downloaded(channel.base_key, etag, path, size)
    state.base_etag, state.base_size = etag, size
    merged = [*state.deltas, *(key for key in state.untrusted if key != channel.base_key)]
    gone = bucket.delete_many(merged)
    left = len(merged) - len(gone)
    if left:  # a delta left behind is merged again, harmlessly
        logger.info(f"Sync state: {left} merged objects could not be deleted after compaction; they are merged again.")
    for key in merged:
        copy = state.copies.pop(key, None)
        remove(copy.path if copy else None)
    deleted = len(gone)
    state.deltas = []
    state.untrusted.clear()
    return Compaction(replaced=True, records=counts[0], size=size, deleted=deleted)
