"""How two records of one member (or one ledger key) become one: the rules that make concurrent syncs safe.

Objects are merged key by key, from streams sorted by key, so merging a base of a million members
with its deltas holds one record per stream in memory. Each rule is commutative and associative:
objects can be merged in any order, and merging an object twice changes nothing, so a delta that
a compaction already covered but could not delete is harmless.

**Member index** (the index may only lose knowledge or keep the newer one; never invent a match):

* The record with the later ``version`` wins (an entry's version is the commit time of the write it
  records; a forgotten member's tombstone and a cleared fingerprint carry the time they were
  uploaded, which is never earlier than the change, so they win over what they replace).
* At the same version the record that knows less wins: a tombstone wins over an entry, and two
  entries keep a fingerprint only if they agree on it (else the member's next row is sent, not
  skipped).

**Ledger**: ``done`` wins over ``pending`` whatever their times (a credit that CrowdTwist accepted
stays accepted), then the later time. A key is never removed: a pending key that another sync
dropped still costs one history read, never a second credit.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import TypeVar

from destination_crowdtwist.state.codec import CreditRecord, MemberRecord

R = TypeVar("R", MemberRecord, CreditRecord)

#: Records not written again for this long are dropped at compaction. Entries older than the longest
#: member_index_max_age_days (365) would have their rows sent anyway; a tombstone is kept as long, far
#: longer than a delta can wait for its compaction, so no late delta can bring back what it removed.
RECORD_SECONDS = 400 * 86400.0


def member_winner(a: MemberRecord, b: MemberRecord) -> MemberRecord:
    """Of two records of one member, the one to keep (see the module docstring).

    At one version the result is a join, field by field (gone if either is; the fingerprint only if
    both agree; the larger id and write time), so any number of records merge to the same result
    in any order.
    """
    if a.version != b.version:
        return a if a.version > b.version else b
    if a.gone or b.gone:
        return a if a.gone else b
    if a == b:
        return a
    # Two syncs recorded the same member at the same time: if their fields differ, which of them the
    # member holds is not known. Keep the entry, not the fingerprint.
    return MemberRecord(
        a.member, a.version, gone=False,
        crowdtwist_id=max(a.crowdtwist_id or "", b.crowdtwist_id or "") or None,
        fingerprint=a.fingerprint if a.fingerprint == b.fingerprint else None,
        updated_at=max(a.updated_at, b.updated_at),
    )


def credit_winner(a: CreditRecord, b: CreditRecord) -> CreditRecord:
    """Of two records of one ledger key, the one to keep: ``done`` first, then the later one."""
    if a.done != b.done:
        return a if a.done else b
    return a if a.updated_at >= b.updated_at else b


def merge_sorted(streams: Iterable[Iterator[R]], winner: Callable[[R, R], R]) -> Iterator[R]:
    """One record per key, in key order, from streams each sorted by key (a k-way merge)."""
    current: R | None = None
    for record in heapq.merge(*streams, key=itemgetter(0)):
        if current is None:
            current = record
        elif record[0] == current[0]:
            current = winner(current, record)
        else:
            yield current
            current = record
    if current is not None:
        yield current


def kept_in_base(record: MemberRecord | CreditRecord, now: float) -> bool:
    """Whether a compaction keeps a record: members not written for :data:`RECORD_SECONDS` go."""
    if isinstance(record, CreditRecord):
        return True
    return now - (record.version if record.gone else record.updated_at) < RECORD_SECONDS
