"""The requests a User Profile row makes: update only, insert, and upsert as a small state machine.

Upsert tries each of two steps at most once: ``UPDATE`` answering "not found" moves to ``CREATE``,
``CREATE`` answering "already taken" moves to ``UPDATE``; any other answer ends the row. The first
step is the cheaper guess (``writers/learner.py``), or ``UPDATE`` for a member the index knows
(``writers/known_members.py``). "Already taken" after a lost create answer is checked against the
member: ours is ``created``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from destination_crowdtwist.api.protocol import CrowdTwistApi
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.records.user_payload import Intent
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, api_rejection
from destination_crowdtwist.writers.known_members import KnownMembers
from destination_crowdtwist.writers.learner import UpsertLearner
from destination_crowdtwist.writers.member_index import MemberEntry, fingerprint
from destination_crowdtwist.writers.profiles import crowdtwist_id, holds

#: Put before a create rejection once an update proved the member missing (never for insert rows).
CANNOT_CREATE = "The member does not exist and cannot be created: "


@dataclass(frozen=True)
class UserRow:
    """A User Profile row ready to write (``records/user_payload.py``): the member, what the row may do,
    the update body, and the create body (or why the member cannot be created; None for update rows).
    """

    user_id: str
    id_type: str
    intent: Intent
    update: dict[str, Any]
    create: dict[str, Any] | Rejection | None
    # The pre-flight checks, when the writer left them until the row is known to need sending (a row the
    # member index skips is never checked: CrowdTwist holds its values): the checked row, or why CrowdTwist
    # would refuse it. None once checked (``create`` is then set for the rows that may create).
    unchecked: Callable[[], UserRow | Rejection] | None = None


class Step(enum.Enum):
    """The requests an upsert row can make."""

    UPDATE = "update"  # PUT /v2/users/{id}
    CREATE = "create"  # POST /v2/users


@dataclass
class _UpsertRun:
    """One upsert row on its way through the steps: what was tried and what was learned."""

    user: UserRow
    label: str
    entry: MemberEntry | None  # what the member index knows of the member, if anything
    tried: set[Step] = field(default_factory=set)
    sent: set[Step] = field(default_factory=set)  # the steps that made their request
    guessed: bool = False  # the first step was the learner's guess
    proved_missing: bool = False  # an update answered "not found"
    observed: bool = False  # the learner has heard of this row (once per row, whatever the steps)


class ProfileWrites:
    """Writes one User Profile row as its intent says; returns its outcome (rejections included)."""

    def __init__(
        self, api: CrowdTwistApi, learner: UpsertLearner, known: KnownMembers | None,
        on_created: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_created(id_type, user_id)``: a create answered as done (``writers/created_members.py``)."""
        self.api = api
        self.learner = learner
        self.known = known
        self._on_created = on_created

    def write(self, user: UserRow, label: str) -> Outcome:
        """Settle the row from the member index if it needs no request, else send what it needs."""
        entry: MemberEntry | None = None
        if self.known is not None:
            entry = self.known.lookup(user.id_type, user.user_id)
            settled = self.known.settle(user.id_type, user.user_id, user.update, label, entry)
            if settled is not None:
                return settled
        if user.unchecked is not None:
            checked = user.unchecked()
            if isinstance(checked, Rejection):
                return Outcome.rejected(label, checked)
            user = checked
        if self.known is not None:
            # Only for a row that will be sent: a refused row changes nothing, so its entry stays.
            self.known.before_write(user.id_type, user.user_id, user.update, entry)
        if user.intent is Intent.UPDATE:
            return self._update_only(user, label, entry)
        if user.intent is Intent.CREATE:
            return self._insert(user, label, entry)
        return self._upsert(user, label, entry)

    # -- modes ----------------------------------------------------------------------------------

    def _update_only(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        if not user.update:
            return unchanged(label)
        response = self.api.update_user(user.user_id, user.id_type, user.update)
        if response.ok:
            self._accepted(user, response)
            return Outcome(kind=OutcomeKind.UPDATED, member=label, status=response.status)
        if response.resolution.reason is Reason.NOT_FOUND and entry is not None:
            self._not_found(user)
        return Outcome.rejected(label, api_rejection(response, advice={Reason.NOT_FOUND: (
            f"No member with this {user.id_type} exists, and sync mode 'update' never creates members. Check "
            "that the identifier field holds the configured identifier type, or use upsert (append_dedup) to "
            "create missing members."
        )}))

    def _insert(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        assert isinstance(user.create, dict)  # records/user_payload.py gave the row a problem otherwise
        response = self.api.create_user(user.create)
        if response.ok or self._our_lost_create(user, response):
            self._accepted(user, response, created=response.ok)
            return Outcome(kind=OutcomeKind.CREATED, member=label, status=response.status)
        if response.resolution.reason is Reason.ALREADY_TAKEN and self._holds(user):
            # A replayed row (or a re-run) whose member an earlier attempt created: it is written.
            if entry is not None and entry.expired and self.known is not None:
                # Checked again (an expired entry): the member still holds the row's values as far as
                # its profile shows, so the entry is dated afresh; its fingerprint is kept only when
                # this row is the one it records.
                same = entry.fingerprint == fingerprint(user.update)
                self.known.seen(user.id_type, user.user_id, same_as=entry.fingerprint if same else None)
            return Outcome(kind=OutcomeKind.UNCHANGED, member=label, message="the member already holds these values")
        return Outcome.rejected(label, api_rejection(response))

    def _upsert(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        """Update or create, whichever the member needs, starting with the cheaper guess.

        A row that cannot be created (missing names, identifier type ``id``) starts with ``UPDATE``
        whatever the learner says: a create would only waste a request. A member the index knows
        (``entry``) starts with ``UPDATE`` too; the learner watches only the rows it chose the order
        of, so known members do not make it believe every row exists.
        """
        run = _UpsertRun(user, label, entry, guessed=entry is None and isinstance(user.create, dict))
        first_create = run.guessed and self.learner.create_first()
        step: Step | Outcome = Step.CREATE if first_create else Step.UPDATE
        while isinstance(step, Step):
            run.tried.add(step)
            step = self._update_step(run) if step is Step.UPDATE else self._create_step(run)
        if run.guessed:
            self.learner.count(both_sent=len(run.sent) == len(Step))
        return step

    def _update_step(self, run: _UpsertRun) -> Step | Outcome:
        user, label = run.user, run.label
        if not user.update:
            if Step.CREATE in run.tried:
                return unchanged(label)
            if isinstance(user.create, dict):
                return Step.CREATE  # nothing to update, but the member must exist: the create tells us
            return self._exists_or_rejected(user, label, run.entry)
        run.sent.add(Step.UPDATE)
        response = self.api.update_user(user.user_id, user.id_type, user.update)
        if response.ok:
            self._observe(run, existed=True)
            self._accepted(user, response)
            return Outcome(kind=OutcomeKind.UPDATED, member=label, status=response.status)
        if response.resolution.reason is not Reason.NOT_FOUND:
            return Outcome.rejected(label, api_rejection(response))
        if run.entry is not None:
            self._not_found(user)  # the index was wrong (the member was removed): correct it
        if Step.CREATE in run.tried:
            return Outcome.rejected(label, api_rejection(response))
        self._observe(run, existed=False)
        run.proved_missing = True
        return Step.CREATE

    def _create_step(self, run: _UpsertRun) -> Step | Outcome:
        user, label = run.user, run.label
        if not isinstance(user.create, dict):
            assert user.create is not None  # upsert rows always have a create body or its rejection
            return Outcome.rejected(label, user.create.with_prefix(CANNOT_CREATE if run.proved_missing else ""))
        run.sent.add(Step.CREATE)
        response = self.api.create_user(user.create)
        if response.ok or self._our_lost_create(user, response):
            self._observe(run, existed=False)
            self._accepted(user, response, created=response.ok)
            return Outcome(kind=OutcomeKind.CREATED, member=label, status=response.status)
        if response.resolution.reason is not Reason.ALREADY_TAKEN:
            return Outcome.rejected(label, api_rejection(response))
        if Step.UPDATE not in run.tried:
            self._observe(run, existed=True)
            return Step.UPDATE
        if not user.update:
            if (run.entry is None or run.entry.expired) and self.known is not None:
                # It exists; what it holds is unknown (nothing was written), so no fingerprint. An
                # expired entry is dated afresh, so the next syncs skip the row again.
                self.known.seen(user.id_type, user.user_id)
            return unchanged(label)
        return Outcome.rejected(label, api_rejection(response))

    def _observe(self, run: _UpsertRun, *, existed: bool) -> None:
        # Once per row: a wrong first guess and the step after it are one row's evidence, not two.
        if run.entry is None and not run.observed:
            run.observed = True
            self.learner.observe(existed=existed)

    # -- reading the member when an answer alone does not say ---------------------------------------

    def _our_lost_create(self, user: UserRow, response: ApiResponse) -> bool:
        """Whether "already taken" answers a retry of our own create whose first answer was lost.

        The client retries a create after a dropped connection or a 5xx (a second create of the same
        identifier cannot make a second member), so the retry may meet the member the first attempt
        made. Reading the member and comparing it with what we sent tells ours from someone else's.
        """
        if not response.after_uncertain or not isinstance(user.create, dict):
            return False
        if response.resolution.reason is not Reason.ALREADY_TAKEN:
            return False
        return self._holds(user)

    def _holds(self, user: UserRow) -> bool:
        """Whether the member with this row's identifier holds every value its create would send."""
        if not isinstance(user.create, dict):
            return False
        found = self.api.get_user(user.user_id, user.id_type)
        profile = found.data if found.ok and isinstance(found.data, Mapping) else None
        return profile is not None and holds(profile, user.create)

    def _exists_or_rejected(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        """An identifier-only row that could not create its member: one read says which it is."""
        response = self.api.get_user(user.user_id, user.id_type)
        if response.ok:
            if entry is not None and entry.expired and self.known is not None:
                # Seen to exist: the expired entry is dated afresh (what it holds stays unknown).
                self.known.seen(user.id_type, user.user_id)
            return unchanged(label)
        missing = response.resolution.reason is Reason.NOT_FOUND
        if missing and entry is not None:
            self._not_found(user)
        if missing and isinstance(user.create, Rejection):
            return Outcome.rejected(label, user.create.with_prefix(CANNOT_CREATE))
        return Outcome.rejected(label, api_rejection(response))

    # -- the member index ----------------------------------------------------------------------------

    def _accepted(self, user: UserRow, response: ApiResponse, *, created: bool = False) -> None:
        if created and self._on_created is not None:
            # Answered as created (not "already taken" read back after a lost answer): the member did not
            # exist before this request, so it holds no earlier credit (writers/created_members.py).
            self._on_created(user.id_type, user.user_id)
        if self.known is not None:
            self.known.accepted(user.id_type, user.user_id, user.update, crowdtwist_id(response.data))

    def _not_found(self, user: UserRow) -> None:
        if self.known is not None:
            self.known.not_found(user.id_type, user.user_id)


def unchanged(label: str) -> Outcome:
    """A row with nothing to send besides its identifier, whose member exists."""
    return Outcome(kind=OutcomeKind.UNCHANGED, member=label, message="no field to update besides the identifier")
