"""Group commit of the sync state's flushes (``state/uploads.py``): many flushes share few uploads, and none
returns True before its change is in the bucket, nor True when the upload covering it failed.

The uploads are fakes (a function, or a boto3-like client keeping objects in memory) that block on events
the tests release: no sleep serves as synchronisation.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from destination_crowdtwist.state.codec import MemberRecord, read_header, read_records
from destination_crowdtwist.state.record_times import AfterDrops
from destination_crowdtwist.state.store import SyncStateStore
from destination_crowdtwist.state.uploads import UploadScheduler
from destination_crowdtwist.writers.member_index import MemberIndex

PROGRAM = "https://api.crowdtwist.com"
WAIT = 10.0  # seconds a test waits for an event before failing (never reached when the code is right)


class Journal:
    """A store's marks, faked: ``record()`` is a change, an upload copies the marks it read at its start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recorded = 0
        self.sent = 0
        self.uploaded: list[int] = []  # the marks each upload read
        self.block = threading.Event()
        self.block.set()
        self.running = threading.Event()
        self.fail: set[int] = set()  # numbers (1-based) of the uploads that fail

    def record(self) -> int:
        with self.lock:
            self.recorded += 1
            return self.recorded

    def upload(self) -> bool:
        with self.lock:
            marks = self.recorded
        self.uploaded.append(marks)
        self.running.set()
        assert self.block.wait(WAIT)
        if len(self.uploaded) in self.fail:
            return False
        self.sent = max(self.sent, marks)
        return True


class Flushes:
    """``n`` threads, each recording a change and then waiting for it; ``inside`` is set once every one of
    them has checked its target at least once (it is then waiting, or about to)."""

    def __init__(self, journal: Journal, scheduler: UploadScheduler, n: int) -> None:
        self.results: dict[int, bool | None] = {}
        self.sent_at_return: dict[int, int] = {}
        self.inside = threading.Event()
        self._checked: set[int] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._one, args=(journal, scheduler, n)) for _ in range(n)]

    def _one(self, journal: Journal, scheduler: UploadScheduler, n: int) -> None:
        target = journal.record()

        def covered() -> bool:
            with self._lock:
                self._checked.add(target)
                if len(self._checked) == n:
                    self.inside.set()
            return journal.sent >= target

        result = scheduler.wait(covered, WAIT)
        self.sent_at_return[target] = journal.sent
        self.results[target] = result

    def start(self) -> Flushes:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join(WAIT)


def started(journal: Journal, **options: Any) -> UploadScheduler:
    scheduler = UploadScheduler(journal.upload, interval=3600.0, **options)
    scheduler.start()
    return scheduler


def test_flushes_arriving_during_an_upload_share_the_next_one_and_return_only_after_it() -> None:
    journal = Journal()
    scheduler = started(journal)
    journal.block.clear()
    first = Flushes(journal, scheduler, 1).start()
    assert journal.running.wait(WAIT)  # upload 1 runs (held) and covers the first change only
    many = Flushes(journal, scheduler, 20).start()
    assert many.inside.wait(WAIT)
    assert many.results == {} and first.results == {}  # nothing returns before its upload ends
    journal.block.set()
    first.join()
    many.join()
    assert first.results == {1: True}
    assert many.results == dict.fromkeys(range(2, 22), True)
    assert journal.uploaded == [1, 21]  # 21 flushes, 2 uploads: the second took every change recorded
    # Each returned only once an upload that read its change had ended.
    assert all(sent >= target for target, sent in {**first.sent_at_return, **many.sent_at_return}.items())
    scheduler.stop(WAIT)


def test_the_gathering_window_lets_flushes_share_one_upload() -> None:
    journal = Journal()
    gathering, gathered = threading.Event(), threading.Event()

    def pause(_seconds: float) -> None:
        gathering.set()
        assert gathered.wait(WAIT)

    scheduler = started(journal, gather=0.2, pause=pause)
    flushes = Flushes(journal, scheduler, 12).start()
    assert flushes.inside.wait(WAIT) and gathering.wait(WAIT)
    assert journal.uploaded == []  # still gathering: no upload yet, no flush returned
    assert flushes.results == {}
    gathered.set()
    flushes.join()
    assert flushes.results == dict.fromkeys(range(1, 13), True)
    assert journal.uploaded == [12]  # one upload for twelve flushes
    scheduler.stop(WAIT)


