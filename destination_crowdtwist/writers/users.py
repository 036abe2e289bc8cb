"""User Profile writer: upsert, insert and update CrowdTwist members, one row at a time.

Sync modes (from the catalog): ``append_dedup`` = upsert, ``append`` = insert, ``update`` = update,
``soft_delete`` = remove the member as ``delete_behaviour`` says (``writers/removal.py``, with its
guardrail; this writer only hands those rows over, with its member index).

Upsert costs two requests for a row whose first guess is wrong (PUT -> 404 -> POST for a new
member, or POST -> "already taken" -> PUT for an existing one). :class:`UpsertLearner` watches the
sync's rows and picks the cheaper first guess, so requests per row stay close to 1 whether the rows
are all new, all existing or mixed. Correctness never depends on the guess: either order falls back
to the other request.

With a member index (``member_index_path``, see ``writers/member_index.py``) the writer also knows,
from earlier syncs, which members exist and what it last wrote to them: a known member's upsert
starts with the update, an unknown one's with the learner's guess (the learner then only watches
unknown members, and starts from "new" when the index already knew members of the program), and
with ``skip_unchanged`` a row identical to the last accepted write is settled as ``unchanged``
without a request. An entry older than ``member_index_max_age_days`` (spread per member) is not
trusted to skip: the row is sent again, so a member deleted in CrowdTwist outside the connector is
re-created (upsert: the update answers "not found", the create follows) and a changed one corrected.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from destination_crowdtwist.api.client import ApiResponse, CrowdTwistClient
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.mapping import (
    MappedUser,
    MappingOptions,
    create_payload,
    map_user_record,
    rules_for_stream,
)
from destination_crowdtwist.records.rejection import Quoted, Reason, Rejection
from destination_crowdtwist.records.rejection import key as quoted_key
from destination_crowdtwist.records.validation import check_user
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
from destination_crowdtwist.writers.member_index import MemberEntry, MemberIndex, fingerprint
from destination_crowdtwist.writers.removal import DELETE, MemberRemoval

logger = logging.getLogger("airbyte")

UPSERT = "append_dedup"
INSERT = "append"
UPDATE = "update"

# Put before a create rejection once an update proved the member missing (never for insert rows).
_CANNOT_CREATE = "The member does not exist and cannot be created: "


class UpsertLearner:
    """Chooses update-first or create-first for upsert rows from what this sync has seen.

    Update-first costs ``1 + p_new`` requests per row, create-first ``2 - p_new``; so create-first wins
    when more than half of the rows are new members. ``p_new`` is an exponentially weighted average
    of recent rows (new = the member did not exist), so a sync whose data changes character midway
    (e.g. existing members first, then sign-ups) switches back and forth.
    """

    def __init__(self, strategy: str = "auto", *, alpha: float = 0.05, initial_p_new: float = 0.25) -> None:
        self.strategy = strategy
        self._alpha = alpha
        self._p_new = initial_p_new
        self._lock = threading.Lock()
        self.switches = 0
        self._last_choice = self._choose(initial_p_new)

    def _choose(self, p_new: float) -> bool:
        if self.strategy == "create_first":
            return True
        if self.strategy == "update_first":
            return False
        return p_new > 0.5

    def create_first(self) -> bool:
        """Whether the next upsert row should try a create first."""
        with self._lock:
            return self._last_choice

    def observe(self, *, existed: bool) -> None:
        """Learn from one upsert row whose member's existence is now known."""
        with self._lock:
            self._p_new += self._alpha * ((0.0 if existed else 1.0) - self._p_new)
            choice = self._choose(self._p_new)
            if choice != self._last_choice:
                self.switches += 1
                self._last_choice = choice

    @property
    def p_new(self) -> float:
        """Current estimate of the share of new members."""
        with self._lock:
            return self._p_new


