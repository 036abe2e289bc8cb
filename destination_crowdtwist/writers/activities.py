"""Activity Credit writer: award points exactly once, even across retries and replayed syncs.

CrowdTwist has no idempotency key for ``POST /v2/users/{id}/activities`` and queues awards
(docs/crowdtwist-api-notes.md §3), while Airbyte delivery is at-least-once. This writer makes each row's credit
happen once:

1. **A dedupe key per row** (``writers/credit.py``, which parses the row), stored in the credit's
   ``extra_data`` under :data:`DEDUPE_KEY_FIELD`:
   the row's ``event_id`` when it has one (recommended), else a SHA-256 of the row's identity
   (stream, user_id, activity_id, activity_date, num_points, primary-key values). Never random.
2. **Within a sync** a key is sent at most once; later rows with the same key are duplicates. What
   the sync must remember for that (and the activity history read per member) lives in a scratch
   SQLite database, not on the Python heap, so memory stays flat at any number of rows
   (``writers/credit_memory.py``).
3. **Uncertain outcomes** (read timeout, dropped connection, 5xx after sending) are never blindly
   retried: the member's activity history is read for the key — polling for up to
   ``award_queue_delay_seconds`` because awards are queued — and the credit is re-sent only if the
   key is still absent (``writers/credit_history.py``). An answer that cannot prove a key absent
   stops the sync: it is never read as "no credits".
4. **Replays**: ``every_row`` (the default) verifies every row, so a replay is safe wherever its
   states fall. For ``replay_window`` and ``none`` the destination puts a barrier at every state
   message (no credit starts past a state that is not echoed yet), so an interrupted attempt can
   only have credited rows up to its next state. A replayed attempt re-sends exactly the rows after
   the last echoed state; the rows before the *first* state of a sync are therefore the only ones
   that may already be credited, and ``replay_window`` verifies just those (one history read per
   distinct member, cached); ``none`` verifies none (the barrier bounds what a replay doubles).
5. **The ledger** (``ledger_path``): a key marked ``done`` is a duplicate with no request, a
   ``pending`` key is verified, and an absent key is sent without a lookup -- but only when the
   ledger already held keys of this program when the sync started. An empty ledger (first run, or
   a replayed attempt in a fresh container whose ledger file did not survive) proves nothing, so
   the verification policy applies as if there were no ledger. Nor does a ledger read from the
   sync state in the bucket (``ledger_proves_absence=False``): a ``pending`` mark made just before a
   killed attempt's request may not have reached the bucket, so an absent key there may have been
   sent; its ``done`` and ``pending`` keys are used as above (docs/sync-state.md).
6. **Members created in this sync**: a member whose create this sync's User Profile writer saw
   answered as done (``writers/created_members.py``, built by wiring when a sync writes both objects)
   did not exist before, so no earlier attempt can have credited it: its rows need no replay read
   (a ``pending`` ledger key is still verified, and a credit whose answer is lost still polls).
7. **The award-queue wait only where an earlier request may still be queued.** A replay read waits
   until ``award_queue_delay_seconds`` after the start, since an earlier attempt's last credits may
   not show yet. Where the ledger proves when the earlier request was over, it waits only until that
   time plus the delay: a trusted ledger's ``pending`` key whose sending session closed quietly
   (``CreditLedger.quiet_since``; this writer's session closes quietly when no credit request of its
   own is on the way, and sends nothing after). A trusted ledger's other keys need no read at all
   (``done``: duplicate; absent: never sent), and a member created in this sync neither (point 6).
   Without a trusted ledger nothing records the earlier attempts' requests, so the wait stays.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from destination_crowdtwist.api.errors import ConfigError, TransientError, UncertainOutcome
from destination_crowdtwist.api.protocol import CrowdTwistApi
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.writers.base import (
    Outcome,
    OutcomeKind,
    Prepared,
    Row,
    api_rejection,
    member_key,
    member_label,
    raw_label,
)
from destination_crowdtwist.writers.created_members import CreatedMembers
from destination_crowdtwist.writers.credit import (
    DEDUPE_KEY_FIELD,
    Credit,
    CreditParser,
    dedupe_key,
    id_text,
    int_or_none,
)
from destination_crowdtwist.writers.credit_history import HistoryCheck
from destination_crowdtwist.writers.credit_memory import CreditMemory
from destination_crowdtwist.writers.credit_policy import full_refresh_warning, unsafe_policy_warning
from destination_crowdtwist.writers.ledger import DONE, PENDING, CreditLedger, ledger_scope

# Credit, its dedupe key and DEDUPE_KEY_FIELD live in writers/credit.py, the policy warnings in
# writers/credit_policy.py; they stay importable from here.
__all__ = [
    "DEDUPE_KEY_FIELD",
    "ActivityCreditWriter",
    "Credit",
    "dedupe_key",
    "full_refresh_warning",
    "unsafe_policy_warning",
]

logger = logging.getLogger("airbyte")


class ActivityCreditWriter:
    """Writes Activity Credit rows (``Writer[Credit]``). See the module docstring."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        api: CrowdTwistApi,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        ledger_proves_absence: bool = True,
        created: CreatedMembers | None = None,
    ) -> None:
        """``clock``: epoch seconds; ``sleep``: the award-queue waits (by default the API's wait, which
        ends when the sync stops); ``ledger_proves_absence``: False when the ledger is a copy of the
        sync state in the bucket, where a key's absence proves nothing (point 5); ``created``: the
        members this sync's User Profile writer created (point 6), closed with this writer.
        """
        self.cfg = cfg
        self._created = created
        self._ledger_proves_absence = ledger_proves_absence
        self.api = api
        self._clock = clock
        self._parser = CreditParser(cfg)
        # Within this sync: the first row of each event (member, activity, key), and whether it was
        # accepted (a repeat of an accepted row is a duplicate; a repeat of a rejected one is tried);
        # and each member's activity history once read. Exact, and off the Python heap.
        self._memory = CreditMemory()
        self._history = HistoryCheck(
            api, self._memory, history_days=cfg.credit_history_days, delay=cfg.award_queue_delay_seconds,
            clock=clock, sleep=sleep or api.wait,
        )
        # Answers lost after a credit was sent, by what the activity history then showed (for the
        # closing log line: an operator sees that verification ran and what it decided).
        self._lost_answers = {"landed": 0, "resent": 0}
        # Rows whose replay read was spared because this sync created their member (point 6).
        self._new_member_rows = 0
        self._lost_lock = threading.Lock()
        self._ledger: CreditLedger | None = None
        # Whether "absent from the ledger" proves "never sent" (see the module docstring, point 5).
        self._ledger_trusted = False
        # This writer's session in the ledger (point 7), and its credit requests on the way: a close with
        # none on the way is quiet, and no request starts after the close.
        self._session = uuid.uuid4().hex
        self._flight_lock = threading.Lock()
        self._in_flight = 0
        self._closing = False

    # -- Writer protocol ---------------------------------------------------------------------

    def start(self) -> None:
        """Read the active activities once, and open the ledger."""
        self.start_preview()
        if self.cfg.ledger_path:
            # Scoped by base URL: a ledger first used against the sandbox must not turn production
            # credits into "duplicates".
            self._ledger = CreditLedger(
                self.cfg.ledger_path, scope=ledger_scope(self.cfg.api_base_url), clock=self._clock
            )
            known = self._ledger.size()
            self._ledger_trusted = known > 0 and self._ledger_proves_absence
            if known and not self._ledger_proves_absence:
                logger.info(
                    f"Activity Credit: the credit ledger from the sync state knows {known} dedupe keys of this "
                    "program; keys it does not hold are verified as "
                    f"credit_verification={self.cfg.credit_verification} says (an upload lost before a kill "
                    "could hide a credit sent)."
                )
            elif known:
                logger.info(f"Activity Credit: the credit ledger knows {known} dedupe keys of this program.")
            else:
                logger.info(
                    "Activity Credit: the credit ledger is empty for this program, so it cannot prove that a row "
                    f"was never sent; rows are verified as credit_verification={self.cfg.credit_verification} says."
                )
        self._history.started = self._clock()

    def start_preview(self) -> None:
        """Read the active activities once (rows are checked against them); a dry run opens no ledger."""
        activities = self.api.list_activities()
        self._parser.active = {str(a.get("id")): a for a in activities if isinstance(a, Mapping)}
        logger.info(f"Activity Credit: {len(self._parser.active)} active activities in this program.")
        default = self.cfg.default_activity_id
        if default is not None and id_text(default) not in self._parser.active:
            raise ConfigError(
                f"default_activity_id {default} is not an active activity of this program. Choose one of the ids "
                "GET /v2/activities lists (Control Center > Activities), or leave default_activity_id empty."
            )

    def checkpoint(self) -> None:
        """Nothing to do: the ledger commits each mark as it is made (a ``pending`` mark must precede its request)."""

    def finish(self) -> None:
        """Nothing to follow up: a credit is settled when its answer (or its verification) says so."""

    def close(self) -> None:
        """Close the ledger, drop this sync's scratch memory and say how lost answers were resolved."""
        with self._flight_lock:
            # From now on no credit request starts (_send refuses), so with none on the way the session
            # is over for CrowdTwist: its pending keys' requests were answered or given up on by now.
            self._closing = True
            quiet = self._in_flight == 0
        if self._ledger is not None:
            try:
                self._ledger.close_session(self._session, quiet=quiet)
            except sqlite3.Error as exc:
                # Unrecorded, the next sync waits for the award queue before reading these keys: a cost only.
                logger.warning(f"Activity Credit: the ledger could not record this sync's end ({exc}).")
            finally:
                self._ledger.close()
        self._memory.close()
        if self._created is not None:
            self._created.close()
        if self._new_member_rows:
            logger.info(
                f"Activity Credit: {self._new_member_rows} rows credited members created earlier in this sync, so "
                "they needed no activity history read (no earlier attempt can have credited a member that did not "
                "exist)."
            )
        # One line per stream, when the sync ends: a line per field would flood the log.
        for line in self._parser.ignored_lines():
            logger.info(f"Activity Credit: {line}.")
        landed, resent = self._lost_answers["landed"], self._lost_answers["resent"]
        if landed or resent:
            logger.info(
                f"Activity Credit: {landed + resent} credit answers were lost after sending (timeouts, dropped "
                f"connections, server errors); the activity history showed {landed} of them had landed (not sent "
                f"again) and {resent} had not (sent again)."
            )

    def prepare(self, row: Row) -> Prepared[Credit] | Outcome:
        """Parse one row (on the reader thread, in input order); no request is spent on a bad row."""
        try:
            credit = self._parser.parse(row)
        except Rejection as rejection:
            return Outcome.rejected(raw_label(row, log_pii=self.cfg.log_pii), rejection)
        earlier = self._memory.first_row(credit.event, row.seq)
        if earlier != row.seq:
            credit.duplicate_of = earlier
        label = member_label(credit.user_id, credit.id_type, log_pii=self.cfg.log_pii)
        return Prepared(row, member_key(credit.id_type, credit.user_id), label, credit)

    def settle_at_once(self, prepared: Prepared[Credit]) -> Outcome | None:
        """Never: whether a credit is a duplicate is decided with the ledger and the award queue on a worker."""
        return None

    def apply(self, prepared: Prepared[Credit]) -> Outcome:
        """Credit one row exactly once; returns its outcome."""
        return self._settle(prepared, self._credit)

    def preview(self, prepared: Prepared[Credit]) -> Outcome:
        """What ``apply`` would do (a dry run, ``writers/dry_run.py``): one read of the member, no credit."""
        return self._settle(prepared, self._would_credit)

    # -- within the sync --------------------------------------------------------------------------

    def _settle(self, prepared: Prepared[Credit], send: Callable[[Prepared[Credit]], Outcome]) -> Outcome:
        """A repeat of an event this sync credited is a duplicate; any other row goes to ``send``."""
        credit, member = prepared.payload, prepared.label
        # Same member, so the earlier row has settled already (the pipeline orders a member's rows).
        if credit.duplicate_of is not None and self._memory.accepted(credit.event):
            return Outcome(
                kind=OutcomeKind.DUPLICATE, member=member,
                message=f"same event as row {credit.duplicate_of} of this sync; credited once",
            )
        if credit.duplicate_of is None and self._memory.accepted(credit.event):
            # The first row of the event, tried again after waiting for its member (sync/deferral.py),
            # while a later row of the same event was credited meanwhile.
            return Outcome(
                kind=OutcomeKind.DUPLICATE, member=member,
                message="same event as a later row of this sync; credited once",
            )
        outcome = send(prepared)
        if outcome.accepted:
            self._memory.mark_accepted(credit.event)
        return outcome

    def _credit(self, prepared: Prepared[Credit]) -> Outcome:
        """Verify the row as the policy and the ledger say, then send it."""
        credit, member = prepared.payload, prepared.label
        key = credit.ledger_key
        verify = prepared.row.verify  # the sync's replay policy decided it (sync/replay_policy.py)
        status: str | None = None
        visible_from: float | None = None
        if self._ledger is not None:
            status = self._ledger.status(key)
            if status == DONE:
                earlier = self._ledger.outcome(key) or OutcomeKind.CREDITED
                return _duplicate(member, f"already sent before: {earlier} (local ledger)")
            if status == PENDING:
                verify = True  # a request was sent and its answer never recorded: it may have landed
                if self._ledger_trusted:
                    quiet = self._ledger.quiet_since(key)  # point 7: when that request was over for sure
                    visible_from = None if quiet is None else quiet + self.cfg.award_queue_delay_seconds
            elif self._ledger_trusted:
                # Absent from a ledger with this program's history: never sent by a run sharing it. The
                # ledger is the user's promise that every run sees this file, so no history read.
                verify = False
        if verify and status != PENDING and self._created_here(credit):
            verify = False  # point 6: the member did not exist before this sync, so nothing credited it
        if verify and self._history.has(credit, replay=True, visible_from=visible_from):
            self._mark_done(key, OutcomeKind.DUPLICATE)
            return _duplicate(member, "already credited (found in activity history)")
        return self._send(credit, member)

    def _created_here(self, credit: Credit) -> bool:
        """Whether this sync's User Profile writer created the credit's member (point 6); counted."""
        if self._created is None or not self._created.created(credit.id_type, credit.user_id):
            return False
        with self._lost_lock:
            self._new_member_rows += 1
        return True

    def _would_credit(self, prepared: Prepared[Credit]) -> Outcome:
        credit, member = prepared.payload, prepared.label
        response = self.api.get_user(credit.user_id, credit.id_type)
        if not response.ok:
            return Outcome.rejected(member, api_rejection(response))
        points = credit.num_points
        if points is None:
            points = int_or_none(self._parser.active.get(credit.activity_id, {}).get("num_points"))
        text = f"would credit activity {credit.activity_id}" + (f" ({points} points)" if points is not None else "")
        return Outcome(kind=OutcomeKind.WOULD_CREDIT, member=member, message=text)

    # -- sending ------------------------------------------------------------------------------

    def _send(self, credit: Credit, member: str) -> Outcome:
        """Send the credit; after an answer lost on the way, send it again only once its activity history
        proves it did not land, at most ``max_retries`` times.

        This loop re-sends, but it is not a second retry loop beside the client's (``CrowdTwistClient.request``
        with ``api/retry.decide``): the two repeat different failures, so none is retried twice. The
        client repeats what certainly had no effect (no connection, 408, 429) and never a credit that may
        have landed: ``decide`` answers ``Uncertain`` (CrowdTwist has no idempotency key), raised here as
        ``UncertainOutcome``. Only this writer can turn "may have landed" into "did not land", by reading
        the row's dedupe key back. Hence no backoff here: the pause before a re-send is the award-queue
        wait of that read (``HistoryCheck.has`` polls the history until ``award_queue_delay_seconds``
        have passed, before which an absent key proves nothing), and it ends when the sync stops.
        """
        with self._flight_lock:
            if self._closing:
                # A worker still running after the writer closed (shutdown's join timed out): sending now
                # would break the quiet close just recorded. The row stays unsettled; a replay sends it.
                raise TransientError("The sync is stopping, so this credit was not sent; the next attempt sends it.")
            self._in_flight += 1
        try:
            return self._send_once(credit, member)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    def _send_once(self, credit: Credit, member: str) -> Outcome:
        """:meth:`_send`, counted as on the way."""
        key = credit.ledger_key
        if self._ledger is not None:
            self._ledger.mark_pending(key, session=self._session)
        attempts = 0
        while True:
            attempts += 1
            try:
                response = self.api.credit_activity(credit.user_id, credit.id_type, credit.payload())
            except UncertainOutcome as exc:
                # The request may have been applied: look before sending it again.
                if self._history.has(credit, replay=False):
                    self._count_lost("landed")
                    self._mark_done(key, OutcomeKind.CREDITED)
                    return Outcome(OutcomeKind.CREDITED, member, "credited (confirmed in activity history)")
                if attempts > self.cfg.max_retries:
                    raise TransientError(
                        "Activity credits keep failing with uncertain outcomes (timeouts, dropped connections or "
                        "server errors); the sync stops without echoing the current state, and the next attempt "
                        "verifies this row in activity history before crediting it.",
                        status=exc.status,
                        request_line=exc.request_line,
                    ) from exc
                self._count_lost("resent")
                continue
            return self._outcome(credit, member, response)

    def _count_lost(self, resolution: str) -> None:
        with self._lost_lock:
            self._lost_answers[resolution] += 1

    def _outcome(self, credit: Credit, member: str, response: ApiResponse) -> Outcome:
        key = credit.ledger_key
        if response.ok:
            data = response.data if isinstance(response.data, Mapping) else {}
            self._history.remember(credit)
            if data.get("awarded") is False:
                # Accepted, but CrowdTwist's rules (e.g. a frequency cap) blocked the points.
                self._mark_done(key, OutcomeKind.NOT_AWARDED)
                return Outcome(
                    kind=OutcomeKind.NOT_AWARDED, member=member, status=response.status,
                    message="accepted but not awarded (frequency cap or another program rule)",
                )
            self._mark_done(key, OutcomeKind.CREDITED)
            return Outcome(kind=OutcomeKind.CREDITED, member=member, status=response.status)
        if response.resolution.reason is Reason.DUPLICATE_EVENT:
            # CrowdTwist's "Event already processed": the earlier request was accepted.
            self._mark_done(key, OutcomeKind.DUPLICATE)
            return _duplicate(member, "Event already processed", status=response.status)
        if self._ledger is not None:
            self._ledger.forget(key)
        return Outcome.rejected(member, api_rejection(response, advice={Reason.NOT_FOUND: (
            f"No member with this {credit.id_type} exists. Check that the identifier field holds the configured "
            "identifier type, and sync the member's profile before crediting activities."
        )}))

    def _mark_done(self, key: str, outcome: str) -> None:
        if self._ledger is not None:
            self._ledger.mark_done(key, outcome)


def _duplicate(member: str, message: str, *, status: int | None = None) -> Outcome:
    return Outcome(kind=OutcomeKind.DUPLICATE, member=member, message=message, status=status)
