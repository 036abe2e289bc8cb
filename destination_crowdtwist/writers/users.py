"""User Profile writer: upsert, insert and update CrowdTwist members, one row at a time.

Sync modes (from the catalog): ``append_dedup`` = upsert, ``append`` = insert, ``update`` = update.

Upsert costs two requests for a row whose first guess is wrong (PUT -> 404 -> POST for a new
member, or POST -> "already taken" -> PUT for an existing one). :class:`UpsertLearner` watches the
sync's rows and picks the cheaper first guess, so requests per row stay close to 1 whether the rows
are all new, all existing or mixed. Correctness never depends on the guess: either order falls back
to the other request.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from destination_crowdtwist.api.client import ApiResponse, CrowdTwistClient
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.mapping import MappedUser, RowError, create_payload, map_user_record
from destination_crowdtwist.records.validation import validate_user
from destination_crowdtwist.writers.base import (
    CREATED,
    UNCHANGED,
    UPDATED,
    WOULD_CREATE,
    WOULD_UPDATE,
    Outcome,
    Row,
    member_label,
    rejection,
)

UPSERT = "append_dedup"
INSERT = "append"
UPDATE = "update"


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


class UserProfileWriter:
    """Writes User Profile rows. See the module docstring."""

    barrier_at_states = False

    def __init__(self, cfg: ConnectorConfig, client: CrowdTwistClient) -> None:
        self.cfg = cfg
        self.client = client
        self.id_type = cfg.user_identifier_type
        self.options = cfg.mapping_options()
        self.learner = UpsertLearner(cfg.upsert_strategy)

    # -- Writer protocol ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Nothing to read up front for profiles."""

    def close(self) -> None:
        """Nothing to release."""

    def member_key(self, row: Row) -> str | None:
        """Map the row here (once) and key it by its normalised identifier."""
        try:
            mapped = map_user_record(row.data, self.options)
        except RowError as exc:
            row.prepared = exc
            return None
        row.prepared = mapped
        return mapped.user_id

    def process(self, row: Row) -> Outcome:
        """Write one row; returns its outcome (rejections included)."""
        prepared = row.prepared
        if prepared is None:
            self.member_key(row)
            prepared = row.prepared
        if isinstance(prepared, RowError):
            return Outcome.rejected(self._raw_member(row), prepared.reason_class, prepared.message)
        assert isinstance(prepared, MappedUser)
        mapped = prepared
        member = self._mask(mapped.user_id)
        mode = row.stream.sync_mode
        if self.cfg.dry_run:
            return self._dry_run(mapped, member, mode)
        if mode == UPDATE:
            return self._update(mapped, member, create_on_missing=False)
        if mode == INSERT:
            return self._create(mapped, member, update_on_taken=False)
        return self._upsert(mapped, member)

    # -- modes ----------------------------------------------------------------------------------

    def _upsert(self, mapped: MappedUser, member: str) -> Outcome:
        if self.learner.create_first() and self.id_type != "id":
            try:
                body = create_payload(mapped, self.id_type)
            except RowError:
                body = None
            # A row that could not be created anyway (e.g. a partial update without names) goes
            # update-first: trying a create would only waste a request.
            if body is not None and not validate_user(body, creating=True, require_location=self.cfg.require_location):
                return self._create(mapped, member, update_on_taken=True, body=body)
        return self._update(mapped, member, create_on_missing=True)

    def _update(self, mapped: MappedUser, member: str, *, create_on_missing: bool) -> Outcome:
        problems = validate_user(mapped.payload, creating=False, require_location=self.cfg.require_location)
        if problems:
            return _rejected_by_problems(member, problems)
        if not mapped.payload:
            if create_on_missing:
                # Nothing to update, but an upsert row must still make sure the member exists.
                return self._create(mapped, member, update_on_taken=False, missing_ok=True)
            return Outcome(kind=UNCHANGED, member=member, message="no field to update besides user_id")
        response = self.client.update_user(mapped.user_id, self.id_type, mapped.payload)
        if response.ok:
            if create_on_missing:
                self.learner.observe(existed=True)
            return Outcome(kind=UPDATED, member=member, status=response.status)
        outcome, resolution_reason = self._classify(response, member)
        if resolution_reason == "not_found" and create_on_missing:
            self.learner.observe(existed=False)
            return self._create(mapped, member, update_on_taken=False, known_missing=True)
        if resolution_reason == "not_found":
            return Outcome.rejected(
                member,
                "not_found",
                f"No member with this {self.id_type} exists, and sync mode 'update' never creates members. "
                "Check that user_id holds the configured identifier type, or use upsert (append_dedup) to create "
                "missing members.",
                response.status,
            )
        return outcome

    def _create(
        self,
        mapped: MappedUser,
        member: str,
        *,
        update_on_taken: bool,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
        known_missing: bool = False,
    ) -> Outcome:
        if self.id_type == "id":
            return Outcome.rejected(
                member,
                "not_found",
                "No member with this CrowdTwist id exists, and members cannot be created by CrowdTwist id "
                "(CrowdTwist assigns ids). Use email, third_party_id, username or mobile_phone_number as the "
                "identifier type to create members.",
                404 if not missing_ok else None,
            )
        if body is None:
            try:
                body = create_payload(mapped, self.id_type)
            except RowError as exc:
                return Outcome.rejected(member, exc.reason_class, exc.message)
            problems = validate_user(body, creating=True, require_location=self.cfg.require_location)
            if problems:
                # Say "does not exist" only when an update just proved it (insert mode never looks).
                prefix = "The member does not exist and cannot be created: " if known_missing else ""
                return _rejected_by_problems(member, problems, prefix=prefix)
        response = self.client.create_user(body)
        if response.ok:
            if update_on_taken:
                self.learner.observe(existed=False)
            return Outcome(kind=CREATED, member=member, status=response.status)
        outcome, reason = self._classify(response, member)
        if reason == "already_taken" and update_on_taken:
            self.learner.observe(existed=True)
            if not mapped.payload:
                return Outcome(kind=UNCHANGED, member=member, message="member exists; no field to update")
            return self._update(mapped, member, create_on_missing=False)
        if reason == "already_taken" and missing_ok:
            return Outcome(kind=UNCHANGED, member=member, message="member exists; no field to update")
        return outcome

    def _dry_run(self, mapped: MappedUser, member: str, mode: str) -> Outcome:
        problems = validate_user(mapped.payload, creating=False, require_location=self.cfg.require_location)
        if problems:
            return _rejected_by_problems(member, problems)
        response = self.client.get_user(mapped.user_id, self.id_type)
        if response.ok:
            if mode == INSERT:
                return Outcome.rejected(
                    member,
                    "already_taken",
                    "This member already exists; sync mode insert (append) would be refused. Use upsert or update.",
                    409,
                )
            profile = response.data if isinstance(response.data, Mapping) else {}
            changes = _changed_fields(profile, mapped.payload)
            return Outcome(kind=WOULD_UPDATE, member=member, changes=changes)
        _outcome, reason = self._classify(response, member)
        if reason != "not_found":
            return _outcome
        if mode == UPDATE:
            return Outcome.rejected(
                member, "not_found", "No member with this identifier exists; update would skip it.", 404
            )
        if self.id_type == "id":
            return Outcome.rejected(
                member,
                "not_found",
                "No member with this CrowdTwist id exists and ids cannot be used to create members.",
                404,
            )
        try:
            body = create_payload(mapped, self.id_type)
        except RowError as exc:
            return Outcome.rejected(member, exc.reason_class, exc.message)
        problems = validate_user(body, creating=True, require_location=self.cfg.require_location)
        if problems:
            return _rejected_by_problems(member, problems, prefix="The member does not exist and cannot be created: ")
        return Outcome(kind=WOULD_CREATE, member=member, changes=tuple(sorted(body)))

    # -- helpers --------------------------------------------------------------------------------

    def _classify(self, response: ApiResponse, member: str) -> tuple[Outcome, str]:
        reason, text = rejection(response)
        return Outcome.rejected(member, reason, text, response.status), reason

    def _mask(self, user_id: str) -> str:
        return member_label(user_id, self.id_type, log_pii=self.cfg.log_pii)

    def _raw_member(self, row: Row) -> str:
        return member_label(row.data.get("user_id"), self.id_type, log_pii=self.cfg.log_pii)


def _rejected_by_problems(member: str, problems: list[Any], *, prefix: str = "") -> Outcome:
    reason = "location" if all(p.reason_class == "location" for p in problems) else "validation"
    # Problem messages usually name their field already; say it only when they do not.
    message = prefix + "; ".join(
        p.message if p.message.startswith(p.field) else f"{p.field}: {p.message}" for p in problems
    )
    return Outcome.rejected(member, reason, message)


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
