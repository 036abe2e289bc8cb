"""User Profile writer: upsert, insert and update CrowdTwist members, one row at a time.

Sync modes (from the catalog): ``append_dedup`` = upsert, ``append`` = insert, ``update`` = update,
``soft_delete`` = remove the member as ``delete_behaviour`` says (``writers/removal.py``, with its
guardrail; this writer only hands those rows over, with its member index).

A row is mapped and coerced in ``prepare`` (``records/mapping.py``), then checked
(``records/user_payload.checked_payloads``: the custom-field allow-list and pre-flight validation), which
gives the update body and the create body (or why the member cannot be created), so no request is spent
on a row CrowdTwist would refuse. With a member index that skips unchanged rows, the check waits until
the row is known to need sending (``writers/upsert.py``): a row the index shows unchanged is never
checked, since CrowdTwist holds its values (most rows of a re-sync). It is
applied by ``writers/upsert.py`` (the requests each mode makes; upsert starts with the cheaper guess
of ``writers/learner.py``), with what the member index knows (``writers/known_members.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping

from destination_crowdtwist.api.protocol import CrowdTwistApi
from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.mapping import MappedUser, MappingOptions, map_user_record, rules_for_stream
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.records.user_payload import Intent, checked_payloads
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
from destination_crowdtwist.writers.known_members import COUNTS, KnownMembers
from destination_crowdtwist.writers.learner import UpsertLearner
from destination_crowdtwist.writers.profiles import changed_fields
from destination_crowdtwist.writers.removal import DELETE, DeleteRow, MemberRemoval
from destination_crowdtwist.writers.upsert import CANNOT_CREATE, ProfileWrites, UserRow

logger = logging.getLogger("airbyte")

UPSERT = "append_dedup"
INSERT = "append"
UPDATE = "update"

#: What a row of each sync mode may do to its member (``soft_delete`` rows go to removal).
INTENTS = {UPSERT: Intent.EITHER, INSERT: Intent.CREATE, UPDATE: Intent.UPDATE}


class UserProfileWriter:
    """Writes User Profile rows (``Writer[UserRow | DeleteRow]``). See the module docstring."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        api: CrowdTwistApi,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        after_drop: Callable[[], None] | None = None,
        on_created: Callable[[str, str], None] | None = None,
    ) -> None:
        """``clock``: epoch seconds, by which the member index dates and ages its entries; ``sleep``:
        the pauses between erase-status reads (by default the API's wait, which ends when the sync stops);
        ``after_drop``: called after the member index cleared or forgot a member and before the request
        (wiring passes the sync state's flush when the index is a copy of the state in the bucket);
        ``on_created(id_type, user_id)``: a member this sync created (``writers/created_members.py``).
        """
        self.cfg = cfg
        self.api = api
        self._clock = clock
        self._after_drop = after_drop
        self._on_created = on_created
        self.learner = UpsertLearner(cfg.upsert_strategy)
        self._base_options = cfg.mapping_options()
        self._options: dict[tuple[str | None, str], MappingOptions] = {}  # by stream
        self.known: KnownMembers | None = None
        self.removal = MemberRemoval(cfg, api, sleep=sleep)
        self._writes = ProfileWrites(api, self.learner, None, on_created)

    @property
    def index_counts(self) -> dict[str, int]:
        """What the member index decided (``writers/known_members.py``); zeros without an index."""
        return dict(self.known.counts) if self.known is not None else dict.fromkeys(COUNTS, 0)

    # -- Writer protocol ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the member index, if one is configured."""
        if not self.cfg.member_index_path:
            return
        self.known = KnownMembers.open(
            self.cfg.member_index_path, self.cfg.api_base_url, clock=self._clock,
            max_age_days=self.cfg.member_index_max_age_days, skip_unchanged=self.cfg.skip_unchanged,
            after_drop=self._after_drop,
        )
        if self.known.index.has_entries():
            logger.info("User Profile: the member index knows members of this program from earlier syncs.")
            # A member that an index warmed by earlier syncs does not know is most likely new: start
            # unknown members create-first (the learner still switches back if they turn out to exist).
            self.learner = UpsertLearner(self.cfg.upsert_strategy, initial_p_new=0.75)
        else:
            logger.info("User Profile: the member index is empty for this program; this sync fills it.")
        self._writes = ProfileWrites(self.api, self.learner, self.known, self._on_created)

    def start_preview(self) -> None:
        """Nothing to start for a dry run: it never opens the member index."""

    def checkpoint(self) -> None:
        """Commit the member index entries of the rows settled so far (before their state is echoed)."""
        if self.known is not None:
            self.known.commit()

    def finish(self) -> None:
        """After the last state: follow the erasures this sync queued and log what removal did."""
        self.removal.finish()

    def close(self) -> None:
        """Close the member index (committing what is staged) and log what it saved and what upsert guesses cost."""
        if self.known is not None:
            self.known.close()
        guesses = self.learner.summary()
        if guesses is not None:
            logger.info(guesses)

    def prepare(self, row: Row) -> Prepared[UserRow | DeleteRow] | Outcome:
        """Map and pre-flight one row; no request is spent on a row CrowdTwist would refuse."""
        stream = row.stream
        options = self._options_for(stream)
        if stream.sync_mode == DELETE:
            return self.removal.prepare(row, options)
        intent = INTENTS.get(stream.sync_mode, Intent.EITHER)
        try:
            mapped = map_user_record(row.data, options)
        except Rejection as rejection:
            return Outcome.rejected(raw_label(row, log_pii=self.cfg.log_pii), rejection)
        label = member_label(mapped.user_id, stream.id_type, log_pii=self.cfg.log_pii)
        key = member_key(stream.id_type, mapped.user_id)
        if self.known is not None and self.cfg.skip_unchanged:
            # The member index may show the row unchanged: then CrowdTwist holds its values, and checking
            # them would be wasted (most rows of a re-sync). The worker checks a row it will send.
            unchecked = functools.partial(self._checked, mapped, stream.id_type, intent)
            return Prepared(row, key, label, UserRow(mapped.user_id, stream.id_type, intent, mapped.payload, None,
                                                     unchecked=unchecked))
        checked = self._checked(mapped, stream.id_type, intent)
        if isinstance(checked, Rejection):
            return Outcome.rejected(label, checked)
        return Prepared(row, key, label, checked)

    def settle_at_once(self, prepared: Prepared[UserRow | DeleteRow]) -> Outcome | None:
        """A row the member index shows was written already (``skip_unchanged``): settled without a worker.

        The pipeline asks only while no other row of the member is inside it, so the entry read here is
        the one the row's ``apply`` would read; a re-sync's unchanged rows then never wait for a thread.
        """
        payload = prepared.payload
        if self.known is None or not isinstance(payload, UserRow):
            return None
        return self.known.skip(payload.id_type, payload.user_id, payload.update, prepared.label)

    def apply(self, prepared: Prepared[UserRow | DeleteRow]) -> Outcome:
        """Write one row; returns its outcome (rejections included)."""
        payload = prepared.payload
        if isinstance(payload, DeleteRow):
            index = self.known.index if self.known is not None else None
            return self.removal.apply(payload, prepared.label, index)
        return self._writes.write(payload, prepared.label)

    def preview(self, prepared: Prepared[UserRow | DeleteRow]) -> Outcome:
        """What ``apply`` would do (a dry run, ``writers/dry_run.py``): one read of the member, no write."""
        payload = prepared.payload
        if isinstance(payload, DeleteRow):
            return self.removal.preview(payload, prepared.label)
        return self._preview(payload, prepared.label)

    # -- helpers --------------------------------------------------------------------------------

    def _preview(self, user: UserRow, label: str) -> Outcome:
        response = self.api.get_user(user.user_id, user.id_type)
        if response.ok:
            if user.intent is Intent.CREATE:
                return Outcome.rejected(label, Rejection(
                    Reason.ALREADY_TAKEN,
                    "This member already exists; sync mode insert (append) would be refused. Use upsert or update.",
                    status=409,
                ))
            profile = response.data if isinstance(response.data, Mapping) else {}
            return Outcome(kind=OutcomeKind.WOULD_UPDATE, member=label, changes=changed_fields(profile, user.update))
        if response.resolution.reason is not Reason.NOT_FOUND:
            return Outcome.rejected(label, api_rejection(response))
        if user.intent is Intent.UPDATE:
            return Outcome.rejected(label, Rejection(
                Reason.NOT_FOUND, "No member with this identifier exists; update would skip it.", status=404
            ))
        if not isinstance(user.create, dict):
            assert user.create is not None  # insert and upsert rows have a create body or its rejection
            return Outcome.rejected(label, user.create.with_prefix(CANNOT_CREATE))
        return Outcome(kind=OutcomeKind.WOULD_CREATE, member=label, changes=tuple(sorted(user.create)))

    def _checked(self, mapped: MappedUser, id_type: str, intent: Intent) -> UserRow | Rejection:
        """The row with its bodies checked (``records/user_payload.py``), or why CrowdTwist would refuse it."""
        payloads = checked_payloads(
            mapped, id_type, intent=intent, custom_attributes=self.cfg.custom_attributes,
            require_location=self.cfg.require_location,
        )
        if payloads.problem is not None:
            return payloads.problem
        return UserRow(payloads.user_id, id_type, intent, payloads.update, payloads.create)

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
