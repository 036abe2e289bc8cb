"""Member removal: the rows of ``soft_delete`` streams of User Profile, with their guardrail.

What a delete row does is the config's ``delete_behaviour`` (docs/crowdtwist-api-notes.md §2.3, §2.4):

* ``deactivate`` (default, reversible): ``PUT /v2/users/{id}`` with ``is_active: 0``;
* ``deactivate_and_remove_points``: the same with ``remove_points: 1``, which wipes the balance;
* ``erase``: ``DELETE /v2/users/{id}``, which CrowdTwist queues (200 ``{"user_id", "status": "Queued"}``).

Every behaviour is idempotent by nature: a member that does not exist (404) is settled as
``already_gone``, accepted and counted apart, never rejected, so a replayed delete sends nothing
harmful (a second deactivation changes nothing; a second erase meets a queued member, answered
"Queued" again, or an erased one, answered 404). A 400 "unable to delete" is a rejected row
(reason ``cannot_erase``) whose message says what to do first.

**Guardrail.** A model bug that marks every member deleted must not empty a program: the rows are
counted in input order as they are prepared (on the reader thread, before anything is queued), and
the row beyond ``max_deletes_per_sync`` raises ``StopBeforeRow`` (a ``ConfigError``) before it
enters the pipeline, so its request is never sent. The pipeline lets the rows before it finish, and
their states are echoed; the error names the threshold and how to raise it. A dry run
(``writers/dry_run.py``) does not stop: it reports ``would_deactivate`` / ``would_erase``
(:meth:`MemberRemoval.preview`) and says where a real sync would have stopped.

**Erase status.** After the last state, :meth:`MemberRemoval.finish` follows CrowdTwist's deletion
status (``GET /v2/users/delete/{id}``, by CrowdTwist id, which the DELETE answer gives) of the
erasures this sync queued, for at most ``erase_status_wait_seconds``, and logs how many are done,
still queued and failed. It only reports: the rows were settled when CrowdTwist queued them.

The member index (``writers/member_index.py``) forgets an erased member and clears the fingerprint
of a deactivated one *before* the request is sent (write-ahead, durable at once), so that a crash
can never leave an entry claiming a member or values that are gone; a later upsert then sends the
right request (a create for an erased member).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.api.errors import CrowdTwistError
from destination_crowdtwist.api.protocol import CrowdTwistApi
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.mapping import MappingOptions, apply_field_mapping, normalise_user_id
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.writers.base import (
    Outcome,
    OutcomeKind,
    Prepared,
    Row,
    StopBeforeRow,
    api_rejection,
    member_key,
    member_label,
    raw_label,
)
from destination_crowdtwist.writers.member_index import MemberIndex

logger = logging.getLogger("airbyte")

DELETE = "soft_delete"
ERASE = "erase"

#: Deletion statuses of Oracle's User Deletion Status page (docs/crowdtwist-api-notes.md §2.4).
STATUS_DONE = "Deletion_completed"
STATUS_PENDING = frozenset({"Deletion_initiated", "Deletion_in_progress", "Queued"})
#: Seconds before the second round of status reads; the pause doubles after each round (1, 2, 4, 8 s...),
#: so a member still queued costs a handful of reads, not one every few seconds.
STATUS_FIRST_PAUSE_SECONDS = 1.0
#: Erasures whose status is followed (the first ones queued); memory stays bounded whatever
#: max_deletes_per_sync allows, and the rest are reported as still queued.
FOLLOW_AT_MOST = 1000


@dataclass(frozen=True)
class DeleteRow:
    """A delete row parsed for its stream: only the member's identifier matters."""

    user_id: str
    id_type: str


@dataclass
class EraseTally:
    """What became of the erasures queued by this sync (``finish`` fills in done and failed)."""

    queued: int = 0  # DELETE answered "Queued"
    done: int = 0  # the status reached Deletion_completed while it was followed
    failed: int = 0  # the status said the erasure is no longer queued, or an unknown status
    unfollowed: int = 0  # the answer named no CrowdTwist id, so the status cannot be read


