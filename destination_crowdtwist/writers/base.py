"""The contract between the pipeline and the writers: what a writer receives, and what it returns.

A sync routes each configured stream to one CrowdTwist object (``user_profile`` or
``activity_credit``); one :class:`Writer` per object serves every stream routed to it. For each record
the pipeline calls, from one place (``sync/pipeline.py``):

1. :meth:`Writer.prepare` on the reader thread, in input order: parse and validate the record
   without any request. It returns a :class:`Prepared` row, whose ``member`` key orders the rows of
   one member, or a settled :class:`Outcome` (a rejection, or a row that needs no request).
   When no other row of its member is inside the pipeline, :meth:`Writer.settle_at_once` may then
   settle it on the reader thread (a row the member index shows was written already), sparing
   the hand-over to a worker.
2. :meth:`Writer.apply` on a worker thread: send what the row needs and return exactly one
   :class:`Outcome`. Raises only for sync-stopping errors (``ConfigError``, ``TransientError``).

3. :meth:`Writer.checkpoint` on the main thread, right before states are echoed: make durable
   whatever local record the settled rows wrote (e.g. the member index), so that no echoed state
   covers a row whose record could still be lost.

The pipeline guarantees that two rows with the same member key are never applied at the same time
and are applied in input order, whichever streams they come from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.masking import mask_free_text, mask_identifier
from destination_crowdtwist.records.rejection import Reason, Rejection

if TYPE_CHECKING:
    from destination_crowdtwist.api.response import ApiResponse

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)


class OutcomeKind(enum.StrEnum):
    """How a row ended. Every kind but ``rejected`` counts in ``destinationStats.recordCount``."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"  # nothing needed sending (e.g. only the identifier, member exists)
    CREDITED = "credited"
    DUPLICATE = "duplicate"  # activity already credited (by us earlier, or CrowdTwist said so)
    NOT_AWARDED = "not_awarded"  # accepted by CrowdTwist but blocked (e.g. a frequency cap)
    WOULD_CREATE = "would_create"  # dry run
    WOULD_UPDATE = "would_update"  # dry run
    WOULD_CREDIT = "would_credit"  # dry run
    DEACTIVATED = "deactivated"  # soft_delete: is_active=0 (and remove_points=1 if asked) accepted
    ERASE_QUEUED = "erase_queued"  # soft_delete: CrowdTwist queued the member's erasure
    ALREADY_GONE = "already_gone"  # soft_delete: no such member (404): nothing left to remove
    WOULD_DEACTIVATE = "would_deactivate"  # dry run of a soft_delete row
    WOULD_ERASE = "would_erase"  # dry run of a soft_delete row
    REJECTED = "rejected"  # counts in rejectedRecordCount


