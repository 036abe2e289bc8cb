"""The local side of the sync state: the writers' own files, journaled by triggers, imported and exported."""

from __future__ import annotations

import hashlib
from pathlib import Path

from destination_crowdtwist.state.codec import CreditRecord, MemberRecord
from destination_crowdtwist.state.local import LocalState
from destination_crowdtwist.writers.ledger import CreditLedger, ledger_scope
from destination_crowdtwist.writers.member_index import MemberIndex

PROGRAM = "https://api.crowdtwist.com"
F1, F2 = b"1" * 16, b"2" * 16


def digest(user_id: str) -> bytes:
    return hashlib.sha256(user_id.encode()).digest()[:16]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_every_change_of_the_writers_is_journaled_and_exported(tmp_path: Path) -> None:
    local = LocalState(tmp_path, PROGRAM)
    clock = Clock()
    index = MemberIndex(local.member_index_path, PROGRAM, clock=clock)
    index.record("email", "a@x", fingerprint=F1, crowdtwist_id="1")
    index.record("email", "b@x", fingerprint=F2)
    index.record("username", "carl", fingerprint=F1)
    index.commit()
    assert local.changed_id_types(local.marks().members) == ["email", "username"]
    clock.now += 100
    index.clear_fingerprint("email", "a@x")  # write-ahead: durable at once, journaled at once
    index.forget("email", "b@x")
    marks = local.marks()
    exported = list(local.export_members("email", marks.members, now=clock.now + 5))
    by_member = {record.member: record for record in exported}
    assert [r.member for r in exported] == sorted(by_member)
    cleared, forgotten = by_member[digest("a@x")], by_member[digest("b@x")]
    assert (cleared.gone, cleared.fingerprint, cleared.crowdtwist_id) == (False, None, "1")
    assert cleared.version == clock.now + 5 and cleared.updated_at == int(clock.now - 100)
    assert forgotten == MemberRecord(digest("b@x"), clock.now + 5, gone=True, crowdtwist_id=None, fingerprint=None,
                                     updated_at=0)
    local.acknowledge_members(marks.members)
    assert local.changed_id_types(local.marks().members) == []
    index.record("email", "a@x", fingerprint=F2)
    index.commit()
    (again,) = local.export_members("email", local.marks().members, now=clock.now)
    assert (again.fingerprint, again.version) == (F2, float(int(clock.now)))
    index.close()
    local.close()


def test_ledger_marks_are_journaled_and_a_dropped_key_is_not_exported(tmp_path: Path) -> None:
    local = LocalState(tmp_path, PROGRAM)
    ledger = CreditLedger(local.ledger_path, ledger_scope(PROGRAM), clock=lambda: 50.0)
    ledger.mark_pending("k1")
    ledger.mark_done("k1", "credited")
    ledger.mark_pending("k2")
    ledger.mark_pending("k3")
    ledger.forget("k3")  # refused: nothing landed
    other = CreditLedger(local.ledger_path, ledger_scope("https://sandbox"))
    other.mark_done("k9", "credited")  # another program's key in the same file is not this state's
    exported = list(local.export_credits(local.marks().credits))
    assert exported == [CreditRecord("k1", done=True, outcome="credited", updated_at=50.0),
                        CreditRecord("k2", done=False, outcome=None, updated_at=50.0)]
    ledger.close()
    other.close()
    local.close()


