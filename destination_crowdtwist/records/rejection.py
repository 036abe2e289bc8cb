"""Why a row cannot be written: one type, :class:`Rejection`, with a :class:`Reason` from a closed set.

Every layer that can refuse a row (coercion, mapping, pre-flight validation, the parsers of the
writers, CrowdTwist's own answers through the error table) produces this one type, so reject files,
summaries and state counts never have to translate between several "bad row" shapes.

A ``Rejection`` is an exception so the pure parsers can raise it from deep inside a conversion; the
writers return it (wrapped in an ``Outcome``) rather than letting it escape.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """The reason classes users see in reject files, summaries and logs (docs/crowdtwist.md)."""

    VALIDATION = "validation"  # a value CrowdTwist would refuse (format, length, type)
    LOCATION = "location"  # US postal code, or country with city, is missing or invalid
    MISSING_IDENTIFIER = "missing_identifier"  # no usable member identifier in the row
    NOT_FOUND = "not_found"  # the member does not exist (update mode, credits)
    ALREADY_TAKEN = "already_taken"  # a unique value belongs to another member (insert mode)
    CUSTOM_ATTRIBUTE = "custom_attribute"  # custom_data key not configured in Control Center
    INVALID_ACTIVITY = "invalid_activity"  # activity_id is not an active activity
    DUPLICATE_EVENT = "duplicate_event"  # CrowdTwist: "Event already processed" (not a failure)
    INVALID_MESSAGE = "invalid_message"  # an input line that is not a usable Airbyte RECORD
    TOO_LARGE = "too_large"  # a record above the size or nesting limits
    REJECTED_BY_API = "rejected_by_api"  # any other record-level refusal by CrowdTwist


class Rejection(Exception):
    """One row that cannot be written, and why. The sync goes on.

    ``message`` says what to fix; it names the field and at most the value's *type*, never the value
    itself, because it is logged and written to reject files. ``status`` is CrowdTwist's HTTP status
    when CrowdTwist refused the row, None when the connector refused it before any request.
    """

    def __init__(self, reason: Reason, message: str, *, field: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = Reason(reason)
        self.message = message
        self.field = field
        self.status = status

    def with_prefix(self, prefix: str) -> Rejection:
        """The same rejection with ``prefix`` put before the message (adds context, e.g. the mode)."""
        return Rejection(self.reason, prefix + self.message, field=self.field, status=self.status)

    def with_field(self, field: str) -> Rejection:
        """The same rejection attributed to ``field`` (e.g. a nested path the caller knows)."""
        return Rejection(self.reason, self.message, field=field, status=self.status)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rejection):
            return NotImplemented
        return (self.reason, self.message, self.field, self.status) == (
            other.reason, other.message, other.field, other.status
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.message, self.field, self.status))

    def __repr__(self) -> str:
        return f"Rejection({self.reason.value!r}, {self.message!r}, field={self.field!r}, status={self.status!r})"
