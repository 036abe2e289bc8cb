"""What the member index tells the User Profile writer about a row, and what the writer tells it back.

With a member index (``member_index_path``, see ``writers/member_index.py``) the writer knows, from
earlier syncs, which members exist and what it last wrote to them: a known member's upsert starts with
the update (``writers/upsert.py``), and with ``skip_unchanged`` a row identical to the last accepted
write is settled as ``unchanged`` without a request. An entry older than ``member_index_max_age_days``
(spread per member) is not trusted to skip: the row is sent again, so a member deleted in CrowdTwist
outside the connector is re-created (upsert: the update answers "not found", the create follows) and
a changed one corrected.

:class:`KnownMembers` wraps the index with those decisions and counts them for the closing log line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from destination_crowdtwist.writers.base import Outcome, OutcomeKind
from destination_crowdtwist.writers.member_index import MemberEntry, MemberIndex, fingerprint

logger = logging.getLogger("airbyte")

#: What the index decided, for the summary line: known / unknown / skipped / expired (sent again: the
#: entry was too old to trust) / corrected (the member did not exist).
COUNTS = ("known", "unknown", "skipped", "expired", "corrected")


def _unchanged(label: str) -> Outcome:
    return Outcome(
        kind=OutcomeKind.UNCHANGED, member=label,
        message="same fields as the last write accepted for this member (member index)",
    )


class KnownMembers:
    """The member index as the User Profile writer uses it. See the module docstring."""

    def __init__(self, index: MemberIndex, *, skip_unchanged: bool) -> None:
        self.index = index
        self._skip_unchanged = skip_unchanged
        self.counts: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: str, api_base_url: str, *, clock: Callable[[], float], max_age_days: float, skip_unchanged: bool,
        after_drop: Callable[[], None] | None = None,
    ) -> KnownMembers:
        """Open the index at ``path``, scoped by base URL (the program), like the credit ledger.

        ``after_drop``: see :class:`MemberIndex` (the sync state's flush, when the state is in a bucket).
        """
        index = MemberIndex(path, api_base_url, clock=clock, max_age=max_age_days * 86400.0, after_drop=after_drop)
        return cls(index, skip_unchanged=skip_unchanged)

    def lookup(self, id_type: str, user_id: str) -> MemberEntry | None:
        """The member's entry, looked up when the row is applied (on the worker, not in prepare(): the
        member's previous row, applied just before this one, may have changed it).
        """
        return self.index.lookup(id_type, user_id)

    def settle(self, id_type: str, user_id: str, payload: Mapping[str, Any], label: str,
               entry: MemberEntry | None) -> Outcome | None:
        """The row's outcome when the index shows it needs no request; else None (then :meth:`before_write`)."""
        self._count("known" if entry is not None else "unknown")
        if entry is None:
            return None
        sent = fingerprint(payload)
        if entry.expired:
            # Trusted long enough: the member may have been deleted or changed in CrowdTwist since.
            # The row is sent (an upsert's update answered "not found" falls back to a create), and the
            # accepted write dates the entry afresh.
            self._count("expired")
        elif self._skips(entry, payload, sent):
            self._count("skipped")
            return _unchanged(label)
        return None

    def before_write(self, id_type: str, user_id: str, payload: Mapping[str, Any], entry: MemberEntry | None) -> None:
        """Right before a row that :meth:`settle` did not settle is sent: the write-ahead clear.

        A crash after CrowdTwist applies this write must not leave the old fingerprint on disk
        (writers/member_index.py, rule 2), so a fingerprint other than the row's is forgotten first.
        """
        if entry is not None and entry.fingerprint is not None and entry.fingerprint != fingerprint(payload):
            self.index.clear_fingerprint(id_type, user_id)

    def skip(self, id_type: str, user_id: str, payload: Mapping[str, Any], label: str) -> Outcome | None:
        """:meth:`settle` for a row whose member has no other row in the pipeline (looked up on the
        reader thread): its outcome when the index shows it needs no request, else None with nothing
        counted or changed (the worker's :meth:`lookup` and :meth:`settle` then decide, write-ahead
        clear included).
        """
        if not self._skip_unchanged:
            return None
        entry = self.index.lookup(id_type, user_id)
        if entry is None or entry.expired:
            return None
        # The fingerprint only when the row has fields: an empty payload skips on any known entry.
        if not self._skips(entry, payload, fingerprint(payload) if payload else b""):
            return None
        with self._lock:
            self.counts["known"] += 1
            self.counts["skipped"] += 1
        return _unchanged(label)

    def _skips(self, entry: MemberEntry, payload: Mapping[str, Any], sent: bytes) -> bool:
        """Whether a trusted (not expired) entry makes the row unchanged: the one rule both paths use."""
        return self._skip_unchanged and (not payload or entry.fingerprint == sent)

    def accepted(self, id_type: str, user_id: str, payload: Mapping[str, Any], crowdtwist_id: str | None) -> None:
        """CrowdTwist accepted a create or update: the member exists and holds ``payload``."""
        self.index.record(id_type, user_id, fingerprint=fingerprint(payload), crowdtwist_id=crowdtwist_id)

    def seen(self, id_type: str, user_id: str, *, same_as: bytes | None = None) -> None:
        """The member was seen to exist (nothing written): its entry is dated afresh. What it holds is
        known only when it was compared with the row the entry records (``same_as``, that fingerprint).
        """
        self.index.record(id_type, user_id, fingerprint=same_as)

    def not_found(self, id_type: str, user_id: str) -> None:
        """A member the index knew answered "not found": drop the stale entry (durable at once)."""
        self.index.forget(id_type, user_id)
        self._count("corrected")

    def commit(self) -> None:
        """Make the entries of the rows settled so far durable."""
        self.index.commit()

    def close(self) -> None:
        """Close the index (committing what is staged) and log what it saved."""
        self.index.close()
        counts = self.counts
        logger.info(
            f"User Profile: member index: {counts['known']} rows of known members, {counts['unknown']} of unknown "
            f"ones, {counts['skipped']} unchanged rows skipped, {counts['expired']} sent again (entry older than "
            f"member_index_max_age_days), {counts['corrected']} entries corrected (the member did not exist)."
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1
