"""Activity Credit writer: award points exactly once, even across retries and replayed syncs.

CrowdTwist has no idempotency key for ``POST /v2/users/{id}/activities`` and queues awards
(docs/crowdtwist-api-notes.md §3), while Airbyte delivery is at-least-once. This writer makes each row's credit
happen once:

1. **A dedupe key per row**, stored in the credit's ``extra_data`` under :data:`DEDUPE_KEY_FIELD`:
   the row's ``event_id`` when it has one (recommended), else a SHA-256 of the row's identity
   (stream, user_id, activity_id, activity_date, num_points, primary-key values). Never random.
2. **Within a sync** a key is sent at most once; later rows with the same key are duplicates. What
   the sync must remember for that (and the activity history read per member) lives in a scratch
   SQLite database, not on the Python heap, so memory stays flat at any number of rows
   (``writers/credit_memory.py``).
3. **Uncertain outcomes** (read timeout, dropped connection, 5xx after sending) are never blindly
   retried: the member's activity history is read for the key — polling for up to
   ``award_queue_delay_seconds`` because awards are queued — and the credit is re-sent only if the
   key is still absent. The history is read page by page (``writers/history.py``), and an answer
   that cannot prove a key absent stops the sync: it is never read as "no credits".
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
   the verification policy applies as if there were no ledger.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.api.client import ApiResponse, CrowdTwistClient
from destination_crowdtwist.api.errors import Action, ConfigError, CrowdTwistError, TransientError, UncertainOutcome
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.coercion import to_epoch_seconds
from destination_crowdtwist.records.mapping import (
    MappingOptions,
    apply_field_mapping,
    normalise_user_id,
    rules_for_stream,
)
from destination_crowdtwist.records.masking import mask_key_path
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.records.rejection import value as quoted_value
from destination_crowdtwist.writers.base import (
    Outcome,
    OutcomeKind,
    Prepared,
    Row,
    StreamContext,
    api_rejection,
    member_key,
    member_label,
    raw_label,
)
from destination_crowdtwist.writers.credit_memory import CreditMemory
from destination_crowdtwist.writers.history import MAX_PAGES, PAGE_SIZE, PageWalk, UnprovenHistory
from destination_crowdtwist.writers.ledger import DONE, PENDING, CreditLedger, event_key, ledger_scope

logger = logging.getLogger("airbyte")

#: The key under which every credit's dedupe key is stored in CrowdTwist's ``extra_data``.
DEDUPE_KEY_FIELD = "airbyte_dedupe_key"
KNOWN_FIELDS = frozenset({"user_id", "activity_id", "num_points", "activity_date", "extra_data"})
#: Ignored field names listed per stream in the closing log line (the rest are "and more").
MAX_IGNORED_FIELDS_LISTED = 50


@dataclass
class Credit:
    """A row parsed into a credit request."""

    user_id: str
    id_type: str
    activity_id: str
    num_points: int | None
    activity_date: int | None
    extra_data: dict[str, Any]
    dedupe_key: str
    duplicate_of: int | None = None  # seq of an earlier row of this sync with the same event

    @property
    def event(self) -> tuple[str, str, str, str]:
        """What makes two rows the same credit: the member, the activity and the dedupe key.

        An ``event_id`` is unique only within one member's activity (two source tables may both
        have an event 1), so the dedupe key alone never decides that a row is a repeat.
        """
        return (self.id_type, self.user_id, self.activity_id, self.dedupe_key)

    @property
    def ledger_key(self) -> str:
        """The event as one ledger key (member, activity and dedupe key)."""
        return event_key(self.id_type, self.user_id, self.activity_id, self.dedupe_key)

    @property
    def history_key(self) -> tuple[str, str]:
        """How the credit shows in its member's activity history: (activity, dedupe key)."""
        return (self.activity_id, self.dedupe_key)

    def payload(self) -> dict[str, Any]:
        """The JSON body of the credit request."""
        body: dict[str, Any] = {"activity_id": self.activity_id}
        if self.num_points is not None:
            body["num_points"] = self.num_points
        if self.activity_date is not None:
            body["activity_date"] = self.activity_date
        body["extra_data"] = {**self.extra_data, DEDUPE_KEY_FIELD: self.dedupe_key}
        return body


