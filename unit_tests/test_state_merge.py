"""The merge rules of the sync state: never a row skipped that needed sending, in any merge order."""

from __future__ import annotations

import itertools
import random

from destination_crowdtwist.state.codec import CreditRecord, MemberRecord
from destination_crowdtwist.state.merge import (
    RECORD_SECONDS,
    credit_winner,
    kept_in_base,
    member_winner,
    merge_sorted,
)

M = b"m" * 16
F1, F2 = b"1" * 16, b"2" * 16


def entry(version: float, fingerprint: bytes | None = F1, crowdtwist_id: str | None = "9", updated_at: int | None = None,
          member: bytes = M) -> MemberRecord:
    return MemberRecord(member, version, gone=False, crowdtwist_id=crowdtwist_id, fingerprint=fingerprint,
                        updated_at=int(version) if updated_at is None else updated_at)


def gone(version: float, member: bytes = M) -> MemberRecord:
    return MemberRecord(member, version, gone=True, crowdtwist_id=None, fingerprint=None, updated_at=0)


def test_the_later_record_wins() -> None:
    assert member_winner(entry(10, F1), entry(20, F2)).fingerprint == F2
    assert member_winner(entry(20, F2), entry(10, F1)).fingerprint == F2
    assert member_winner(entry(10), gone(11)).gone
    assert not member_winner(gone(10), entry(11)).gone


def test_at_the_same_time_the_record_that_knows_less_wins() -> None:
    assert member_winner(entry(10, F1), gone(10)).gone
    assert member_winner(entry(10, F1), entry(10, None)).fingerprint is None
    assert member_winner(entry(10, None), entry(10, F1)).fingerprint is None


def test_two_fingerprints_at_the_same_time_leave_none() -> None:
    winner = member_winner(entry(10, F1), entry(10, F2))
    assert not winner.gone and winner.fingerprint is None and winner.crowdtwist_id == "9"


def test_the_newer_entry_is_kept_whole() -> None:
    assert member_winner(entry(10, crowdtwist_id="7"), entry(20, crowdtwist_id=None)).crowdtwist_id is None
    assert member_winner(entry(10, crowdtwist_id="7"), entry(20, crowdtwist_id="8")).crowdtwist_id == "8"
    assert member_winner(entry(10, crowdtwist_id="7"), entry(10, crowdtwist_id=None)).crowdtwist_id == "7"


def test_done_wins_over_pending_whatever_the_times() -> None:
    done = CreditRecord("k", done=True, outcome="credited", updated_at=5.0)
    pending = CreditRecord("k", done=False, outcome=None, updated_at=50.0)
    assert credit_winner(done, pending) == done
    assert credit_winner(pending, done) == done
    later = CreditRecord("k", done=True, outcome="duplicate", updated_at=9.0)
    assert credit_winner(done, later) == later


def _random_records(rng: random.Random, count: int) -> list[MemberRecord]:
    choices = [None, F1, F2]
    records = []
    for _ in range(count):
        version = float(rng.randint(1, 4))
        if rng.random() < 0.25:
            records.append(gone(version))
        else:
            records.append(entry(version, rng.choice(choices), rng.choice([None, "7", "8"]), updated_at=rng.randint(0, 4)))
    return records


def _reduce(records: list[MemberRecord]) -> MemberRecord:
    result = records[0]
    for record in records[1:]:
        result = member_winner(result, record)
    return result


def test_the_member_merge_is_the_same_in_every_order_and_never_keeps_an_older_fingerprint() -> None:
    rng = random.Random(17)
    for _ in range(400):
        records = _random_records(rng, rng.randint(1, 4))
        outcomes = {_reduce(list(order)) for order in itertools.permutations(records)}
        assert len(outcomes) == 1, records
        (merged,) = outcomes
        newest = max(r.version for r in records)
        if not merged.gone and merged.fingerprint is not None:
            # A fingerprint survives only if every newest record carries that very fingerprint.
            at_newest = [r for r in records if r.version == newest]
            assert all(not r.gone and r.fingerprint == merged.fingerprint for r in at_newest), records
        assert merged.version == newest
        assert _reduce([merged, *records]) == merged  # merging again changes nothing


def test_merge_sorted_gives_one_record_per_key_in_order() -> None:
    a = [entry(1, member=b"a" * 16), entry(5, F2, member=b"c" * 16)]
    b = [entry(2, F2, member=b"a" * 16), gone(3, member=b"b" * 16)]
    c = [entry(9, member=b"c" * 16)]
    merged = list(merge_sorted([iter(a), iter(b), iter(c)], member_winner))
    assert [(r.member[:1], r.version, r.gone) for r in merged] == [(b"a", 2.0, False), (b"b", 3.0, True), (b"c", 9.0, False)]
    assert list(merge_sorted([], member_winner)) == []


def test_compaction_keeps_records_for_the_horizon() -> None:
    now = 10 * RECORD_SECONDS
    assert kept_in_base(entry(now - 10), now)
    assert not kept_in_base(entry(now - RECORD_SECONDS - 1), now)
    assert kept_in_base(gone(now - RECORD_SECONDS + 60), now)
    assert not kept_in_base(gone(now - RECORD_SECONDS - 60), now)
    assert kept_in_base(CreditRecord("k", done=True, outcome=None, updated_at=0.0), now)