def test_an_import_into_fresh_files_is_what_the_bucket_holds_and_is_not_journaled(tmp_path: Path) -> None:
    local = LocalState(tmp_path, PROGRAM)
    records = [
        MemberRecord(digest("a@x"), 10.0, gone=False, crowdtwist_id="1", fingerprint=F1, updated_at=10),
        MemberRecord(digest("b@x"), 11.0, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0),
        MemberRecord(digest("c@x"), 12.0, gone=False, crowdtwist_id=None, fingerprint=None, updated_at=9),
    ]
    local.import_members("email", sorted(records))
    local.import_credits([CreditRecord("k1", done=True, outcome="credited", updated_at=1.0),
                          CreditRecord("k2", done=False, outcome=None, updated_at=2.0)])
    assert local.marks().members == 0 and local.marks().credits == 0
    index = MemberIndex(local.member_index_path, PROGRAM)
    assert index.lookup("email", "a@x") is not None and index.lookup("email", "a@x").fingerprint == F1  # type: ignore[union-attr]
    assert index.lookup("email", "b@x") is None
    assert index.lookup("email", "c@x").fingerprint is None  # type: ignore[union-attr]
    assert index.lookup("username", "a@x") is None
    ledger = CreditLedger(local.ledger_path, ledger_scope(PROGRAM))
    assert (ledger.status("k1"), ledger.outcome("k1"), ledger.status("k2")) == ("done", "credited", "pending")
    index.close()
    ledger.close()
    local.close()


def test_an_import_into_files_with_changes_not_uploaded_keeps_the_newer_news(tmp_path: Path) -> None:
    local = LocalState(tmp_path, PROGRAM)
    index = MemberIndex(local.member_index_path, PROGRAM, clock=Clock(100.0))
    for user in ("old@x", "new@x", "cleared@x", "forgotten@x", "same@x"):
        index.record("email", user, fingerprint=F1)
    index.commit()
    index.clear_fingerprint("email", "cleared@x")
    index.forget("email", "forgotten@x")
    incoming = [
        MemberRecord(digest("old@x"), 200.0, gone=False, crowdtwist_id=None, fingerprint=F2, updated_at=200),  # newer
        MemberRecord(digest("new@x"), 50.0, gone=False, crowdtwist_id=None, fingerprint=F2, updated_at=50),  # older
        MemberRecord(digest("cleared@x"), 300.0, gone=False, crowdtwist_id=None, fingerprint=F2, updated_at=300),
        MemberRecord(digest("forgotten@x"), 300.0, gone=False, crowdtwist_id=None, fingerprint=F2, updated_at=300),
        MemberRecord(digest("same@x"), 100.0, gone=False, crowdtwist_id=None, fingerprint=F2, updated_at=100),
        MemberRecord(digest("only@x"), 100.0, gone=False, crowdtwist_id=None, fingerprint=F2, updated_at=100),
    ]
    local.import_members("email", sorted(incoming))
    assert index.lookup("email", "old@x").fingerprint == F2  # type: ignore[union-attr]
    assert index.lookup("email", "new@x").fingerprint == F1  # type: ignore[union-attr]
    # A clear or a forget made here and not uploaded yet is newer than anything in the bucket.
    assert index.lookup("email", "cleared@x").fingerprint is None  # type: ignore[union-attr]
    assert index.lookup("email", "forgotten@x") is None
    # Same time, different fields: which the member holds is not known, so no skip.
    assert index.lookup("email", "same@x").fingerprint is None  # type: ignore[union-attr]
    assert index.lookup("email", "only@x").fingerprint == F2  # type: ignore[union-attr]
    # The import is not journaled; the local changes still are.
    members = {r.member for r in local.export_members("email", local.marks().members, now=400.0)}
    assert digest("cleared@x") in members and digest("forgotten@x") in members
    assert digest("only@x") not in members
    index.close()
    local.close()


def test_the_ledger_import_never_turns_done_into_pending(tmp_path: Path) -> None:
    local = LocalState(tmp_path, PROGRAM)
    ledger = CreditLedger(local.ledger_path, ledger_scope(PROGRAM), clock=lambda: 100.0)
    ledger.mark_done("k1", "credited")
    ledger.mark_pending("k2")
    local.import_credits([CreditRecord("k1", done=False, outcome=None, updated_at=500.0),
                          CreditRecord("k2", done=True, outcome="duplicate", updated_at=1.0)])
    assert (ledger.status("k1"), ledger.status("k2"), ledger.outcome("k2")) == ("done", "done", "duplicate")
    ledger.close()
    local.close()
