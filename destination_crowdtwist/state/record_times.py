"""Member records written after this sync uploaded a clear of the same member, dated after that clear.

The member index dates an entry by the second of its commit (``updated_at``, an integer: its layout
and the age limit read it so), while ``state/local.py`` dates a clear or a tombstone by the time of
the upload that exports it (``now``, to the fraction of a second), so that it wins over the older
fingerprint it replaces. A re-sync's changing row clears the member's fingerprint, waits for that
upload, sends its request and records the new fingerprint, often within the same second: the new
record then carried an older version than the clear (``1000.0`` after ``1000.7``), the clear won the
merge (``state/merge.py``), and the next sync sent the member again although nothing had changed.

:class:`AfterDrops` dates such a record just after the clear (``math.nextafter``). That is never
later than the truth: the clear was exported by an upload that read the member's row after taking
its time, and the row held no fingerprint then, so any fingerprint it holds now was committed after
that time. So the record never wins over a write that really came later (another sync's), and a
clear still wins over every fingerprint older than it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from destination_crowdtwist.state.codec import MemberRecord


class AfterDrops:
    """The versions of the clears and tombstones this sync exported, by identifier type and member.

    Not thread-safe: the store uses it under its upload lock.
    """

    def __init__(self) -> None:
        self._dropped: dict[tuple[str, bytes], float] = {}

    def dated(self, id_type: str, records: Iterable[MemberRecord]) -> Iterator[MemberRecord]:
        """``records`` (one upload's export), each record after an exported drop dated after it."""
        for record in records:
            key = (id_type, record.member)
            if record.gone or record.fingerprint is None:
                self._dropped[key] = max(record.version, self._dropped.get(key, record.version))
                yield record
                continue
            dropped = self._dropped.get(key)
            if dropped is not None and record.version <= dropped:
                yield record._replace(version=math.nextafter(dropped, math.inf))
            else:
                yield record
