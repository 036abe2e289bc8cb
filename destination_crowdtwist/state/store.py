"""``SyncStateStore``: the member index and the credit ledger kept in the user's bucket between syncs.

On the Airbyte platform every sync runs in a fresh container; this store makes the writers' local
SQLite files (``writers/member_index.py``, ``writers/ledger.py``) outlive it:

1. :meth:`SyncStateStore.open` (before the writers start) reads the program's objects as a
   consistent snapshot and imports them into new local files in ``workdir``
   (:attr:`~SyncStateStore.member_index_path`, :attr:`~SyncStateStore.ledger_path`). Nothing saved
   yet is an empty state, said once in the log. A bucket that cannot be read raises
   (``state/errors.py``): the sync must not start as if it had no state without saying so.
2. During the sync, what the writers changed (their tables' journal, ``state/local.py``) is uploaded
   as a delta object every ``upload_interval`` seconds by a background thread, and on demand by
   :meth:`SyncStateStore.flush`, whose concurrent calls share uploads (group commit,
   ``state/uploads.py``). A sync killed after an hour loses at most the last interval's
   savings: those rows are sent again next time.
3. :meth:`SyncStateStore.close` (after the writers closed their files) uploads the rest, merges this
   sync's own deltas of a channel into one (``state/own_deltas.py``) and, now and then, compacts a
   channel's deltas into a new base (``state/snapshot.py``).

**Safety.** An upload that fails never stops the sync and never makes a row skipped: the local files
are right for this sync, and the bucket keeps older knowledge, which only costs requests (the merge
rules, ``state/merge.py``, never let an older record replace a newer one). The store says so in one
warning and keeps trying at each interval. :meth:`SyncStateStore.flush` is the one promise
callers can build on: when it returns True, every change recorded before the call is in the bucket.

Two stores on one program (two connections, or a retry overlapping a stuck attempt) each write
their own delta objects (unique names, ``If-None-Match: *``), and a base is replaced only over the
one read (``If-Match``): neither can roll back the other's state (``state/snapshot.py``).
"""

from __future__ import annotations

import functools
import itertools
import logging
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from destination_crowdtwist.records.identifiers import ID_TYPES
from destination_crowdtwist.state.bucket import Bucket, Downloaded, remove
from destination_crowdtwist.state.codec import CreditRecord, Header, MemberRecord, ObjectWriter
from destination_crowdtwist.state.errors import (
    SyncStateUnreachable,
    describe,
    is_precondition_failed,
    is_storage_failure,
    start_error,
)
from destination_crowdtwist.state.layout import (
    Channel,
    ledger_channel,
    member_index_channel,
    member_index_folder,
    program_root,
)
from destination_crowdtwist.state.local import LocalState, Marks
from destination_crowdtwist.state.own_deltas import merge_own_deltas
from destination_crowdtwist.state.record_times import AfterDrops
from destination_crowdtwist.state.snapshot import (
    BadObject,
    ChangingObjects,
    ChannelState,
    compact,
    read_channel,
    with_sources,
)
from destination_crowdtwist.state.stats import StoreStats
from destination_crowdtwist.state.uploads import UploadScheduler

logger = logging.getLogger("airbyte")

#: Seconds between two uploads of what changed (the most a killed sync's savings can lose).
UPLOAD_INTERVAL = 60.0
#: Seconds an upload asked for by a flush waits for more flushes to share it (group commit): a
#: re-sync's changing rows come a few ms apart, and each waits a CrowdTwist round trip anyway.
FLUSH_GATHER = 0.1
#: A channel is compacted once it has this many deltas (or its deltas weigh half its base, or the
#: oldest is a week old, or an object was untrusted).
COMPACT_AFTER = 8
COMPACT_AGE_SECONDS = 7 * 86400.0


