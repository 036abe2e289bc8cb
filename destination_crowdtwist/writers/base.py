"""What every writer shares: the row it receives and the one outcome it returns.

A writer turns one record into exactly one :class:`Outcome`. It runs in a worker thread, so it
must keep no unsynchronised shared state; the pipeline guarantees that two rows with the same
:meth:`Writer.member_key` are never processed at the same time and are processed in input order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from destination_crowdtwist.api.errors import Action, ConfigError, TransientError
from destination_crowdtwist.records.masking import mask_identifier

if TYPE_CHECKING:
    from destination_crowdtwist.api.client import ApiResponse

# Outcome kinds. Accepted kinds count in destinationStats.recordCount; "rejected" counts in
# rejectedRecordCount.
CREATED = "created"
UPDATED = "updated"
CREDITED = "credited"
DUPLICATE = "duplicate"  # activity already credited (by us earlier, or CrowdTwist said so)
NOT_AWARDED = "not_awarded"  # accepted by CrowdTwist but blocked (e.g. a frequency cap)
WOULD_CREATE = "would_create"  # dry run
WOULD_UPDATE = "would_update"  # dry run
WOULD_CREDIT = "would_credit"  # dry run
UNCHANGED = "unchanged"  # nothing needed sending (e.g. only user_id, member exists)
REJECTED = "rejected"

ACCEPTED_KINDS = frozenset(
    {CREATED, UPDATED, UNCHANGED, CREDITED, DUPLICATE, NOT_AWARDED, WOULD_CREATE, WOULD_UPDATE, WOULD_CREDIT}
)


@dataclass(frozen=True)
class StreamContext:
    """A configured stream as the writers see it."""

    namespace: str | None
    name: str
    sync_mode: str  # the destination sync mode value: append | append_dedup | update
    primary_key: tuple[tuple[str, ...], ...] = ()

    @property
    def key(self) -> tuple[str | None, str]:
        """(namespace, name), the key used in checkpoint stats."""
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        """Human-readable stream name for logs."""
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


@dataclass
class Row:
    """One record on its way through the pipeline."""

    stream: StreamContext
    data: Mapping[str, Any]
    seq: int  # position in the input (0-based, all streams)
    ticket: int = 0  # checkpoint segment
    verify: bool = False  # activity credits: look up history before crediting (replay window)
    member: str | None = None  # member key for ordering (set by the pipeline)
    prepared: Any = None  # what the writer computed in member_key (mapped row or its error)


@dataclass(frozen=True)
class Outcome:
    """How one row ended. Exactly one per row."""

    kind: str
    member: str = ""  # masked identifier, safe to log
    reason_class: str | None = None
    message: str | None = None
    status: int | None = None
    changes: tuple[str, ...] = ()  # dry run: fields that would change
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """Whether the row counts as settled-accepted."""
        return self.kind in ACCEPTED_KINDS

    @classmethod
    def rejected(cls, member: str, reason_class: str, message: str, status: int | None = None) -> Outcome:
        """A rejected row with a reason class and an actionable message."""
        return cls(kind=REJECTED, member=member, reason_class=reason_class, message=message, status=status)


class Writer(Protocol):
    """One writer per CrowdTwist object type."""

    def prepare(self) -> None:
        """Run once before the first row (e.g. read the active activities). May raise ConfigError."""

    def member_key(self, row: Row) -> str | None:
        """Key of the member a row touches; rows with the same key are applied in order."""

    def process(self, row: Row) -> Outcome:
        """Write one row and say how it ended. Raises only for sync-stopping errors."""

    def close(self) -> None:
        """Release resources at the end of the sync."""


def rejection(response: ApiResponse) -> tuple[str, str]:
    """``(reason_class, actionable message)`` for a record-level CrowdTwist answer.

    Answers that concern every row (credentials, base URL) raise the matching sync-stopping error
    instead: rejecting row after row would only hide the real problem.
    """
    resolution = response.resolution
    if resolution.action is Action.CONFIG:
        raise ConfigError(
            resolution.hint,
            status=response.status,
            error_code=response.error_code,
            api_message=response.safe_message,
            request_line=response.request_line,
        )
    if resolution.action is not Action.REJECT:
        # The client retries RETRY answers itself and returns only 2xx and record-level 4xx.
        raise TransientError(
            f"Unexpected answer HTTP {response.status} from CrowdTwist", status=response.status,
            request_line=response.request_line,
        )
    refused = response.rejection()
    return refused.reason.value, refused.message


def member_label(value: Any, id_type: str, *, log_pii: bool) -> str:
    """How a row's member is named in logs, reject files and summaries (masked unless ``log_pii``)."""
    if value is None or value == "":
        return "(no user_id)"
    text = str(value)
    return text if log_pii else mask_identifier(text, id_type)