class ActivityCreditWriter:
    """Writes Activity Credit rows. See the module docstring."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        client: CrowdTwistClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self._clock = clock
        self._sleep = sleep
        self._active: dict[str, Mapping[str, Any]] = {}
        # Within this sync: the first row of each event (member, activity, key), and whether it was
        # accepted (a repeat of an accepted row is a duplicate; a repeat of a rejected one is tried);
        # and each member's activity history once read. Exact, and off the Python heap.
        self._memory = CreditMemory()
        # Fields of the rows that are not credit fields, by stream (a dict keeps their first-seen order).
        # Logged once, one line per stream, when the sync ends: a line per field would flood the log.
        self._ignored_fields: dict[str, dict[str, None]] = {}
        # Answers lost after a credit was sent, by what the activity history then showed (for the
        # closing log line: an operator sees that verification ran and what it decided).
        self._lost_answers = {"landed": 0, "resent": 0}
        self._lost_lock = threading.Lock()
        self._ledger: CreditLedger | None = None
        # Whether "absent from the ledger" proves "never sent" (see the module docstring, point 5).
        self._ledger_trusted = False
        self._started = clock()
        self._mapping_options = cfg.mapping_options()
        # Each stream's field_mapping rules (its own and those for every stream), and their sources.
        self._stream_mapping: dict[tuple[str | None, str], tuple[MappingOptions, frozenset[str]]] = {}

    # -- Writer protocol ---------------------------------------------------------------------

    def start(self) -> None:
        """Read the active activities once, and open the ledger."""
        activities = self.client.list_activities()
        self._active = {str(a.get("id")): a for a in activities if isinstance(a, Mapping)}
        logger.info(f"Activity Credit: {len(self._active)} active activities in this program.")
        default = self.cfg.default_activity_id
        if default is not None and _id_text(default) not in self._active:
            raise ConfigError(
                f"default_activity_id {default} is not an active activity of this program. Choose one of the ids "
                "GET /v2/activities lists (Control Center > Activities), or leave default_activity_id empty."
            )
        if self.cfg.ledger_path:
            # Scoped by base URL: a ledger first used against the sandbox must not turn production
            # credits into "duplicates".
            self._ledger = CreditLedger(self.cfg.ledger_path, scope=ledger_scope(self.cfg.api_base_url))
            known = self._ledger.size()
            self._ledger_trusted = known > 0
            if known:
                logger.info(f"Activity Credit: the credit ledger knows {known} dedupe keys of this program.")
            else:
                logger.info(
                    "Activity Credit: the credit ledger is empty for this program, so it cannot prove that a row "
                    f"was never sent; rows are verified as credit_verification={self.cfg.credit_verification} says."
                )
        self._started = self._clock()

    def checkpoint(self) -> None:
        """Nothing to do: the ledger commits each mark as it is made (a ``pending`` mark must precede its request)."""

    def finish(self) -> None:
        """Nothing to follow up: a credit is settled when its answer (or its verification) says so."""

    def close(self) -> None:
        """Close the ledger, drop this sync's scratch memory and say how lost answers were resolved."""
        if self._ledger is not None:
            self._ledger.close()
        self._memory.close()
        self._log_ignored_fields()
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
            credit = self._parse(row)
        except Rejection as rejection:
            return Outcome.rejected(raw_label(row, log_pii=self.cfg.log_pii), rejection)
        earlier = self._memory.first_row(credit.event, row.seq)
        if earlier != row.seq:
            credit.duplicate_of = earlier
        label = member_label(credit.user_id, credit.id_type, log_pii=self.cfg.log_pii)
        return Prepared(row, member_key(credit.id_type, credit.user_id), label, credit)

    def apply(self, prepared: Prepared[Credit]) -> Outcome:
        """Credit one row exactly once; returns its outcome."""
        outcome = self._apply(prepared.payload, prepared.label, verify=prepared.row.verify)
        if outcome.accepted:
            self._memory.mark_accepted(prepared.payload.event)
        return outcome

    def _apply(self, credit: Credit, member: str, *, verify: bool) -> Outcome:
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
        if self.cfg.dry_run:
            return self._dry_run(credit, member)
        key = credit.ledger_key
        verify = self.cfg.credit_verification == "every_row" or (
            self.cfg.credit_verification == "replay_window" and verify
        )
        if self._ledger is not None:
            status = self._ledger.status(key)
            if status == DONE:
                earlier = self._ledger.outcome(key) or OutcomeKind.CREDITED
                return _duplicate(member, f"already sent before: {earlier} (local ledger)")
            if status == PENDING:
                verify = True  # a request was sent and its answer never recorded: it may have landed
            elif self._ledger_trusted:
                # Absent from a ledger with this program's history: never sent by a run sharing it. The
                # ledger is the user's promise that every run sees this file, so no history read.
                verify = False
        if verify and self._history_has(credit, replay=True):
            self._mark_done(key, OutcomeKind.DUPLICATE)
            return _duplicate(member, "already credited (found in activity history)")
        return self._send(credit, member)

    # -- sending ------------------------------------------------------------------------------

    def _send(self, credit: Credit, member: str) -> Outcome:
        key = credit.ledger_key
        if self._ledger is not None:
            self._ledger.mark_pending(key)
        attempts = 0
        while True:
            attempts += 1
            try:
                response = self.client.credit_activity(credit.user_id, credit.id_type, credit.payload())
            except UncertainOutcome as exc:
                # The request may have been applied: look before sending it again.
                if self._history_has(credit, replay=False):
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
            self._remember(credit)
            if data.get("awarded") is False:
                # Accepted, but CrowdTwist's rules (e.g. a frequency cap) blocked the points.
                self._mark_done(key, OutcomeKind.NOT_AWARDED)
                return Outcome(
                    kind=OutcomeKind.NOT_AWARDED, member=member, status=response.status,
                    message="accepted but not awarded (frequency cap or another program rule)",
                )
            self._mark_done(key, OutcomeKind.CREDITED)
            return Outcome(kind=OutcomeKind.CREDITED, member=member, status=response.status)
        rejection = api_rejection(response)
        if rejection.reason is Reason.DUPLICATE_EVENT:
            # CrowdTwist's "Event already processed": the earlier request was accepted.
            self._mark_done(key, OutcomeKind.DUPLICATE)
            return _duplicate(member, "Event already processed", status=response.status)
        if self._ledger is not None:
            self._ledger.forget(key)
        if rejection.reason is Reason.NOT_FOUND:
            rejection = Rejection(
                Reason.NOT_FOUND,
                f"No member with this {credit.id_type} exists. Check that the identifier field holds the configured "
                "identifier type, and sync the member's profile before crediting activities.",
                status=response.status,
            )
        return Outcome.rejected(member, rejection)

    # -- verification -------------------------------------------------------------------------

    def _history_has(self, credit: Credit, *, replay: bool) -> bool:
        """Whether the member's activity history holds this credit's dedupe key.

        Awards are queued, so a credit accepted a moment ago may not be visible yet; an absent key is
        trusted only once ``award_queue_delay_seconds`` have passed since the request that may have
        landed.

        * ``replay=True`` (rows a previous attempt may have sent): that attempt ended before this sync
          started, so one read per member taken ``delay`` after the start is conclusive; reads are
          cached per member (our own credits are added to the cache).
        * ``replay=False`` (an uncertain outcome just now): poll with growing pauses until the key
          shows up or the delay has passed.
        """
        delay = self.cfg.award_queue_delay_seconds
        if replay:
            wait = self._started + delay - self._clock()
            if wait > 0:
                self._sleep(wait)
            return self._history_contains(credit, refresh=False)
        deadline = self._clock() + delay
        pause = min(0.25, max(delay / 8, 0.01))
        while True:
            if self._history_contains(credit, refresh=True):
                return True
            now = self._clock()
            if now >= deadline:
                return False
            self._sleep(min(pause, deadline - now))
            pause = min(pause * 2, 2.0)

    def _history_contains(self, credit: Credit, *, refresh: bool) -> bool:
        """Whether the member's history holds the credit's key: read once per sync, unless ``refresh``."""
        member = (credit.id_type, credit.user_id)
        tokens = (_token(*credit.history_key), _token(ANY_ACTIVITY, credit.dedupe_key))
        if not refresh:
            known = self._memory.history_has(member, tokens[0])
            if known is not None:
                return known or bool(self._memory.history_has(member, tokens[1]))
        keys = {_token(*pair) for pair in self._read_history(credit)}
        self._memory.set_history(member, keys)
        return any(token in keys for token in tokens)

    def _read_history(self, credit: Credit) -> set[tuple[str, str]]:
        """The dedupe keys in the member's activity history, every page of it (bounded).

        An answer that cannot prove a key absent stops the sync (:meth:`_unproven`); it is never
        taken for an empty history, which would send the credit again. Stopping rather than holding
        the row as rejected keeps both promises: nothing doubled (the row is not sent) and nothing
        lost (no state past it is echoed, so the platform's next attempt verifies it again), and
        such an answer is seldom about one row (a changed envelope, a proxy), so rejecting rows one
        by one would only hide it.
        """
        now = int(self._clock())
        start, end = now - self.cfg.credit_history_days * 86_400, now + 3600
        keys: set[tuple[str, str]] = set()
        walk = PageWalk(PAGE_SIZE)
        for _ in range(MAX_PAGES):
            # Newest first: a credit landing while the pages are read pushes older ones down a page,
            # so one may be read twice, never skipped (and this member's own credits wait for the read).
            response = self.client.activity_history(
                credit.user_id, credit.id_type, start, end, page=walk.page, page_size=PAGE_SIZE
            )
            if not response.ok:
                if self._member_absent(credit, response):
                    return set()  # no member, no credit: the credit's own 404 rejects the row
                raise self._unreadable(response)
            try:
                parsed = walk.take(response.data)
            except UnprovenHistory as exc:
                raise self._unproven(str(exc), response) from None
            keys.update(_history_keys(parsed.items))
            if parsed.next_page is None:
                return keys
        raise ConfigError(
            f"A member's activity history runs past {MAX_PAGES} pages ({MAX_PAGES * PAGE_SIZE:,} credits) within "
            f"credit_history_days ({self.cfg.credit_history_days} days), so the connector cannot prove that a row "
            "was not credited before; nothing was sent for it. Lower credit_history_days so that one member's "
            "credits in that window fit, or keep a ledger_path between syncs.",
        )

    def _member_absent(self, credit: Credit, response: ApiResponse) -> bool:
        """Whether a 404 on the history means the member does not exist (then no credit can exist).

        "User does not exist." on the history is taken for true only when the profile says so too: a
        history 404 for a member who exists (one credited a moment ago) proves nothing.
        """
        if response.status != 404 or response.resolution.reason is not Reason.NOT_FOUND:
            return False
        profile = self.client.get_user(credit.user_id, credit.id_type)
        if profile.status == 404 and profile.resolution.reason is Reason.NOT_FOUND:
            return True
        if profile.ok:
            raise self._unproven("it says 'User does not exist.' for a member whose profile exists", response)
        raise self._unreadable(profile)

    @staticmethod
    def _unproven(problem: str, response: ApiResponse) -> TransientError:
        return TransientError(
            f"CrowdTwist's activity history answer cannot prove whether a credit was already awarded: {problem}. "
            "The row was not sent and no state after it is echoed, so no points are credited twice; the next "
            "attempt verifies it again. If this persists, CrowdTwist's history answer has changed: report this "
            "message to the connector's maintainers.",
            status=response.status,
            error_code=response.error_code,
            api_message=response.safe_message,
            request_line=response.request_line,
        )

    @staticmethod
    def _unreadable(response: ApiResponse) -> CrowdTwistError:
        if response.resolution.action is Action.CONFIG:
            try:
                api_rejection(response)  # raises the sync-stopping error
            except CrowdTwistError as exc:
                return exc
        # Never guess: if the history cannot be read, crediting could double the points.
        return TransientError(
            f"Activity history could not be read (HTTP {response.status}) to verify a credit; stopping so "
            "that no points are credited twice.",
            status=response.status,
            error_code=response.error_code,
            api_message=response.safe_message,
        )

    def _remember(self, credit: Credit) -> None:
        self._memory.remember((credit.id_type, credit.user_id), _token(*credit.history_key))

    def _mark_done(self, key: str, outcome: str) -> None:
        if self._ledger is not None:
            self._ledger.mark_done(key, outcome)

    # -- dry run ----------------------------------------------------------------------------------

    def _dry_run(self, credit: Credit, member: str) -> Outcome:
        response = self.client.get_user(credit.user_id, credit.id_type)
        if response.ok:
            points = credit.num_points
            if points is None:
                points = _int_or_none(self._active.get(credit.activity_id, {}).get("num_points"))
            text = f"would credit activity {credit.activity_id}" + (f" ({points} points)" if points is not None else "")
            return Outcome(kind=OutcomeKind.WOULD_CREDIT, member=member, message=text)
        return Outcome.rejected(member, api_rejection(response))

    # -- parsing ----------------------------------------------------------------------------------

    def _parse(self, row: Row) -> Credit:
        options, sources = self._mapping_for(row.stream)
        data = apply_field_mapping(row.data, options) if options.field_mapping else row.data
        self._log_unknown_fields(row, data, sources)
        # The same identifier rules (and so the same member key) as User Profile rows.
        stream = row.stream
        user_id = normalise_user_id(data.get(stream.id_field), stream.id_type, stream.id_field)
        raw_activity = data.get("activity_id")
        if raw_activity is None or (isinstance(raw_activity, str) and not raw_activity.strip()):
            raw_activity = self.cfg.default_activity_id
        if raw_activity is None:
            raise Rejection(
                Reason.VALIDATION,
                "activity_id is required: map the CrowdTwist activity id to activity_id, or set default_activity_id",
            )
        if isinstance(raw_activity, bool) or not isinstance(raw_activity, str | int | float):
            kind = type(raw_activity).__name__
            raise Rejection(Reason.VALIDATION, f"activity_id must be a string or a number, got {kind}")
        activity_id = _id_text(raw_activity)
        if activity_id not in self._active:
            raise Rejection(
                Reason.INVALID_ACTIVITY,
                # The id is the row's value: quoted, so that free text in it is masked in masked outputs.
                ("activity_id ", quoted_value(activity_id, "activity_id"),
                 " is not an active activity of this program. Check the id in CrowdTwist Control Center "
                 "(Activities), that the activity has started and not ended, and GET /v2/activities for the list "
                 "of active ids."),
            )
        num_points = _check_points(
            _parse_points(data.get("num_points")),
            maximum=self.cfg.max_points_per_credit,
            allow_negative=self.cfg.allow_negative_points,
        )
        activity_date = None
        if data.get("activity_date") is not None:
            try:
                activity_date = to_epoch_seconds(data["activity_date"], "activity_date")
            except Rejection as exc:
                raise exc.with_field("activity_date") from None
        extra = _parse_extra(data.get("extra_data"))
        event_id = data.get(self.cfg.event_id_field) if self.cfg.event_id_field else None
        return Credit(user_id, stream.id_type, activity_id, num_points, activity_date, extra,
                      dedupe_key(row, user_id, activity_id, num_points=num_points,
                                 activity_date=activity_date, extra_data=extra, event_id=event_id))

    def _mapping_for(self, stream: StreamContext) -> tuple[MappingOptions, frozenset[str]]:
        """The stream's mapping options (its field_mapping rules) and the sources they read."""
        found = self._stream_mapping.get(stream.key)
        if found is None:
            rules = rules_for_stream(self.cfg.field_mapping, stream.namespace, stream.name)
            found = (dataclasses.replace(self._mapping_options, field_mapping=rules),
                     frozenset(rule.source for rule in rules))
            self._stream_mapping[stream.key] = found
        return found

    def _log_unknown_fields(self, row: Row, data: Mapping[str, Any], sources: frozenset[str]) -> None:
        """Note the row's fields that are not credit fields (listed by :meth:`_log_ignored_fields`)."""
        for name in data:
            if name in KNOWN_FIELDS or name in (row.stream.id_field, self.cfg.event_id_field):
                continue
            if name.startswith(("_airbyte_", "_ab_")):
                continue
            if name in sources:
                continue  # a field_mapping source: used under its mapped name
            fields = self._ignored_fields.setdefault(row.stream.label, {})
            if name not in fields and len(fields) <= MAX_IGNORED_FIELDS_LISTED:  # bounded: rows may have any keys
                fields[name] = None

    def _log_ignored_fields(self) -> None:
        """One INFO line per stream naming each field that was not sent, once."""
        for stream, fields in self._ignored_fields.items():
            names = [name if self.cfg.log_pii else mask_key_path(name) for name in fields]
            listed = ", ".join(repr(name) for name in names[:MAX_IGNORED_FIELDS_LISTED])
            more = " and more" if len(names) > MAX_IGNORED_FIELDS_LISTED else ""
            logger.info(f"Activity Credit: stream {stream}: fields ignored (not credit fields): {listed}{more}.")
        self._ignored_fields.clear()