class SyncStateStore:
    """The sync state of one program in one bucket (see the module docstring).

    ``s3`` is a boto3 S3 client (its retries, timeouts and credentials are the caller's);
    ``program`` the API base URL; ``workdir`` a folder of this sync's own (the local files and the
    objects' copies live there and are removed by :meth:`close`, the files only if ``keep_files`` is
    False); ``clock`` the writers' clock (an upload's time is compared with their write times);
    ``flush_gather`` how long an upload a flush asked for waits for other flushes to share it.
    """

    def __init__(
        self, s3: Any, bucket: str, program: str, workdir: str | Path, *, prefix: str = "",
        upload_interval: float = UPLOAD_INTERVAL, compact_after: int = COMPACT_AFTER,
        clock: Callable[[], float] = time.time, flush_gather: float = FLUSH_GATHER,
    ) -> None:
        self.program = program
        self._workdir = Path(workdir)
        self._root = program_root(prefix, program)
        self._bucket = Bucket(s3, bucket, self._workdir / "objects")
        self._interval = upload_interval
        self._compact_after = max(1, compact_after)
        self._clock = clock
        self._session = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        self._local: LocalState | None = None
        self._channels: dict[Channel, ChannelState] = {}
        self._lock = threading.Lock()  # uploads, compaction and the local files' journal
        self._sent = Marks(0, 0)
        self._after_drops = AfterDrops()  # a record after this sync's clear is dated after it
        self._uploads = UploadScheduler(self._upload_now, interval=upload_interval, gather=flush_gather)
        self._failing = False
        self._warned = False
        self._conditions: bool | None = None
        self._ready = False  # open() succeeded
        self._closed = False
        self.stats = StoreStats()

    @property
    def where(self) -> str:
        """``s3://bucket/<prefix>/crowdtwist-sync-state/<program hash>/``."""
        return self._bucket.where(self._root)

    @property
    def member_index_path(self) -> str:
        """The local member index file the User Profile writer must open (after :meth:`open`)."""
        return self._opened().member_index_path

    @property
    def ledger_path(self) -> str:
        """The local ledger file the Activity Credit writer must open (after :meth:`open`)."""
        return self._opened().ledger_path

    def _opened(self) -> LocalState:
        if self._local is None:
            raise RuntimeError("SyncStateStore.open() was not called")
        return self._local

    # -- start ------------------------------------------------------------------------------------

    def open(self) -> None:
        """Read the program's state into new local files; start the interval uploads.

        Raises ``SyncStateRefused`` (denied, unknown keys, no bucket: fix the setting) or
        ``SyncStateUnreachable`` (try later) when the bucket cannot be read.
        """
        started = time.monotonic()
        local = self._local = LocalState(self._workdir / "files", self.program)
        try:
            kinds = [t for t in self._bucket.folders(member_index_folder(self._root)) if t in ID_TYPES]
            for channel in [ledger_channel(self._root), *(member_index_channel(self._root, t) for t in kinds)]:
                state = self._channel(channel)
                reading = time.monotonic()
                read_channel(self._bucket, state)
                self.stats.download_seconds += time.monotonic() - reading
                if channel.id_type is None:
                    with_sources(self._bucket, state, local.import_credits)
                else:
                    with_sources(self._bucket, state, functools.partial(local.import_members, channel.id_type))
        except ChangingObjects as exc:
            raise SyncStateUnreachable(f"The sync state cannot be read: {exc}. Run the sync again.") from exc
        except Exception as exc:
            if is_storage_failure(exc):
                raise start_error(exc, self.where) from exc
            raise
        self._log_opened(time.monotonic() - started)
        self._ready = True
        self._uploads.start()

    def check(self) -> None:
        """What the ``check`` command runs: the state's prefix can be listed, written and deleted.

        Reads no state (a program's can weigh tens of MB). Raises as :meth:`open` does.
        """
        path = self._bucket.scratch_file("check")
        path.write_bytes(b"check")
        try:
            self._bucket.folders(self._root)
            key = f"{self._root}check-{self._session}"
            self._bucket.put_file(key, path)
            self._bucket.delete(key)
        except Exception as exc:
            if is_storage_failure(exc):
                raise start_error(exc, self.where) from exc
            raise
        finally:
            shutil.rmtree(self._bucket.scratch, ignore_errors=True)

    def _channel(self, channel: Channel) -> ChannelState:
        state = self._channels.get(channel)
        if state is None:
            expected = Header(channel.kind, self.program, channel.id_type, "base")
            state = self._channels[channel] = ChannelState(channel, expected)
        return state

    def _log_opened(self, seconds: float) -> None:
        local = self._opened()
        copies = [copy for state in self._channels.values() for copy in state.copies.values()]
        self.stats.opened(
            copies=len(copies), size=sum(copy.size for copy in copies), seconds=seconds,
            credits=local.credit_count(),
            members={c.id_type: local.member_count(c.id_type) for c in self._channels if c.id_type},
        )
        untrusted = sum(len(state.untrusted) for state in self._channels.values())
        logger.info(self.stats.opened_line(self.where, untrusted))

    # -- during the sync --------------------------------------------------------------------------

    def flush(self, timeout: float, *, gather: bool = True) -> bool:
        """Upload every change recorded so far; True once all of them are in the bucket.

        False when they are not (the upload covering them failed, or they were not uploaded
        within ``timeout`` seconds): the caller must then act as if they were lost. An upload's
        own duration is bounded by the S3 client's timeouts. Flushes at once share uploads
        (``state/uploads.py``): a flush may wait ``flush_gather`` seconds for others to join it,
        unless ``gather`` is False (a caller that holds up the whole sync).
        """
        if self._closed:
            return False
        target = self._opened().marks()
        if self._covered(target):
            return True
        self.stats.flushes += 1
        waited = self._uploads.wait(lambda: self._covered(target), timeout, gather=gather)
        if waited is not None:
            return waited
        # The upload thread is not running (before open() or at close()): upload here.
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return False
        try:
            # Another flush may have uploaded our changes while we waited: one upload serves many.
            return self._covered(target) or (self._upload_locked() and self._covered(target))
        finally:
            self._lock.release()

    def _covered(self, target: Marks) -> bool:
        return target.members <= self._sent.members and target.credits <= self._sent.credits

    def _upload_now(self) -> bool:
        with self._lock:
            return self._upload_locked()

    def _upload_locked(self) -> bool:
        local = self._opened()
        marks = local.marks()
        try:
            if marks.members > self._sent.members:
                now = self._clock()
                for id_type in local.changed_id_types(marks.members):
                    records = self._after_drops.dated(id_type, local.export_members(id_type, marks.members, now))
                    self._put_delta(member_index_channel(self._root, id_type), records)
                local.acknowledge_members(marks.members)
                self._sent = Marks(marks.members, self._sent.credits)
            if marks.credits > self._sent.credits:
                self._put_delta(ledger_channel(self._root), local.export_credits(marks.credits))
                local.acknowledge_credits(marks.credits)
                self._sent = Marks(self._sent.members, marks.credits)
        except Exception as exc:
            # A local SQLite error (a full disk) is a failed upload too: the sync must go on.
            if not is_storage_failure(exc) and not isinstance(exc, sqlite3.Error):
                raise
            self._upload_failed(exc)
            return False
        if self._failing:
            self._failing = False
            logger.info(f"Sync state: uploads to {self.where} work again; every change so far is saved.")
        return True

    def _put_delta(self, channel: Channel, records: Iterable[MemberRecord | CreditRecord]) -> None:
        now = self._clock()
        header = Header(channel.kind, self.program, channel.id_type, "delta", self._session, now)
        path = self._bucket.scratch_file("delta")
        try:
            with path.open("wb") as out:
                writer = ObjectWriter(out, header)
                writer.add_all(records)
                count = writer.finish()
            if count == 0:
                remove(path)
                return
            etag, key = "", ""
            for attempt in range(2):
                key = channel.delta_key(int(now * 1000), self._session, next(self._seq))
                try:
                    etag = self._bucket.put_file(key, path, if_none_match=True)
                    break
                except Exception as exc:
                    # A name taken already: not twice (the session is random and the sequence grows).
                    if attempt or not is_precondition_failed(exc):
                        raise
        except BaseException:
            remove(path)
            raise
        size = path.stat().st_size
        state = self._channel(channel)
        state.copies[key] = Downloaded(key, etag, path, size)
        state.deltas.append(key)
        self.stats.uploads += 1
        self.stats.upload_bytes += size

    def _upload_failed(self, exc: BaseException) -> None:
        self.stats.upload_failures += 1
        self._failing = True
        if self._warned:
            return
        self._warned = True
        logger.warning(
            f"Sync state: the changes of this sync could not be saved to {self.where} ({describe(exc)}). The sync "
            "goes on; the next sync may send or verify again the rows whose state was not saved (more requests, "
            "never a wrong skip). Uploads are tried again every "
            f"{self._interval:g} s; this warning is not repeated."
        )

    # -- end --------------------------------------------------------------------------------------

    def close(self, timeout: float = 120.0, *, keep_files: bool = False) -> bool:
        """Upload what is left and compact the channels that need it; True if everything was saved.

        Call it after the writers closed their files (their last entries are committed then).
        """
        self._uploads.stop(timeout)
        saved = self._ready and self.flush(timeout)
        if saved:
            with self._lock:
                self._merge_own_deltas()
                self._compact_due()
        if self._ready:
            logger.info(self.stats.closing_line())
        self._closed = True
        if self._local is not None:
            self._local.close()
        shutil.rmtree(self._bucket.scratch, ignore_errors=True)
        if not keep_files:
            shutil.rmtree(self._workdir / "files", ignore_errors=True)
        return saved

    def _merge_own_deltas(self) -> None:
        for state in list(self._channels.values()):
            mine = f"-{self._session}-"
            own = [state.copies[key].size for key in state.deltas if mine in key and key in state.copies]
            held = sum(copy.size for copy in state.copies.values())
            # Only where it spares a compaction (one due anyway merges them with the rest), and only when they are
            # at most half of what the channel holds: a first sync's deltas are its whole state, not rewritten.
            if len(own) < 2 or sum(own) * 2 > held or self._due(state, deltas=len(state.deltas) - len(own) + 1):
                continue
            try:
                self.stats.merged_deltas += merge_own_deltas(self._bucket, state, self._session, self._put_delta)
            except Exception as exc:
                if not is_storage_failure(exc) and not isinstance(exc, BadObject):
                    raise
                logger.info(f"Sync state: this sync's delta objects of {state.channel.label} stay as they are "
                            f"({describe(exc)}); nothing is lost.")

    def _due(self, state: ChannelState, *, deltas: int | None = None) -> bool:
        count = len(state.deltas) if deltas is None else deltas
        if state.untrusted or count >= self._compact_after:
            return True
        if state.base_size and state.delta_bytes * 2 >= state.base_size:
            return True
        oldest = state.deltas[0].removeprefix(state.channel.deltas_prefix)[:13] if state.deltas else ""
        return oldest.isdigit() and self._clock() - int(oldest) / 1000 >= COMPACT_AGE_SECONDS

    def _compact_due(self) -> None:
        try:
            for state in list(self._channels.values()):
                if not self._due(state):
                    continue
                if self._conditions is None:
                    self._conditions = self._bucket.honours_conditions(self._root)
                    if not self._conditions:
                        logger.warning(
                            f"Sync state: the store behind {self.where} ignores conditional writes (If-Match), so "
                            "the state is never compacted there (two syncs could otherwise undo each other's "
                            "changes); its delta objects accumulate and each sync reads them all."
                        )
                if not self._conditions:
                    return
                read_channel(self._bucket, state)
                if not self._due(state):
                    continue
                now = self._clock()
                header = Header(state.channel.kind, self.program, state.channel.id_type, "base", self._session, now)
                result = compact(self._bucket, state, header, now)
                if result.replaced:
                    self.stats.compactions += 1
                else:
                    self.stats.compaction_races += 1
                    logger.info(
                        f"Sync state: another sync replaced {state.channel.label}'s base while this one compacted "
                        "it; this sync's changes stay in their delta objects and a later compaction merges them."
                    )
        except ChangingObjects as exc:
            logger.info(f"Sync state: compaction left for a later sync ({exc}); nothing is lost.")
        except Exception as exc:
            if not is_storage_failure(exc):
                raise
            logger.info(f"Sync state: compaction left for a later sync ({describe(exc)}); nothing is lost.")
