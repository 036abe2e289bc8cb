"""Why a row cannot be written: one type, :class:`Rejection`, with a :class:`Reason` from a closed set.

Every layer that can refuse a row (coercion, mapping, pre-flight validation, the parsers of the
writers, CrowdTwist's own answers through the error table) produces this one type, so reject files,
summaries and state counts never have to translate between several "bad row" shapes.

A ``Rejection`` is an exception so the pure parsers can raise it from deep inside a conversion; the
writers return it (wrapped in an ``Outcome``) rather than letting it escape.

Its message keeps two kinds of text apart: the connector's own guidance ("postal_code must be a US
ZIP code (5 digits, or ZIP+4 as 12345-6789)"), safe and shown as written, and `Quoted` pieces that
came from the row or from CrowdTwist (an unknown custom field's name, an activity id, CrowdTwist's
message, which may echo the whole input). ``text(masked=True)`` masks only the quoted pieces, so the
guidance stays readable and nothing personal gets through.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.records.masking import mask_field_value, mask_free_text, mask_key_path


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
    CANNOT_ERASE = "cannot_erase"  # CrowdTwist refused to erase the member (e.g. inactive with points)
    REJECTED_BY_API = "rejected_by_api"  # any other record-level refusal by CrowdTwist


class Source(enum.Enum):
    """Where a quoted piece of a rejection message came from, which says how it is masked."""

    KEY = "key"  # a field name or object key of the row (masked unless it names a field)
    VALUE = "value"  # a value of the row (masked as `mask_record` masks it under its field)
    SERVER = "server"  # CrowdTwist's message text: it may echo any input (masked word by word)


@dataclass(frozen=True)
class Quoted:
    """A piece of a rejection message that came from the row or the server, not from the connector."""

    text: str
    source: Source
    field: str = ""  # for VALUE: the field it came from (an allow-listed one may stay readable)

    def masked(self) -> str:
        """The piece as a masked reject file or log may show it."""
        if self.source is Source.KEY:
            return mask_key_path(self.text)
        if self.source is Source.VALUE:
            value: Any = mask_field_value(self.field, self.text)
            return str(value)
        return mask_free_text(self.text)


def key(name: str) -> Quoted:
    """A row's field name or object key, quoted in a message."""
    return Quoted(name, Source.KEY)


def value(text: Any, field: str) -> Quoted:
    """A row's value of ``field``, quoted in a message."""
    return Quoted(str(text), Source.VALUE, field)


def server(text: str) -> Quoted:
    """CrowdTwist's own message text, quoted in a rejection."""
    return Quoted(text, Source.SERVER)


Part = str | Quoted


class Rejection(Exception):
    """One row that cannot be written, and why. The sync goes on.

    ``message`` says what to fix: the connector's guidance, with anything from the row or the server
    kept apart as `Quoted` parts (``parts``), so that `text` can mask exactly those; never put a
    row's value into the plain text. ``message`` is the whole text as written (unmasked), for reject
    files kept with PII. ``status`` is CrowdTwist's HTTP status when CrowdTwist refused the row, None
    when the connector refused it before any request. ``field`` may be a key of the row:
    `masked_field` is what a masked output may show.
    """

    def __init__(
        self, reason: Reason, message: str | Sequence[Part], *, field: str | None = None, status: int | None = None
    ) -> None:
        parts: tuple[Part, ...] = (message,) if isinstance(message, str) else tuple(message)
        text = "".join(part if isinstance(part, str) else part.text for part in parts)
        super().__init__(text)
        self.reason = Reason(reason)
        self.parts = parts
        self.message = text
        self.field = field
        self.status = status

    def text(self, *, masked: bool) -> str:
        """The message; with ``masked`` every quoted piece masked and the guidance as written."""
        if not masked:
            return self.message
        return "".join(part if isinstance(part, str) else part.masked() for part in self.parts)

    @property
    def masked_field(self) -> str | None:
        """``field`` with the names that do not name a field masked (``custom_data.***``)."""
        return None if self.field is None else key(self.field).masked()

    def with_prefix(self, prefix: str) -> Rejection:
        """The same rejection with ``prefix`` put before the message (adds context, e.g. the mode)."""
        return Rejection(self.reason, (prefix, *self.parts), field=self.field, status=self.status)

    def with_suffix(self, suffix: str) -> Rejection:
        """The same rejection with ``suffix`` (connector text) after the message."""
        return Rejection(self.reason, (*self.parts, suffix), field=self.field, status=self.status)

    def with_field(self, field: str) -> Rejection:
        """The same rejection attributed to ``field`` (e.g. a nested path the caller knows)."""
        return Rejection(self.reason, self.parts, field=field, status=self.status)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rejection):
            return NotImplemented
        # The text as written: two rejections that say the same are the same, however it was built.
        return (self.reason, self.message, self.field, self.status) == (
            other.reason, other.message, other.field, other.status
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.message, self.field, self.status))

    def __repr__(self) -> str:
        return f"Rejection({self.reason.value!r}, {self.message!r}, field={self.field!r}, status={self.status!r})"
