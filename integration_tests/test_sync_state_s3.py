"""The sync state in a real S3 API (moto's server, IAM on): savings across fresh directories, two syncs at
once, untrusted objects, a bucket down at start and mid-sync, and a kill before the upload.

Each "sync" is a ``SyncStateStore`` in a directory of its own, as a fresh container on the platform,
with the writers' own classes (``MemberIndex``, ``CreditLedger``) writing to the files it hands out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from moto_s3 import MotoS3, free_port

from destination_crowdtwist.state import SyncStateRefused, SyncStateStore, SyncStateUnreachable
from destination_crowdtwist.state.bucket import Bucket
from destination_crowdtwist.state.codec import (
    FORMAT_VERSION,
    MAGIC,
    STREAM_FORMAT,
    TABLE_FORMAT,
    CreditRecord,
    Header,
    MemberRecord,
    ObjectWriter,
    read_header,
)
from destination_crowdtwist.state.layout import ledger_channel, member_index_channel, program_root
from destination_crowdtwist.state.snapshot import ChannelState, compact, merged, read_channel
from destination_crowdtwist.writers.ledger import CreditLedger, ledger_scope
from destination_crowdtwist.writers.member_index import MemberIndex

pytestmark = pytest.mark.timeout(120)

PROGRAM = "https://api.crowdtwist.com"
ROOT = program_root("state", PROGRAM)
ROOT_DIR = Path(__file__).resolve().parents[1]


def fp(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:16]


def digest(user_id: str) -> bytes:
    return hashlib.sha256(user_id.encode()).digest()[:16]  # the index's key of a member


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto: MotoS3) -> str:
    name = f"state-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(name)
    return name


#: When the fake clocks start: recent, since compaction drops entries not written for 400 days.
T0 = 1_764_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(client: Any, bucket: str, folder: Path, **options: Any) -> SyncStateStore:
    options.setdefault("upload_interval", 3600.0)
    return SyncStateStore(client, bucket, PROGRAM, folder, prefix="state", **options)


def record(state: SyncStateStore, users: dict[str, str], *, id_type: str = "email", clock: Clock | None = None,
           forget: tuple[str, ...] = ()) -> None:
    """A User Profile writer's accepted writes (and forgotten members), committed."""
    index = MemberIndex(state.member_index_path, PROGRAM, clock=clock or Clock())
    for user, fields in users.items():
        index.record(id_type, user, fingerprint=fp(fields), crowdtwist_id=f"ct-{user}")
    for user in forget:
        index.forget(id_type, user)
    index.close()


def entries(state: SyncStateStore, users: list[str], id_type: str = "email") -> dict[str, bytes | str | None]:
    """Each member's fingerprint in the store's local index; "absent" when it does not know the member."""
    index = MemberIndex(state.member_index_path, PROGRAM)
    found: dict[str, bytes | str | None] = {}
    for user in users:
        entry = index.lookup(id_type, user)
        found[user] = "absent" if entry is None else entry.fingerprint
    index.close()
    return found


def credits(state: SyncStateStore, done: tuple[str, ...] = (), pending: tuple[str, ...] = ()) -> None:
    ledger = CreditLedger(state.ledger_path, ledger_scope(PROGRAM))
    for key in pending:
        ledger.mark_pending(key)
    for key in done:
        ledger.mark_pending(key)
        ledger.mark_done(key, "credited")
    ledger.close()


def statuses(state: SyncStateStore, keys: list[str]) -> dict[str, str | None]:
    ledger = CreditLedger(state.ledger_path, ledger_scope(PROGRAM))
    found = {key: ledger.status(key) for key in keys}
    ledger.close()
    return found