def test_a_flush_that_cannot_wait_ends_the_gathering_and_shares_the_upload() -> None:
    journal = Journal()
    scheduler = started(journal, gather=WAIT * 3)  # a window no test waits for: only the hurry ends it
    drops = Flushes(journal, scheduler, 5).start()
    assert drops.inside.wait(WAIT)
    target = journal.record()
    assert scheduler.wait(lambda: journal.sent >= target, WAIT, gather=False) is True  # the state gate's flush
    drops.join()
    assert drops.results == dict.fromkeys(range(1, 6), True)
    assert journal.uploaded == [6]  # the five drops and the gate: one upload
    scheduler.stop(WAIT)


def test_a_failed_upload_fails_every_flush_it_covered_and_the_next_flush_tries_again() -> None:
    journal = Journal()
    scheduler = started(journal)
    journal.block.clear()
    journal.fail = {2}
    first = Flushes(journal, scheduler, 1).start()
    assert journal.running.wait(WAIT)
    many = Flushes(journal, scheduler, 8).start()
    assert many.inside.wait(WAIT)
    journal.block.set()
    first.join()
    many.join()
    assert first.results == {1: True}
    assert many.results == dict.fromkeys(range(2, 10), False)  # upload 2 covered them all and failed
    assert journal.uploaded == [1, 9]  # none of them waited for another upload
    again = Flushes(journal, scheduler, 1).start()
    again.join()
    assert again.results == {10: True} and journal.uploaded == [1, 9, 10]
    scheduler.stop(WAIT)


def test_a_flush_gives_up_after_its_timeout_and_a_stopped_scheduler_hands_the_upload_back() -> None:
    journal = Journal()
    scheduler = started(journal)
    journal.block.clear()
    first = Flushes(journal, scheduler, 1).start()
    assert journal.running.wait(WAIT)
    target = journal.record()
    assert scheduler.wait(lambda: journal.sent >= target, 0.05) is False  # upload 1 is held: not known saved
    journal.block.set()
    first.join()
    assert scheduler.wait(lambda: journal.sent >= target, WAIT) is True
    scheduler.stop(WAIT)
    journal.record()
    assert scheduler.wait(lambda: False, WAIT) is None  # stopped: the store uploads itself (at close)


# -- through the store, with a bucket kept in memory -------------------------------------------------------


class Missing(Exception):
    """A ClientError's shape: no such key."""

    response = {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}