class Step(enum.Enum):
    """The requests an upsert row can make; see :meth:`UserProfileWriter._upsert`."""

    UPDATE = "update"  # PUT /v2/users/{id}
    CREATE = "create"  # POST /v2/users


@dataclass(frozen=True)
class UserRow:
    """A User Profile row parsed for its stream: the mapped fields, and what a create would send.

    ``create`` is the create body, or why the member cannot be created (decided before any
    request, so a row that could never be created does not spend one); ``update_problem`` is why an
    update would be refused.
    """

    mapped: MappedUser
    id_type: str
    mode: str
    create: dict[str, Any] | Rejection
    update_problem: Rejection | None


@dataclass
class _UpsertRun:
    """One upsert row on its way through the steps: what was tried and what was learned."""

    user: UserRow
    label: str
    entry: MemberEntry | None  # what the member index knows of the member, if anything
    tried: set[Step] = field(default_factory=set)
    proved_missing: bool = False  # an update answered "not found"


class UserProfileWriter:
    """Writes User Profile rows. See the module docstring."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        client: CrowdTwistClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock``: epoch seconds, by which the member index dates and ages its entries; ``sleep``:
        the pauses between erase-status reads (wiring passes the client's stoppable wait).
        """
        self.cfg = cfg
        self.client = client
        self._clock = clock
        self.learner = UpsertLearner(cfg.upsert_strategy)
        self._base_options = cfg.mapping_options()
        self._options: dict[tuple[str | None, str], MappingOptions] = {}  # by stream
        self._index: MemberIndex | None = None
        # What the member index decided, for the summary line: known / unknown / skipped / expired
        # (sent again: the entry was too old to trust) / corrected.
        self.index_counts: dict[str, int] = dict.fromkeys(("known", "unknown", "skipped", "expired", "corrected"), 0)
        self._counts_lock = threading.Lock()
        self.removal = MemberRemoval(cfg, client, sleep=sleep)

    # -- Writer protocol ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the member index, if one is configured (a dry run never touches it)."""
        if not self.cfg.member_index_path or self.cfg.dry_run:
            return
        # Scoped by base URL (the program), like the credit ledger, and by identifier type per entry.
        self._index = MemberIndex(
            self.cfg.member_index_path, self.cfg.api_base_url, clock=self._clock,
            max_age=self.cfg.member_index_max_age_days * 86400.0,
        )
        if self._index.has_entries():
            logger.info("User Profile: the member index knows members of this program from earlier syncs.")
            # A member that an index warmed by earlier syncs does not know is most likely new: start
            # unknown members create-first (the learner still switches back if they turn out to exist).
            self.learner = UpsertLearner(self.cfg.upsert_strategy, initial_p_new=0.75)
        else:
            logger.info("User Profile: the member index is empty for this program; this sync fills it.")

    def checkpoint(self) -> None:
        """Commit the member index entries of the rows settled so far (before their state is echoed)."""
        if self._index is not None:
            self._index.commit()

    def finish(self) -> None:
        """After the last state: follow the erasures this sync queued and log what removal did."""
        self.removal.finish()

    def close(self) -> None:
        """Close the member index (committing what is staged) and log what it saved."""
        if self._index is None:
            return
        self._index.close()
        counts = self.index_counts
        logger.info(
            f"User Profile: member index: {counts['known']} rows of known members, {counts['unknown']} of unknown "
            f"ones, {counts['skipped']} unchanged rows skipped, {counts['expired']} sent again (entry older than "
            f"member_index_max_age_days), {counts['corrected']} entries corrected (the member did not exist)."
        )

    def prepare(self, row: Row) -> Prepared[Any] | Outcome:
        """Map and pre-flight one row; no request is spent on a row CrowdTwist would refuse."""
        stream = row.stream
        if stream.sync_mode == DELETE:
            return self.removal.prepare(row, self._options_for(stream))
        try:
            mapped = map_user_record(row.data, self._options_for(stream))
        except Rejection as rejection:
            return Outcome.rejected(raw_label(row, log_pii=self.cfg.log_pii), rejection)
        label = member_label(mapped.user_id, stream.id_type, log_pii=self.cfg.log_pii)
        unknown = _unknown_custom_fields(mapped.payload, self.cfg.custom_attributes)
        if unknown:
            names: list[str | Quoted] = []
            for n, name in enumerate(unknown):
                # The names are the row's keys, which can be data ("Quentin Doe (spouse)"): quoted.
                names.extend((", ", quoted_key(name)) if n else (quoted_key(name),))
            return Outcome.rejected(label, Rejection(
                Reason.CUSTOM_ATTRIBUTE,
                ("custom field(s) ", *names, " are not among the configured custom_attributes; set them up in "
                 "Control Center and add them to custom_attributes, rename them with field_mapping, or set "
                 "unmapped_fields=drop"),
                field="custom_data",
            ))
        require_location = self.cfg.require_location
        update_problem = check_user(mapped.payload, creating=False, require_location=require_location)
        create = self._create_body(mapped, stream.id_type)
        mode = stream.sync_mode
        user = UserRow(mapped, stream.id_type, mode, create, update_problem)
        if mode == INSERT and isinstance(create, Rejection):
            return Outcome.rejected(label, create)
        if mode in (UPDATE, UPSERT) and update_problem is not None:
            return Outcome.rejected(label, update_problem)
        return Prepared(row, member_key(stream.id_type, mapped.user_id), label, user)

    def apply(self, prepared: Prepared[Any]) -> Outcome:
        """Write one row; returns its outcome (rejections included)."""
        if prepared.row.stream.sync_mode == DELETE:
            return self.removal.apply(prepared, self._index)
        user, label = prepared.payload, prepared.label
        if self.cfg.dry_run:
            return self._dry_run(user, label)
        entry: MemberEntry | None = None
        if self._index is not None:
            entry = self._index.lookup(user.id_type, user.mapped.user_id)
            settled = self._settle_from_index(user, label, entry)
            if settled is not None:
                return settled
        if user.mode == UPDATE:
            return self._update_only(user, label, entry)
        if user.mode == INSERT:
            return self._insert(user, label, entry)
        return self._upsert(user, label, entry)

    # -- modes ----------------------------------------------------------------------------------

    def _update_only(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        if not user.mapped.payload:
            return _unchanged(label)
        response = self.client.update_user(user.mapped.user_id, user.id_type, user.mapped.payload)
        if response.ok:
            self._accepted(user, response)
            return Outcome(kind=OutcomeKind.UPDATED, member=label, status=response.status)
        rejection = api_rejection(response)
        if rejection.reason is Reason.NOT_FOUND:
            if entry is not None:
                self._not_found(user)
            rejection = Rejection(
                Reason.NOT_FOUND,
                f"No member with this {user.id_type} exists, and sync mode 'update' never creates members. Check "
                "that the identifier field holds the configured identifier type, or use upsert (append_dedup) to "
                "create missing members.",
                status=response.status,
            )
        return Outcome.rejected(label, rejection)

    def _insert(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        assert isinstance(user.create, dict)  # prepare() rejected the row otherwise
        response = self.client.create_user(user.create)
        if response.ok or self._our_lost_create(user, response):
            self._accepted(user, response)
            return Outcome(kind=OutcomeKind.CREATED, member=label, status=response.status)
        rejection = api_rejection(response)
        if rejection.reason is Reason.ALREADY_TAKEN and self._holds(user):
            # A replayed row (or a re-run) whose member an earlier attempt created: it is written.
            if entry is not None and entry.expired and self._index is not None:
                # Checked again (an expired entry): the member still holds the row's values as far as
                # its profile shows, so the entry is dated afresh; its fingerprint is kept only when
                # this row is the one it records.
                same = entry.fingerprint == fingerprint(user.mapped.payload)
                self._index.record(user.id_type, user.mapped.user_id, fingerprint=entry.fingerprint if same else None)
            return Outcome(kind=OutcomeKind.UNCHANGED, member=label, message="the member already holds these values")
        return Outcome.rejected(label, rejection)

    def _upsert(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        """Update or create, whichever the member needs, starting with the cheaper guess.

        A small state machine: each step is tried at most once. ``UPDATE`` answering "not found"
        moves to ``CREATE``; ``CREATE`` answering "already taken" moves to ``UPDATE``. Any other
        answer ends the row. A row that cannot be created (missing names, identifier type ``id``)
        starts with ``UPDATE`` whatever the learner says: a create would only waste a request. A
        member the index knows (``entry``) starts with ``UPDATE`` too; the learner watches only
        the rows it chose the order of, so known members do not make it believe every row exists.
        """
        run = _UpsertRun(user, label, entry)
        can_create = isinstance(user.create, dict)
        first_create = entry is None and can_create and self.learner.create_first()
        step: Step | Outcome = Step.CREATE if first_create else Step.UPDATE
        while isinstance(step, Step):
            run.tried.add(step)
            step = self._update_step(run) if step is Step.UPDATE else self._create_step(run)
        return step

    def _update_step(self, run: _UpsertRun) -> Step | Outcome:
        user, label = run.user, run.label
        if not user.mapped.payload:
            if Step.CREATE in run.tried:
                return _unchanged(label)
            if isinstance(user.create, dict):
                return Step.CREATE  # nothing to update, but the member must exist: the create tells us
            return self._exists_or_rejected(user, label, run.entry)
        response = self.client.update_user(user.mapped.user_id, user.id_type, user.mapped.payload)
        if response.ok:
            self._observe(run, existed=True)
            self._accepted(user, response)
            return Outcome(kind=OutcomeKind.UPDATED, member=label, status=response.status)
        rejection = api_rejection(response)
        if rejection.reason is not Reason.NOT_FOUND:
            return Outcome.rejected(label, rejection)
        if run.entry is not None:
            self._not_found(user)  # the index was wrong (the member was removed): correct it
        if Step.CREATE in run.tried:
            return Outcome.rejected(label, rejection)
        self._observe(run, existed=False)
        run.proved_missing = True
        return Step.CREATE

    def _create_step(self, run: _UpsertRun) -> Step | Outcome:
        user, label = run.user, run.label
        if isinstance(user.create, Rejection):
            return Outcome.rejected(label, user.create.with_prefix(_CANNOT_CREATE if run.proved_missing else ""))
        response = self.client.create_user(user.create)
        if response.ok or self._our_lost_create(user, response):
            self._observe(run, existed=False)
            self._accepted(user, response)
            return Outcome(kind=OutcomeKind.CREATED, member=label, status=response.status)
        rejection = api_rejection(response)
        if rejection.reason is not Reason.ALREADY_TAKEN:
            return Outcome.rejected(label, rejection)
        if Step.UPDATE not in run.tried:
            self._observe(run, existed=True)
            return Step.UPDATE
        if not user.mapped.payload:
            if (run.entry is None or run.entry.expired) and self._index is not None:
                # It exists; what it holds is unknown (nothing was written), so no fingerprint. An
                # expired entry is dated afresh, so the next syncs skip the row again.
                self._index.record(user.id_type, user.mapped.user_id, fingerprint=None)
            return _unchanged(label)
        return Outcome.rejected(label, rejection)

    def _observe(self, run: _UpsertRun, *, existed: bool) -> None:
        if run.entry is None:
            self.learner.observe(existed=existed)

    def _our_lost_create(self, user: UserRow, response: ApiResponse) -> bool:
        """Whether "already taken" answers a retry of our own create whose first answer was lost.

        The client retries a create after a dropped connection or a 5xx (a second create of the same
        identifier cannot make a second member), so the retry may meet the member the first attempt
        made. Reading the member and comparing it with what we sent tells ours from someone else's.
        """
        if not response.after_uncertain or not isinstance(user.create, dict):
            return False
        if api_rejection(response).reason is not Reason.ALREADY_TAKEN:
            return False
        return self._holds(user)

    def _holds(self, user: UserRow) -> bool:
        """Whether the member with this row's identifier holds every value its create would send."""
        if not isinstance(user.create, dict):
            return False
        found = self.client.get_user(user.mapped.user_id, user.id_type)
        profile = found.data if found.ok and isinstance(found.data, Mapping) else None
        return profile is not None and _matches(profile, user.create)

    def _exists_or_rejected(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome:
        """An identifier-only row that could not create its member: one read says which it is."""
        response = self.client.get_user(user.mapped.user_id, user.id_type)
        if response.ok:
            if entry is not None and entry.expired and self._index is not None:
                # Seen to exist: the expired entry is dated afresh (what it holds stays unknown).
                self._index.record(user.id_type, user.mapped.user_id, fingerprint=None)
            return _unchanged(label)
        rejection = api_rejection(response)
        if rejection.reason is Reason.NOT_FOUND and entry is not None:
            self._not_found(user)
        if rejection.reason is Reason.NOT_FOUND and isinstance(user.create, Rejection):
            rejection = user.create.with_prefix(_CANNOT_CREATE)
        return Outcome.rejected(label, rejection)

    def _dry_run(self, user: UserRow, label: str) -> Outcome:
        response = self.client.get_user(user.mapped.user_id, user.id_type)
        if response.ok:
            if user.mode == INSERT:
                return Outcome.rejected(label, Rejection(
                    Reason.ALREADY_TAKEN,
                    "This member already exists; sync mode insert (append) would be refused. Use upsert or update.",
                    status=409,
                ))
            profile = response.data if isinstance(response.data, Mapping) else {}
            changes = _changed_fields(profile, user.mapped.payload)
            return Outcome(kind=OutcomeKind.WOULD_UPDATE, member=label, changes=changes)
        rejection = api_rejection(response)
        if rejection.reason is not Reason.NOT_FOUND:
            return Outcome.rejected(label, rejection)
        if user.mode == UPDATE:
            return Outcome.rejected(label, Rejection(
                Reason.NOT_FOUND, "No member with this identifier exists; update would skip it.", status=404
            ))
        if isinstance(user.create, Rejection):
            return Outcome.rejected(label, user.create.with_prefix(_CANNOT_CREATE))
        return Outcome(kind=OutcomeKind.WOULD_CREATE, member=label, changes=tuple(sorted(user.create)))

    # -- member index ---------------------------------------------------------------------------

    def _settle_from_index(self, user: UserRow, label: str, entry: MemberEntry | None) -> Outcome | None:
        """The row's outcome when the index shows it needs no request; else None, ready to write.

        The entry is looked up in apply(), on the worker, not in prepare(): the member's previous
        row (applied just before this one, the pipeline orders them) may have changed it.
        """
        assert self._index is not None
        self._count("known" if entry is not None else "unknown")
        if entry is None:
            return None
        sent = fingerprint(user.mapped.payload)
        if entry.expired:
            # Trusted long enough: the member may have been deleted or changed in CrowdTwist since.
            # The row is sent (an upsert's update answered "not found" falls back to a create), and the
            # accepted write dates the entry afresh.
            self._count("expired")
        elif self.cfg.skip_unchanged and (not user.mapped.payload or entry.fingerprint == sent):
            self._count("skipped")
            return Outcome(
                kind=OutcomeKind.UNCHANGED, member=label,
                message="same fields as the last write accepted for this member (member index)",
            )
        if entry.fingerprint is not None and entry.fingerprint != sent:
            # Write-ahead: a crash after CrowdTwist applies this write must not leave the old
            # fingerprint on disk (writers/member_index.py, rule 2).
            self._index.clear_fingerprint(user.id_type, user.mapped.user_id)
        return None

    def _accepted(self, user: UserRow, response: ApiResponse) -> None:
        """CrowdTwist accepted a create or update: the member exists and holds this row's fields."""
        if self._index is not None:
            self._index.record(
                user.id_type, user.mapped.user_id,
                fingerprint=fingerprint(user.mapped.payload), crowdtwist_id=_crowdtwist_id(response),
            )

    def _not_found(self, user: UserRow) -> None:
        """An update of a member the index knew answered "not found": drop the stale entry."""
        if self._index is not None:
            self._index.forget(user.id_type, user.mapped.user_id)
            self._count("corrected")

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self.index_counts[name] += 1

    # -- helpers --------------------------------------------------------------------------------

    def _options_for(self, stream: StreamContext) -> MappingOptions:
        """The mapping options of a stream: its identifier field and type, and its field_mapping rules."""
        options = self._options.get(stream.key)
        if options is None:
            options = dataclasses.replace(
                self._base_options, id_field=stream.id_field, id_type=stream.id_type,
                field_mapping=rules_for_stream(self.cfg.field_mapping, stream.namespace, stream.name),
            )
            self._options[stream.key] = options
        return options

    def _create_body(self, mapped: MappedUser, id_type: str) -> dict[str, Any] | Rejection:
        """What ``POST /v2/users`` would send for this row, or why the member cannot be created."""
        if id_type == "id":
            return Rejection(
                Reason.NOT_FOUND,
                "Members cannot be created by CrowdTwist id (CrowdTwist assigns ids). Use email, third_party_id, "
                "username or mobile_phone_number as the identifier to create members.",
            )
        try:
            body = create_payload(mapped, id_type)
        except Rejection as rejection:
            return rejection
        problem = check_user(body, creating=True, require_location=self.cfg.require_location)
        return body if problem is None else problem


def _crowdtwist_id(response: ApiResponse) -> str | None:
    """The member's CrowdTwist id from a create/update answer (the full profile), if it has one."""
    data = response.data
    value = data.get("id") if isinstance(data, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        return None
    return str(value)


def _unknown_custom_fields(payload: Mapping[str, Any], allowed: tuple[str, ...]) -> list[str]:
    """custom_data keys not in the configured allow-list (none checked when the list is empty)."""
    custom = payload.get("custom_data")
    if not allowed or not isinstance(custom, Mapping):
        return []
    return sorted(name for name in custom if name not in allowed)


def _unchanged(label: str) -> Outcome:
    return Outcome(kind=OutcomeKind.UNCHANGED, member=label, message="no field to update besides the identifier")


# Fields CrowdTwist takes on create but does not return as sent (secrets, one-off flags, nested data).
_NOT_ECHOED = frozenset({"password", "invite_code", "send_verify_email", "sign_up_channel_id", "sign_up_campaign",
                         "custom_data", "extra_data"})


def _matches(profile: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether a member's profile holds every field value a create sent (emails compared case-blind)."""
    for name, value in sent.items():
        if name in _NOT_ECHOED:
            continue
        have = profile.get(name)
        if isinstance(value, str) and isinstance(have, str) and "email" in name:
            if value.strip().lower() != have.strip().lower():
                return False
        elif _normalise(have) != _normalise(value):
            return False
    return True


def _normalise(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


def _changed_fields(profile: Mapping[str, Any], payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Fields whose value in the payload differs from the member's profile (dry run)."""
    changes: list[str] = []
    for name, value in payload.items():
        if name == "custom_data" and isinstance(value, Mapping):
            current = profile.get("custom_data") or {}
            for key, sub in value.items():
                if not isinstance(current, Mapping) or _normalise(current.get(key)) != _normalise(sub):
                    changes.append(f"custom_data.{key}")
            continue
        if _normalise(profile.get(name)) != _normalise(value):
            changes.append(name)
    return tuple(changes)