@dataclass(frozen=True)
class StreamContext:
    """A configured stream as the writers see it: where its rows go and how members are identified.

    ``id_field`` is the record field that holds the member identifier (``user_id`` in classic mode,
    the matching key such as ``email_address`` in data activation) and ``id_type`` its CrowdTwist
    ``id_type``.
    """

    namespace: str | None
    name: str
    sync_mode: str  # the destination sync mode value: append | append_dedup | update | soft_delete
    object_name: str = "user_profile"
    id_field: str = "user_id"
    id_type: str = "email"
    primary_key: tuple[tuple[str, ...], ...] = ()
    # The configured stream's sync_id and generation_id (None when the catalog has none); reject
    # sinks put them in rejected rows' metadata and object paths.
    sync_id: int | None = None
    generation_id: int | None = None

    @property
    def key(self) -> tuple[str | None, str]:
        """(namespace, name), the key used in checkpoint stats."""
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        """Human-readable stream name for logs."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Row:
    """One record as read from the input."""

    stream: StreamContext
    data: Mapping[str, Any]
    seq: int  # position in the input (0-based, all streams)
    verify: bool = False  # look first whether a replayed attempt applied it already (sync/replay_policy.py)
    emitted_at: int | None = None  # the record's emitted_at (ms), kept for reject sinks


@dataclass(frozen=True)
class Prepared(Generic[P_co]):
    """A row that passed its writer's pre-flight checks, ready to be applied.

    ``member`` orders the rows of one member (the same key in every stream of the sync); ``label``
    names the member in logs, masked unless ``log_pii``; ``payload`` is the writer's own parse (read
    only, so a ``Prepared[DeleteRow]`` is a ``Prepared[UserRow | DeleteRow]``).
    """

    row: Row
    member: str
    label: str
    payload: P_co


@dataclass(frozen=True)
class Outcome:
    """How one row ended. Exactly one per row; rejected rows carry their :class:`Rejection`."""

    kind: OutcomeKind
    member: str = ""  # masked identifier, safe to log
    message: str | None = None
    status: int | None = None
    changes: tuple[str, ...] = ()  # dry run: fields that would change
    rejection: Rejection | None = None

    @property
    def accepted(self) -> bool:
        """Whether the row counts as settled-accepted (``recordCount``), not rejected."""
        return self.kind is not OutcomeKind.REJECTED

    @property
    def reason(self) -> Reason | None:
        """The reason class of a rejected row (None for accepted rows)."""
        return self.rejection.reason if self.rejection is not None else None

    def text(self, *, masked: bool) -> str:
        """The message for a log or a reject file: with ``masked``, what came from the row or the
        server is masked and the connector's guidance kept (`Rejection.text`).
        """
        if self.rejection is not None:
            return self.rejection.text(masked=masked)
        message = self.message or ""
        return mask_free_text(message) if masked else message

    @classmethod
    def rejected(cls, member: str, rejection: Rejection) -> Outcome:
        """A rejected row; its reason and message come from ``rejection``."""
        return cls(
            kind=OutcomeKind.REJECTED,
            member=member,
            message=rejection.message,
            status=rejection.status,
            rejection=rejection,
        )


class StopBeforeRow(ConfigError):
    """A sync-stopping configuration error found while preparing a row (e.g. the delete guardrail).

    Unlike other errors it does not abandon the rows before it: the pipeline lets every row
    submitted earlier settle first, so the states they complete are echoed exactly, and the row
    itself is never sent.

    ``prepared`` is the row as it would have been sent, and ``summary`` what a dry run, which goes on
    where a real sync stops, reports at its end (``writers/dry_run.py``).
    """

    def __init__(self, message: str, *, prepared: Prepared[object] | None = None, summary: str = "") -> None:
        super().__init__(message)
        self.prepared = prepared
        self.summary = summary


class Writer(Protocol[P]):
    """One writer per CrowdTwist object; the pipeline relies on exactly these members.

    ``P`` is the writer's own parse of a row (``Prepared.payload``): what ``prepare`` makes is what
    ``apply`` takes.
    """

    def start(self) -> None:
        """Run once before the first row (e.g. read the active activities). May raise ConfigError."""

    def prepare(self, row: Row) -> Prepared[P] | Outcome:
        """Parse and check one row without a request: a ``Prepared`` row, or its settled ``Outcome``."""

    def settle_at_once(self, prepared: Prepared[P]) -> Outcome | None:
        """The row's outcome when it needs no request, decided on the reader thread; else None.

        Called only while no other row of ``prepared.member`` is queued, in flight or waiting, so what
        the writer knows of the member cannot change before the row would run. Returning None must
        change and count nothing: the row then goes to a worker, and ``apply`` decides again.
        """

    def apply(self, prepared: Prepared[P]) -> Outcome:
        """Write one prepared row and say how it ended. Raises only for sync-stopping errors."""

    def checkpoint(self) -> None:
        """Make durable what the rows settled so far recorded locally; called before states are echoed.

        Rows still in flight may be covered too (a record is only ever made after CrowdTwist
        accepted the write). May raise ConfigError (e.g. a local file that cannot be written).
        """

    def finish(self) -> None:
        """After the last state of a sync that ran to its end: follow-ups that only report (e.g. the
        status of erasures queued). Not called when the sync stops on an error or a signal.
        """

    def close(self) -> None:
        """Release resources at the end of the sync."""


def member_label(value: Any, id_type: str, *, log_pii: bool) -> str:
    """How a row's member is named in logs, reject files and summaries (masked unless ``log_pii``)."""
    if value is None or value == "":
        return "(no identifier)"
    text = str(value)
    return text if log_pii else mask_identifier(text, id_type)


def member_key(id_type: str, user_id: str) -> str:
    """The ordering key of a member, the same in every stream that identifies it the same way."""
    return f"{id_type}:{user_id}"


def raw_label(row: Row, *, log_pii: bool) -> str:
    """The label of a row whose identifier could not be parsed (taken raw from its id field)."""
    return member_label(row.data.get(row.stream.id_field), row.stream.id_type, log_pii=log_pii)


def api_rejection(response: ApiResponse, *, advice: Mapping[Reason, str] | None = None) -> Rejection:
    """The row's rejection for a refusal (a REJECT answer: the API raises for every other answer that
    is not OK, see ``api/protocol.py``), carrying CrowdTwist's message and the error table's hint.

    ``advice`` replaces both for the reasons whose advice depends on what the writer was doing: "not
    found" means "sync mode update never creates members" to an update-only row, and "sync the member's
    profile first" to a credit, where the table can only say "use upsert".
    """
    reason = response.resolution.reason
    if advice is not None and reason is not None and reason in advice:
        return Rejection(reason, advice[reason], status=response.status)
    return response.rejection()