class Wrapped:
    """A boto3 client whose calls can be intercepted (``hooks[name](**params)`` runs first)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.hooks: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.client, name)
        hook = self.hooks.get(name)
        if hook is None:
            return call

        def hooked(**params: Any) -> Any:
            hook(**params)
            return call(**params)
        return hooked


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "Sync state" in r.getMessage()]


# -- savings ----------------------------------------------------------------------------------------------


def test_the_state_of_one_sync_is_the_next_syncs_in_a_fresh_directory(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airbyte")
    first = store(moto.client(), bucket, tmp_path / "first")
    first.open()
    assert sum("nothing saved yet" in r.getMessage() for r in caplog.records) == 1
    users = {f"member{n}@example.com": f"fields {n}" for n in range(200)}
    record(first, users, forget=("member7@example.com",))
    record(first, {"carl": "c"}, id_type="username")
    credits(first, done=("k1", "k2"), pending=("k3",))
    assert first.close() is True
    assert not (tmp_path / "first" / "files").exists()

    keys = sorted(moto.objects(bucket, "state/"))
    assert keys and all(key.startswith(ROOT) for key in keys)
    assert any("/member_index/email/deltas/" in key for key in keys)
    assert any("/member_index/username/deltas/" in key for key in keys)
    assert any("/ledger/deltas/" in key for key in keys)
    assert not any(b"member1@example.com" in body for key, body in moto.objects(bucket, "state/").items()
                   if "member_index" in key)  # identifiers are digests

    caplog.clear()
    second = store(moto.client(), bucket, tmp_path / "second")
    second.open()
    expected = {user: fp(fields) for user, fields in users.items()} | {"member7@example.com": "absent"}
    assert entries(second, list(users)) == expected
    assert entries(second, ["carl"], id_type="username") == {"carl": fp("c")}
    assert statuses(second, ["k1", "k2", "k3", "k4"]) == {"k1": "done", "k2": "done", "k3": "pending", "k4": None}
    assert any("199 members by email" in r.getMessage() for r in caplog.records)
    assert not any("nothing saved yet" in r.getMessage() for r in caplog.records)
    assert second.close() is True


def test_changes_are_uploaded_at_the_interval_without_a_flush(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    state = store(moto.client(), bucket, tmp_path / "run", upload_interval=0.2)
    state.open()
    record(state, {"a@x": "1"})
    deadline = time.monotonic() + 10
    while not moto.objects(bucket, ROOT + "member_index/email/deltas/"):
        assert time.monotonic() < deadline, "no upload at the interval"
        time.sleep(0.05)
    assert state.close()


def test_flush_returns_once_every_change_so_far_is_in_the_bucket(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    state = store(moto.client(), bucket, tmp_path / "run")
    state.open()
    assert state.flush(5.0) is True and state.stats.uploads == 0  # nothing changed: no request
    credits(state, done=("k1",))
    assert state.flush(5.0) is True
    assert state.stats.uploads == 1
    reader = store(moto.client(), bucket, tmp_path / "reader")
    reader.open()
    assert statuses(reader, ["k1"]) == {"k1": "done"}
    reader.close()
    # Many flushes at once share uploads: each returns True, none uploads what another already did.
    credits(state, done=tuple(f"k{n}" for n in range(2, 40)))
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(state.flush(10.0))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert state.stats.uploads == 2
    state.close()


def test_a_write_ahead_clear_is_in_the_bucket_once_flushed(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    first = store(moto.client(), bucket, tmp_path / "first")
    first.open()
    record(first, {"a@x": "old", "b@x": "old"})
    assert first.flush(5.0)
    index = MemberIndex(first.member_index_path, PROGRAM)
    index.clear_fingerprint("email", "a@x")  # before a request that changes the member (rule 2)
    assert first.flush(5.0)  # the caller's write-ahead: only now may the request go out
    index.close()
    second = store(moto.client(), bucket, tmp_path / "second")
    second.open()
    assert entries(second, ["a@x", "b@x"]) == {"a@x": None, "b@x": fp("old")}
    second.close()
    first.close()


def test_a_flush_that_cannot_wait_for_a_slow_upload_says_so(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    client = Wrapped(moto.client())
    state = store(client, bucket, tmp_path / "run")
    state.open()
    client.hooks["put_object"] = lambda **_: time.sleep(1.0)
    record(state, {"a": "1"})
    slow = threading.Thread(target=state.flush, args=(10.0,))
    slow.start()
    time.sleep(0.2)
    record(state, {"b": "2"})
    assert state.flush(0.1) is False  # the upload in progress holds the store: not known to be saved
    slow.join()
    del client.hooks["put_object"]
    assert state.flush(5.0) is True
    state.close()


def test_compaction_keeps_what_the_deltas_said_and_a_stale_delta_cannot_bring_back_a_forgotten_member(
    moto: MotoS3, bucket: str, tmp_path: Path
) -> None:
    first = store(moto.client(), bucket, tmp_path / "first")
    first.open()
    record(first, {"gone@x": "1", "kept@x": "1"}, clock=Clock(T0))
    first.close()
    (stale_key, stale_body), = moto.objects(bucket, ROOT + "member_index/email/deltas/").items()
    second = store(moto.client(), bucket, tmp_path / "second", compact_after=1, clock=Clock(T0 + 60))
    second.open()
    record(second, {"new@x": "2"}, forget=("gone@x",), clock=Clock(T0 + 50))
    second.close()
    assert list(moto.objects(bucket, ROOT + "member_index/email/deltas/")) == []  # merged into the base
    # A delta the compaction merged but could not delete is merged again: harmless.
    moto.client().put_object(Bucket=bucket, Key=stale_key, Body=stale_body)
    third = store(moto.client(), bucket, tmp_path / "third")
    third.open()
    assert entries(third, ["gone@x", "kept@x", "new@x"]) == {"gone@x": "absent", "kept@x": fp("1"), "new@x": fp("2")}
    third.close()


def test_a_syncs_own_deltas_are_merged_into_one_at_close_and_spare_a_compaction(
    moto: MotoS3, bucket: str, tmp_path: Path
) -> None:
    first = store(moto.client(), bucket, tmp_path / "first", compact_after=1)
    first.open()
    record(first, {f"m{n}@x": "old" for n in range(400)}, clock=Clock(T0))
    assert first.close() and first.stats.compactions == 1  # a base of 400 members
    clock = Clock(T0 + 60)
    second = store(moto.client(), bucket, tmp_path / "second", clock=clock)
    second.open()
    index = MemberIndex(second.member_index_path, PROGRAM, clock=clock)
    for n in range(10):  # a re-sync's write-ahead clears, each flushed before its request: ten deltas
        index.clear_fingerprint("email", f"m{n}@x")
        assert second.flush(5.0)
        clock.now += 1
        if n % 2:
            index.record("email", f"m{n}@x", fingerprint=fp("new"))  # accepted (committed at close)
    index.forget("email", "m399@x")
    index.close()
    assert second.stats.uploads == 10
    assert second.close()
    deltas = moto.objects(bucket, ROOT + "member_index/email/deltas/")
    assert len(deltas) == 1  # ten flushes' deltas and the last upload, merged into one
    assert second.stats.merged_deltas == 11 and second.stats.compactions == 0  # the base was not rewritten
    third = store(moto.client(), bucket, tmp_path / "third")
    third.open()
    expected: dict[str, bytes | str | None] = {f"m{n}@x": fp("new") if n % 2 else None for n in range(10)}
    expected |= {f"m{n}@x": fp("old") for n in range(10, 399)} | {"m399@x": "absent"}
    assert entries(third, [f"m{n}@x" for n in range(400)]) == expected
    third.close()


def test_a_fingerprint_recorded_in_the_second_of_its_uploaded_clear_wins_the_next_syncs_merge(
    moto: MotoS3, bucket: str, tmp_path: Path
) -> None:
    # The index dates an entry by its commit second, an upload dates a clear to the fraction: without care the
    # clear (1000.5) beat the new fingerprint committed after it (1000), and the next sync sent the member again.
    first = store(moto.client(), bucket, tmp_path / "first")
    first.open()
    record(first, {"a@x": "old"}, clock=Clock(T0))
    assert first.close()
    clock = Clock(T0 + 60.5)
    second = store(moto.client(), bucket, tmp_path / "second", clock=clock)
    second.open()
    index = MemberIndex(second.member_index_path, PROGRAM, clock=clock)
    index.clear_fingerprint("email", "a@x")  # write-ahead, uploaded at T0 + 60.5
    assert second.flush(5.0)
    index.record("email", "a@x", fingerprint=fp("new"))  # the accepted request, committed at second T0 + 60
    index.close()
    assert second.close()
    third = store(moto.client(), bucket, tmp_path / "third")
    third.open()
    assert entries(third, ["a@x"]) == {"a@x": fp("new")}
    third.close()


def test_a_first_syncs_deltas_are_its_whole_state_and_are_not_rewritten(
    moto: MotoS3, bucket: str, tmp_path: Path
) -> None:
    first = store(moto.client(), bucket, tmp_path / "first")
    first.open()
    for n in range(3):
        record(first, {f"m{n}@x": "1"})
        assert first.flush(5.0)
    assert first.close() and first.stats.merged_deltas == 0 and first.stats.compactions == 0
    assert len(moto.objects(bucket, ROOT + "member_index/email/deltas/")) == 3


def test_a_compaction_deletes_what_it_merged_a_thousand_keys_a_request(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    # One DeleteObject per merged delta made the end of a sync with many changes slower than all its
    # CrowdTwist requests (400 deltas after a 20,000-row re-sync with 2% changed).
    client = Wrapped(moto.client())
    calls: list[str] = []
    client.hooks["delete_objects"] = lambda **params: calls.append(f"batch of {len(params['Delete']['Objects'])}")
    client.hooks["delete_object"] = lambda **params: calls.append("one")
    keys = [f"{ROOT}member_index/email/deltas/{n:05d}" for n in range(1005)]
    for key in keys[:3]:
        moto.client().put_object(Bucket=bucket, Key=key, Body=b"x")
    assert Bucket(client, bucket, tmp_path / "scratch").delete_many(keys) == set(keys)  # absent keys too
    assert calls == ["batch of 1000", "batch of 5"]
    assert list(moto.objects(bucket, ROOT)) == []


def test_a_store_without_batch_deletes_gets_one_request_a_key(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    client = Wrapped(moto.client())

    def refuse(**params: Any) -> None:
        raise RuntimeError("NotImplemented: DeleteObjects")
    client.hooks["delete_objects"] = refuse
    keys = [f"{ROOT}member_index/email/deltas/{n}" for n in range(3)]
    for key in keys:
        moto.client().put_object(Bucket=bucket, Key=key, Body=b"x")
    assert Bucket(client, bucket, tmp_path / "scratch").delete_many(keys) == set(keys)
    assert list(moto.objects(bucket, ROOT)) == []


# -- two syncs at once ----------------------------------------------------------------------------------


def test_two_syncs_at_once_lose_no_update_and_the_newest_entry_wins(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    early, late = Clock(T0), Clock(T0 + 500.0)
    a = store(moto.client(), bucket, tmp_path / "a", compact_after=1, clock=early)
    b = store(moto.client(), bucket, tmp_path / "b", compact_after=1, clock=late)
    a.open()
    b.open()
    a_users = {f"m{n}": "from a" for n in range(0, 100)}
    b_users = {f"m{n}": "from b" for n in range(50, 150)}

    def run(state: SyncStateStore, users: dict[str, str], clock: Clock) -> None:
        chunk = list(users.items())
        for start in range(0, len(chunk), 10):
            record(state, dict(chunk[start:start + 10]), clock=clock)
            assert state.flush(10.0)

    threads = [threading.Thread(target=run, args=(a, a_users, early)), threading.Thread(target=run, args=(b, b_users, late))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    late.now += 100
    record(b, {}, forget=("m60",), clock=late)  # b learnt that m60 does not exist, after both wrote it
    assert a.close() and b.close()
    third = store(moto.client(), bucket, tmp_path / "third")
    third.open()
    expected: dict[str, bytes | str | None] = {f"m{n}": fp("from a") for n in range(0, 50)}
    expected |= {f"m{n}": fp("from b") for n in range(50, 150)}
    expected["m60"] = "absent"
    assert entries(third, list(expected)) == expected
    third.close()


def test_a_compaction_that_loses_the_race_keeps_its_deltas_and_says_so(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airbyte")
    a = store(moto.client(), bucket, tmp_path / "a", compact_after=1)
    loser_client = Wrapped(moto.client())
    b = store(loser_client, bucket, tmp_path / "b", compact_after=1)
    a.open()
    b.open()
    record(a, {"a1": "a", "shared": "a"}, clock=Clock(T0 + 100.0))
    record(b, {"b1": "b", "shared": "b"}, clock=Clock(T0 + 200.0))
    assert a.flush(5.0)
    raced: list[bool] = []

    def before_put(**params: Any) -> None:
        # b has read the channel and is about to replace its base: a compacts first.
        if params["Key"].endswith("base.ctss") and not raced:
            raced.append(a.close())

    loser_client.hooks["put_object"] = before_put
    assert b.close() is True  # everything is saved: the deltas stay
    assert raced == [True]
    assert b.stats.compaction_races >= 1
    assert sum("another sync replaced" in r.getMessage() for r in caplog.records) == b.stats.compaction_races
    third = store(moto.client(), bucket, tmp_path / "third")
    third.open()
    assert entries(third, ["a1", "b1", "shared"]) == {"a1": fp("a"), "b1": fp("b"), "shared": fp("b")}
    third.close()


def test_a_read_racing_a_compaction_starts_again_and_misses_nothing(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    for n in range(3):
        one = store(moto.client(), bucket, tmp_path / f"sync{n}", compact_after=99)
        one.open()
        record(one, {f"m{n}": "x"}, clock=Clock(T0 + n))
        one.close()
    client = Wrapped(moto.client())
    reader = Bucket(client, bucket, tmp_path / "scratch")
    channel = member_index_channel(ROOT, "email")
    state = ChannelState(channel, Header("member_index", PROGRAM, "email", "base"))
    compacted: list[bool] = []

    def compact_meanwhile(**params: Any) -> None:
        # The read listed the deltas and read the base; before it reads the first delta, another sync
        # compacts: a new base, and the deltas it merged deleted.
        if params["Key"].startswith(channel.deltas_prefix) and not compacted:
            compacted.append(True)
            other = ChannelState(channel, Header("member_index", PROGRAM, "email", "base"))
            other_bucket = Bucket(moto.client(), bucket, tmp_path / "other")
            read_channel(other_bucket, other)
            assert compact(other_bucket, other, Header("member_index", PROGRAM, "email", "base"), T0 + 200).replaced

    client.hooks["get_object"] = compact_meanwhile
    read_channel(reader, state)
    assert compacted == [True]
    assert list(state.copies) == [channel.base_key] and state.deltas == []
    with ExitStack() as files:
        assert [record.member for record in merged(state, files)] == sorted(digest(f"m{n}") for n in range(3))


# -- untrusted objects ----------------------------------------------------------------------------------


def _foreign_header(program: str = PROGRAM, id_type: str | None = "email", version: int = FORMAT_VERSION) -> bytes:
    fields = {"format": version, "kind": "member_index", "program": program, "id_type": id_type, "object": "base",
              "session": "x", "written_at": 0}
    raw = json.dumps(fields).encode()
    return MAGIC + len(raw).to_bytes(4, "big") + raw


def _rewrite(body: bytes, header: bytes) -> bytes:
    length = int.from_bytes(body[len(MAGIC):len(MAGIC) + 4], "big")
    return header + body[len(MAGIC) + 4 + length:]


TAMPERING: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (lambda body: body[: len(body) // 2], "truncated"),
    "corrupt": (lambda body: body[:-9] + bytes(b ^ 0xFF for b in body[-9:]), "corrupt"),
    "another program": (lambda body: _rewrite(body, _foreign_header(program="https://api.sandbox.crowdtwist.com")),
                        "another program"),
    "another identifier type": (lambda body: _rewrite(body, _foreign_header(id_type="username")), "identifier type"),
    "a future format": (lambda body: _rewrite(body, _foreign_header(version=FORMAT_VERSION + 1)), "format version"),
    "not an object": (lambda body: b"<html>gateway error</html>", "not a sync state object"),
}


@pytest.mark.parametrize("tamper", list(TAMPERING), ids=list(TAMPERING))
def test_an_untrusted_base_is_ignored_with_a_warning_and_replaced(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, tamper: str
) -> None:
    caplog.set_level(logging.INFO, logger="airbyte")
    seed = store(moto.client(), bucket, tmp_path / "seed", compact_after=1)
    seed.open()
    record(seed, {"in-base": "1"} | {f"filler{n}": "x" for n in range(50)})  # a base larger than a delta
    seed.close()
    later = store(moto.client(), bucket, tmp_path / "later", compact_after=99)
    later.open()
    record(later, {"in-delta": "2"})
    later.close()
    base_key = member_index_channel(ROOT, "email").base_key
    s3 = moto.client()
    change, reason = TAMPERING[tamper]
    s3.put_object(Bucket=bucket, Key=base_key, Body=change(s3.get_object(Bucket=bucket, Key=base_key)["Body"].read()))

    sync = store(moto.client(), bucket, tmp_path / "sync", compact_after=99)
    sync.open()
    (warning,) = warnings(caplog)
    assert base_key in warning and reason in warning and "not trusted" in warning
    assert entries(sync, ["in-base", "in-delta"]) == {"in-base": "absent", "in-delta": fp("2")}
    record(sync, {"in-base": "1"})  # sent again, and recorded
    assert sync.close()
    caplog.clear()
    after = store(moto.client(), bucket, tmp_path / "after")
    after.open()
    assert warnings(caplog) == []  # replaced by a trusted base
    assert entries(after, ["in-base", "in-delta"]) == {"in-base": fp("1"), "in-delta": fp("2")}
    assert list(moto.objects(bucket, ROOT + "member_index/email/deltas/")) == []
    after.close()


def test_a_format_1_base_of_an_older_connector_is_read_and_replaced_by_a_format_2_one(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airbyte")
    s3 = moto.client()
    channel, ledger = member_index_channel(ROOT, "email"), ledger_channel(ROOT)
    old = tmp_path / "old.ctss"
    with old.open("wb") as out:  # as connectors before format 2 wrote a base: a stream of records
        writer = ObjectWriter(out, Header("member_index", PROGRAM, "email", "base"))
        writer.add_all(sorted([
            MemberRecord(digest("kept"), T0, gone=False, crowdtwist_id="1", fingerprint=fp("k"), updated_at=int(T0)),
            MemberRecord(digest("gone"), T0, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0),
        ]))
        writer.finish()
    s3.put_object(Bucket=bucket, Key=channel.base_key, Body=old.read_bytes())
    with old.open("wb") as out:
        writer = ObjectWriter(out, Header("ledger", PROGRAM, None, "base"))
        writer.add(CreditRecord("k1", done=True, outcome="credited", updated_at=T0))
        writer.finish()
    s3.put_object(Bucket=bucket, Key=ledger.base_key, Body=old.read_bytes())

    sync = store(moto.client(), bucket, tmp_path / "sync", compact_after=1)
    sync.open()
    assert warnings(caplog) == []
    assert entries(sync, ["kept", "gone"]) == {"kept": fp("k"), "gone": "absent"}
    assert statuses(sync, ["k1"]) == {"k1": "done"}
    record(sync, {"new": "n"}, clock=Clock(T0 + 10))
    credits(sync, done=("k2",))
    assert sync.close()  # compacted: the bases are replaced in format 2
    for key in (channel.base_key, ledger.base_key):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        assert read_header(body).format == TABLE_FORMAT != STREAM_FORMAT
    after = store(moto.client(), bucket, tmp_path / "after")
    after.open()
    assert warnings(caplog) == []
    assert entries(after, ["kept", "gone", "new"]) == {"kept": fp("k"), "gone": "absent", "new": fp("n")}
    assert statuses(after, ["k1", "k2"]) == {"k1": "done", "k2": "done"}
    after.close()


def test_an_untrusted_base_that_another_sync_replaced_meanwhile_is_judged_afresh(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base_key = member_index_channel(ROOT, "email").base_key
    moto.client().put_object(Bucket=bucket, Key=base_key, Body=b"garbage")
    x = store(moto.client(), bucket, tmp_path / "x", compact_after=99)
    x.open()
    assert len(warnings(caplog)) == 1
    y = store(moto.client(), bucket, tmp_path / "y", compact_after=1)
    y.open()
    record(y, {"from-y": "y"})
    assert y.close()  # replaces the garbage with a trusted base
    record(x, {"from-x": "x"})
    assert x.close()
    assert len(warnings(caplog)) == 2  # y's own warning about the garbage; x's not repeated
    caplog.clear()
    after = store(moto.client(), bucket, tmp_path / "after")
    after.open()
    assert warnings(caplog) == []
    assert entries(after, ["from-x", "from-y"]) == {"from-x": fp("x"), "from-y": fp("y")}
    after.close()


def test_an_untrusted_delta_is_left_out_and_the_others_are_used(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed = store(moto.client(), bucket, tmp_path / "seed")
    seed.open()
    record(seed, {"a": "1"})
    credits(seed, done=("k1",))
    seed.close()
    channel = ledger_channel(ROOT)
    moto.client().put_object(Bucket=bucket, Key=channel.delta_key(1, "zzz", 1), Body=b"\x00" * 100)
    sync = store(moto.client(), bucket, tmp_path / "sync")
    sync.open()
    (warning,) = warnings(caplog)
    assert channel.delta_key(1, "zzz", 1) in warning
    assert statuses(sync, ["k1"]) == {"k1": "done"} and entries(sync, ["a"]) == {"a": fp("1")}
    sync.close()
    assert channel.delta_key(1, "zzz", 1) not in moto.objects(bucket, channel.folder)  # replaced by a base


# -- failures -------------------------------------------------------------------------------------------


def test_an_unreachable_bucket_at_start_is_a_transient_error_naming_it(moto: MotoS3, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = boto3.client("s3", endpoint_url=nowhere, region_name="us-east-1", **moto.admin,
                          config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
    with pytest.raises(SyncStateUnreachable, match=r"s3://nowhere/state/crowdtwist-sync-state/.*could not be reached"):
        store(client, "nowhere", tmp_path / "run").open()
    with pytest.raises(SyncStateUnreachable, match="could not be reached"):
        store(client, "nowhere", tmp_path / "check").check()


@pytest.mark.parametrize(("who", "bucket_name", "says"), [
    ("nobody", "existing", "access denied"),
    ("admin", "missing-bucket", "no such bucket"),
])
def test_a_refused_bucket_at_start_is_a_config_error_naming_the_cause(
    moto: MotoS3, tmp_path: Path, who: str, bucket_name: str, says: str
) -> None:
    if bucket_name == "existing":
        bucket_name = f"state-{uuid.uuid4().hex[:10]}"
        moto.create_bucket(bucket_name)
    client = moto.client(keys=moto.nobody if who == "nobody" else moto.admin)
    with pytest.raises(SyncStateRefused, match=says):
        store(client, bucket_name, tmp_path / "run").open()
    with pytest.raises(SyncStateRefused, match=says):
        store(client, bucket_name, tmp_path / "check").check()


def test_check_reads_no_state_and_leaves_nothing_behind(moto: MotoS3, bucket: str, tmp_path: Path) -> None:
    seed = store(moto.client(), bucket, tmp_path / "seed")
    seed.open()
    record(seed, {"a": "1"})
    seed.close()
    before = moto.objects(bucket)
    client = Wrapped(moto.client())
    reads: list[str] = []
    client.hooks["get_object"] = lambda **params: reads.append(params["Key"])
    store(client, bucket, tmp_path / "check").check()
    assert reads == [] and moto.objects(bucket) == before
    assert not (tmp_path / "check" / "objects").exists()


def test_a_bucket_down_mid_sync_never_stops_the_sync_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own = MotoS3().start()
    try:
        own.create_bucket("down-mid-sync")
        client = own.client()
        state = store(client, "down-mid-sync", tmp_path / "run", upload_interval=0.1)
        state.open()
        record(state, {"a": "1"})
        assert state.flush(5.0)
    finally:
        own.stop()
    record(state, {"b": "2"})
    assert state.flush(5.0) is False
    time.sleep(0.5)  # interval uploads fail too
    assert state.flush(5.0) is False
    assert entries(state, ["a", "b"]) == {"a": fp("1"), "b": fp("2")}  # this sync's own knowledge is intact
    assert state.close(timeout=5.0) is False
    assert len(warnings(caplog)) == 1 and "goes on" in warnings(caplog)[0]
    assert state.stats.upload_failures >= 3


def test_uploads_that_fail_for_a_while_catch_up_when_the_bucket_is_back(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airbyte")
    client = Wrapped(moto.client())
    state = store(client, bucket, tmp_path / "run")
    state.open()

    def down(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=moto.endpoint)

    client.hooks["put_object"] = down
    record(state, {"a": "1"})
    assert state.flush(5.0) is False
    record(state, {"b": "2"})
    assert state.flush(5.0) is False
    del client.hooks["put_object"]
    assert state.flush(5.0) is True
    assert any("work again" in r.getMessage() for r in caplog.records)
    assert len(warnings(caplog)) == 1
    state.close()
    reader = store(moto.client(), bucket, tmp_path / "reader")
    reader.open()
    assert entries(reader, ["a", "b"]) == {"a": fp("1"), "b": fp("2")}
    reader.close()


def test_a_store_that_ignores_conditional_writes_is_never_compacted(
    moto: MotoS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = Wrapped(moto.client())
    original = client.client.put_object

    def unconditional(**params: Any) -> Any:
        params.pop("IfMatch", None)
        params.pop("IfNoneMatch", None)
        return original(**params)

    client.__dict__["put_object"] = unconditional
    for n in range(2):
        state = store(client, bucket, tmp_path / f"sync{n}", compact_after=1)
        state.open()
        record(state, {f"m{n}": "x"})
        assert state.close()
    assert sum("ignores conditional writes" in w for w in warnings(caplog)) == 2  # once per sync
    assert not any(key.endswith("base.ctss") for key in moto.objects(bucket, ROOT))
    reader = store(moto.client(), bucket, tmp_path / "reader")
    reader.open()
    assert entries(reader, ["m0", "m1"]) == {"m0": fp("x"), "m1": fp("x")}
    reader.close()


# -- a kill between the local commit and the upload ------------------------------------------------------

CHILD = """
import json, sys, time
from destination_crowdtwist.state import SyncStateStore
from destination_crowdtwist.writers.ledger import CreditLedger, ledger_scope
from destination_crowdtwist.writers.member_index import MemberIndex
import boto3
from botocore.config import Config
args = json.loads(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=args["endpoint"], region_name="us-east-1", config=Config(s3={"addressing_style": "path"}), **args["keys"])
store = SyncStateStore(s3, args["bucket"], args["program"], args["folder"], prefix="state", upload_interval=3600)
store.open()
index = MemberIndex(store.member_index_path, args["program"])
ledger = CreditLedger(store.ledger_path, ledger_scope(args["program"]))
for n in range(10):
    index.record("email", f"saved{n}", fingerprint=bytes([n]) * 16)