class FakeS3:
    """The boto3 calls ``state/bucket.py`` makes, on a dict; ``put_object`` counts and can be held."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.hold = threading.Event()
        self.hold.set()
        self.putting = threading.Event()
        self.refuse = False

    def list_objects_v2(self, *, Bucket: str, Prefix: str, **_: Any) -> dict[str, Any]:
        keys = sorted(key for key in self.objects if key.startswith(Prefix))
        return {"Contents": [{"Key": key, "ETag": f'"{n}"', "Size": len(self.objects[key])} for n, key in
                             enumerate(keys)], "IsTruncated": False}

    def get_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        if Key not in self.objects:
            raise Missing
        return {"Body": io.BytesIO(self.objects[Key]), "ETag": '"0"'}

    def delete_object(self, *, Bucket: str, Key: str) -> None:
        self.objects.pop(Key, None)

    def put_object(self, *, Bucket: str, Key: str, Body: Any, **_: Any) -> dict[str, Any]:
        data = Body.read()
        self.putting.set()
        assert self.hold.wait(WAIT)
        if self.refuse:
            raise ConnectionRefusedError("the bucket is down")  # an OSError: a storage failure
        self.puts += 1
        self.objects[Key] = data
        return {"ETag": f'"{self.puts}"'}

    def cleared(self) -> set[bytes]:
        """The members whose fingerprint is cleared in some uploaded delta."""
        found: set[bytes] = set()
        for key, data in list(self.objects.items()):
            if "/deltas/" not in key:
                continue
            stream = io.BytesIO(data)
            header = read_header(stream)
            for record in read_records(stream, kind=header.kind):
                if isinstance(record, MemberRecord) and record.fingerprint is None and not record.gone:
                    found.add(record.member)
        return found


def digest(user_id: str) -> bytes:
    return hashlib.sha256(user_id.encode()).digest()[:16]


def drops(s3: FakeS3, store: SyncStateStore, users: list[str]) -> tuple[dict[str, bool], dict[str, bool]]:
    """Each user's fingerprint cleared at once on its own thread (a worker's write-ahead, then its flush).

    The bucket's PUTs are held until every clear is recorded. Returns each flush's result and whether its
    clear was in the bucket when the flush returned.
    """
    results: dict[str, bool] = {}
    in_bucket: dict[str, bool] = {}
    index = MemberIndex(store.member_index_path, PROGRAM)
    for user in users:
        index.record("email", user, fingerprint=b"1" * 16)
    index.commit()
    lock, cleared, all_cleared = threading.Lock(), [0], threading.Event()

    def one(user: str) -> None:
        index.clear_fingerprint("email", user)  # journaled, committed: the change is recorded
        with lock:
            cleared[0] += 1
            if cleared[0] == len(users):
                all_cleared.set()
        results[user] = store.flush(WAIT)
        in_bucket[user] = digest(user) in s3.cleared()

    s3.hold.clear()
    threads = [threading.Thread(target=one, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    assert all_cleared.wait(WAIT)
    s3.hold.set()
    for thread in threads:
        thread.join(WAIT)
    index.close()
    return results, in_bucket


def opened(s3: FakeS3, tmp_path: Path) -> SyncStateStore:
    store = SyncStateStore(s3, "bucket", PROGRAM, tmp_path / "run", upload_interval=3600.0, flush_gather=0.05)
    store.open()
    return store


def test_concurrent_drops_share_uploads_and_each_is_in_the_bucket_when_its_flush_returns(tmp_path: Path) -> None:
    s3 = FakeS3()
    store = opened(s3, tmp_path)
    users = [f"user{n}@x" for n in range(40)]
    results, in_bucket = drops(s3, store, users)
    assert results == dict.fromkeys(users, True)
    assert in_bucket == dict.fromkeys(users, True)  # never True before the clear was uploaded
    # 40 drops (and the entries recorded before them): the upload running while they came, and one more.
    assert s3.puts <= 2, s3.puts
    assert store.close()


def test_a_failed_upload_makes_every_drop_it_covered_act_as_lost(tmp_path: Path) -> None:
    s3 = FakeS3()
    store = opened(s3, tmp_path)
    index = MemberIndex(store.member_index_path, PROGRAM)
    index.record("email", "first@x", fingerprint=b"1" * 16)
    index.commit()
    index.close()
    s3.refuse = True
    users = [f"user{n}@x" for n in range(10)]
    results, in_bucket = drops(s3, store, users)
    assert results == dict.fromkeys(users, False)
    assert s3.puts == 0 and not any(in_bucket.values())
    s3.refuse = False
    assert store.flush(WAIT) is True and s3.puts == 1  # the bucket is back: one upload catches up
    assert {digest(user) for user in users} <= s3.cleared()
    assert store.close()


def flaky(calls: list[str]) -> Callable[[], bool]:
    def upload() -> bool:
        calls.append("upload")
        raise RuntimeError("a bug")
    return upload


def test_an_unexpected_error_in_an_upload_fails_its_flushes_instead_of_leaving_them_waiting() -> None:
    calls: list[str] = []
    scheduler = UploadScheduler(flaky(calls), interval=3600.0)
    scheduler.start()
    assert scheduler.wait(lambda: False, WAIT) is False
    assert calls == ["upload"]
    scheduler.stop(WAIT)


def record(member: bytes, version: float, fingerprint: bytes | None = b"f" * 16, *, gone: bool = False) -> MemberRecord:
    return MemberRecord(member, version, gone, None, None if gone else fingerprint, int(version))


def test_a_record_after_an_uploaded_clear_is_dated_just_after_it_and_no_other_is_touched() -> None:
    dates = AfterDrops()
    first = list(dates.dated("email", [record(b"a", 1000.7, None), record(b"b", 1000.2, gone=True),
                                       record(b"c", 990.0)]))
    assert [r.version for r in first] == [1000.7, 1000.2, 990.0]  # clears, tombstones, others: as exported
    later = list(dates.dated("email", [record(b"a", 1000.0), record(b"b", 1002.0), record(b"c", 995.0)]))
    assert later[0].version == math.nextafter(1000.7, math.inf) and later[0].fingerprint == b"f" * 16
    assert [r.version for r in later[1:]] == [1002.0, 995.0]  # already after its drop / never dropped
    assert next(iter(dates.dated("username", [record(b"a", 1000.0)]))).version == 1000.0  # another identifier type