ANY_ACTIVITY = "*"

# What replay_window and none cost where a source re-sends rows that were credited before, as measured
# for issue 21 (300 credited rows replayed with states at other positions; 2,000 credited rows re-sent by
# a full refresh). none verifies no row, so a full re-send credits every such row again.
_UNSAFE_POLICY = {
    "replay_window": "a replay whose states fell elsewhere credited 212 of 300 rows twice, and a full-refresh "
                     "re-send 1,967 of 2,000",
    "none": "a replay whose states fell elsewhere credited 231 of 300 rows twice, and a full-refresh re-send "
            "credits every row again",
}


def unsafe_policy_warning(policy: str) -> str | None:
    """What ``check`` says about a ``credit_verification`` that is unsafe for full-refresh sources (else None)."""
    figures = _UNSAFE_POLICY.get(policy)
    if figures is None:
        return None
    return (
        f"credit_verification={policy} is unsafe for full-refresh sources and for replays whose states fall "
        f"elsewhere: measured, {figures}. Use every_row (the default) unless every Activity Credit stream is "
        "incremental and its states always fall at the same rows."
    )


def full_refresh_warning(policy: str, stream: str) -> str | None:
    """The WARN that ``write`` logs for a full_refresh Activity Credit stream under an unsafe policy (else None)."""
    figures = _UNSAFE_POLICY.get(policy)
    if figures is None:
        return None
    return (
        f"Stream {stream} is full_refresh and credited with credit_verification={policy}: rows credited by an "
        f"earlier sync are not verified and are credited again (measured, {figures}). Set credit_verification "
        "to every_row, or make the stream incremental."
    )