index.commit()
ledger.mark_pending("k-saved")
ledger.mark_done("k-saved", "credited")
assert store.flush(10)
index.clear_fingerprint("email", "saved1")  # write-ahead, then flushed: in the bucket
assert store.flush(10)
for n in range(10):
    index.record("email", f"lost{n}", fingerprint=bytes([n]) * 16)
index.commit()  # committed locally, never uploaded
index.clear_fingerprint("email", "saved2")  # write-ahead, not flushed: lost with the container
ledger.mark_pending("k-lost")
print("READY", flush=True)
time.sleep(600)
"""


def test_a_kill_after_the_local_commit_and_before_the_upload_costs_only_requests(
    moto: MotoS3, bucket: str, tmp_path: Path
) -> None:
    args = {"endpoint": moto.endpoint, "keys": moto.admin, "bucket": bucket, "program": PROGRAM,
            "folder": str(tmp_path / "killed")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdout=subprocess.PIPE, cwd=ROOT_DIR,
                             env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"READY"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    after = store(moto.client(), bucket, tmp_path / "after")
    after.open()
    found = entries(after, [f"saved{n}" for n in range(10)] + [f"lost{n}" for n in range(10)])
    # Entries committed but not uploaded are unknown (their rows are sent again: requests, nothing else).
    assert all(found[f"lost{n}"] == "absent" for n in range(10))
    assert found["saved1"] is None  # a flushed write-ahead clear holds across the kill
    assert found["saved0"] == bytes([0]) * 16
    # The limit of the bucket: a clear not flushed before the kill is lost, and the entry keeps the fields
    # it had before (the caller must flush after a clear, before the request: docs/sync-state.md).
    assert found["saved2"] == bytes([2]) * 16
    assert statuses(after, ["k-saved", "k-lost"]) == {"k-saved": "done", "k-lost": None}
    after.close()