class MemberRemoval:
    """Prepares and applies the delete rows of User Profile. See the module docstring."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        api: CrowdTwistApi,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``clock`` and ``sleep`` (seconds, by default the API's stoppable wait) bound and pace the
        following of erase statuses.
        """
        self.cfg = cfg
        self.api = api
        self._clock = clock
        self._sleep = sleep or api.wait
        self.behaviour = cfg.delete_behaviour
        self.prepared = 0  # delete rows that passed prepare(), in input order (the guardrail's count)
        self.over_limit_at: int | None = None  # the input row of the first delete row beyond the guardrail
        self.tally = EraseTally()
        self._queued_ids: list[str] = []  # CrowdTwist ids of erasures queued (at most max_deletes_per_sync)
        self._lock = threading.Lock()

    # -- prepare (reader thread, input order) --------------------------------------------------

    def prepare(self, row: Row, options: MappingOptions) -> Prepared[DeleteRow] | Outcome:
        """The member's identifier, no request; raises ``StopBeforeRow`` for the row beyond the guardrail."""
        stream = row.stream
        try:
            working = apply_field_mapping(row.data, options)
            user_id = normalise_user_id(working.get(stream.id_field), stream.id_type, stream.id_field)
        except Rejection as rejection:
            return Outcome.rejected(raw_label(row, log_pii=self.cfg.log_pii), rejection)
        self.prepared += 1
        label = member_label(user_id, stream.id_type, log_pii=self.cfg.log_pii)
        prepared = Prepared(row, member_key(stream.id_type, user_id), label, DeleteRow(user_id, stream.id_type))
        limit = self.cfg.max_deletes_per_sync
        if self.prepared > limit:
            if self.over_limit_at is None:
                self.over_limit_at = row.seq
            raise StopBeforeRow(
                f"Stopping before delete row {self.prepared} (input row {row.seq}, stream {stream.label}): this "
                f"sync would remove more than max_deletes_per_sync = {limit} members. Nothing beyond the limit "
                "was sent, and every row before this one was written and checkpointed. If the source really "
                f"marks this many members deleted, raise max_deletes_per_sync (try a dry run first); otherwise "
                "fix the model that marks them.",
                prepared=prepared,
                summary=f"{self.prepared} delete rows exceed max_deletes_per_sync = {limit}; a real sync would stop "
                        f"before input row {self.over_limit_at}",
            )
        return prepared

    # -- apply (worker threads) -----------------------------------------------------------------

    def apply(self, row: DeleteRow, label: str, index: MemberIndex | None) -> Outcome:
        """Remove one member as ``delete_behaviour`` says; returns the row's outcome."""
        if self.behaviour == ERASE:
            if index is not None:
                # Write-ahead: once the DELETE may have landed, no entry may claim the member exists.
                index.forget(row.id_type, row.user_id)
            response = self.api.delete_user(row.user_id, row.id_type)
            if response.ok:
                self._queued(response)
                return Outcome(kind=OutcomeKind.ERASE_QUEUED, member=label, status=response.status)
            return self._refused(response, label)
        body: dict[str, Any] = {"is_active": 0}
        if self.behaviour == "deactivate_and_remove_points":
            body["remove_points"] = 1
        if index is not None:
            # The member's values change (is_active): a later identical upsert must not be skipped.
            index.clear_fingerprint(row.id_type, row.user_id)
        response = self.api.update_user(row.user_id, row.id_type, body)
        if response.ok:
            return Outcome(kind=OutcomeKind.DEACTIVATED, member=label, status=response.status)
        outcome = self._refused(response, label)
        if outcome.kind is OutcomeKind.ALREADY_GONE and index is not None:
            index.forget(row.id_type, row.user_id)
        return outcome

    def _refused(self, response: ApiResponse, label: str) -> Outcome:
        rejection = api_rejection(response)
        if rejection.reason is Reason.NOT_FOUND:
            # Nothing left to remove (deleted before, or by someone else): done, not a bad row.
            return Outcome(kind=OutcomeKind.ALREADY_GONE, member=label, status=response.status,
                           message="no such member: nothing to remove")
        return Outcome.rejected(label, rejection)

    def _queued(self, response: ApiResponse) -> None:
        data = response.data
        value = data.get("user_id") if isinstance(data, Mapping) else None
        with self._lock:
            self.tally.queued += 1
            known = isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip().isdigit()
            if known and len(self._queued_ids) < FOLLOW_AT_MOST:
                self._queued_ids.append(str(value).strip())
            else:
                self.tally.unfollowed += 1

    def preview(self, row: DeleteRow, label: str) -> Outcome:
        """What ``apply`` would do (a dry run): one read of the member, no write."""
        response = self.api.get_user(row.user_id, row.id_type)
        if not response.ok:
            return self._refused(response, label)
        if self.behaviour != ERASE:
            return Outcome(kind=OutcomeKind.WOULD_DEACTIVATE, member=label)
        profile = response.data if isinstance(response.data, Mapping) else {}
        points = profile.get("redeemable_points")
        if profile.get("is_active") in (False, 0) and isinstance(points, int | float) and points > 0:
            return Outcome.rejected(label, Rejection(
                Reason.CANNOT_ERASE,
                "The member is inactive but still has redeemable points, which CrowdTwist refuses to erase. Remove "
                "the points first (delete_behaviour deactivate_and_remove_points, or Control Center).",
            ))
        return Outcome(kind=OutcomeKind.WOULD_ERASE, member=label)

    # -- after the last state -------------------------------------------------------------------

    def finish(self) -> None:
        """Follow the queued erasures' status (bounded) and log what removal did in this sync."""
        if self.tally.queued == 0:
            return
        wait = float(self.cfg.erase_status_wait_seconds)
        if wait > 0 and self._queued_ids:
            self._follow(wait)
        tally = self.tally
        pending = tally.queued - tally.done - tally.failed
        followed = f"followed for up to {wait:g} s" if wait > 0 else "not followed (erase_status_wait_seconds = 0)"
        logger.info(
            f"User Profile: erase: {tally.queued} members queued for erasure; status {followed}: {tally.done} done, "
            f"{pending} still queued, {tally.failed} failed."
        )

    def _follow(self, wait: float) -> None:
        deadline = self._clock() + wait
        pending = list(self._queued_ids)
        pause = STATUS_FIRST_PAUSE_SECONDS
        while pending:
            still: list[str] = []
            for crowdtwist_id in pending:
                try:
                    response = self.api.deletion_status(crowdtwist_id)
                except CrowdTwistError as exc:
                    # Reporting only: the rows are settled, so a failing status read never fails the sync.
                    logger.warning(f"User Profile: erase status could not be read ({exc.message}); stopped following.")
                    return
                verdict = _status_verdict(response)
                if verdict == "done":
                    self.tally.done += 1
                elif verdict == "failed":
                    self.tally.failed += 1
                else:
                    still.append(crowdtwist_id)
            pending = still
            left = deadline - self._clock()
            if not pending or left <= 0:
                return
            self._sleep(min(pause, left))
            pause *= 2


def _status_verdict(response: ApiResponse) -> str:
    """``done``, ``pending`` or ``failed`` for one deletion-status answer.

    "Not found" (the 404 "Member does not exist or not queued for deletion") for an erasure this sync
    queued, or a status Oracle does not list, is taken as failed (assumed: the status page documents
    only the three statuses and that 404; docs/crowdtwist-api-notes.md §2.4).
    """
    if not response.ok:
        return "failed" if response.resolution.reason is Reason.NOT_FOUND else "pending"
    data = response.data
    status = data.get("status") if isinstance(data, Mapping) else None
    if status == STATUS_DONE:
        return "done"
    if status in STATUS_PENDING:
        return "pending"
    return "failed"