def _token(activity_id: str, dedupe_key: str) -> str:
    """A history entry as one string: the activity and the dedupe key (a unit separator between)."""
    return f"{activity_id}\x1f{dedupe_key}"


def _duplicate(member: str, message: str, *, status: int | None = None) -> Outcome:
    return Outcome(kind=OutcomeKind.DUPLICATE, member=member, message=message, status=status)


def dedupe_key(
    row: Row,
    user_id: str,
    activity_id: str,
    *,
    num_points: int | None,
    activity_date: int | None,
    extra_data: Mapping[str, Any],
    event_id: Any = None,
) -> str:
    """The row's dedupe key: its event id when it has one, else a hash of what identifies the credit.

    The hash covers the stream, the normalised credit fields (so ``"2024-01-05"`` and its epoch
    value give the same key), ``extra_data`` (two purchases that differ only there are two events)
    and the primary-key values. It never depends on time or randomness, so a replayed row gets the
    same key as the row it replays.
    """
    if isinstance(event_id, str | int | float) and not isinstance(event_id, bool) and str(event_id).strip():
        return _id_text(event_id)
    identity = [
        row.stream.namespace, row.stream.name, user_id, activity_id, activity_date, num_points,
        [_path_value(row.data, path) for path in row.stream.primary_key],
        dict(extra_data),
    ]
    canonical = json.dumps(identity, default=str, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _path_value(data: Mapping[str, Any], path: tuple[str, ...] | list[str]) -> Any:
    current: Any = data
    for part in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _id_text(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_points(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Rejection(Reason.VALIDATION, "num_points must be a whole number, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1e300 is "integer" too: _check_points refuses it by size
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise Rejection(Reason.VALIDATION, f"num_points must be a whole number, got {type(value).__name__}")


def _check_points(points: int | None, *, maximum: int, allow_negative: bool) -> int | None:
    """Points are money-like: a value no program would award is a data error, not a credit."""
    if points is None:
        return None
    if points < 0 and not allow_negative:
        raise Rejection(
            Reason.VALIDATION,
            "num_points is negative; debits are refused unless allow_negative_points is set",
            field="num_points",
        )
    if abs(points) > maximum:
        raise Rejection(
            Reason.VALIDATION,
            f"num_points is larger than max_points_per_credit ({maximum}); check the source column, or raise the "
            "limit if such awards are real",
            field="num_points",
        )
    return points


def _parse_extra(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Rejection(
                Reason.VALIDATION, "extra_data must be a JSON object, got a string that is not JSON"
            ) from None
    if not isinstance(value, Mapping):
        raise Rejection(Reason.VALIDATION, f"extra_data must be an object, got {type(value).__name__}")
    return dict(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _history_keys(items: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(activity, dedupe key) of every credit of ours in a page of history items."""
    keys: set[tuple[str, str]] = set()
    for item in items:
        activity = item.get("activity_id")
        # An item without activity_id (the v2.1 item shape is not documented) matches any activity.
        activity_text = _id_text(activity) if isinstance(activity, str | int | float) else ANY_ACTIVITY
        extra = item.get("extra_data")
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError:
                extra = None
        if isinstance(extra, Mapping) and extra.get(DEDUPE_KEY_FIELD) is not None:
            keys.add((activity_text, str(extra[DEDUPE_KEY_FIELD])))
    return keys
