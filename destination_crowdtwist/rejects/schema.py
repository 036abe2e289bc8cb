"""The rejected-row lines, written and read here only.

Two layouts, one JSON object per line:

* the local file (``rejected_records_path``, :class:`LocalLine`): the stream, the row's place in the
  input, the masked member, the reason and message, and the record (masked unless
  ``rejected_records_include_pii``; ``pii`` says which). A dry run writes :class:`ChangeLine` instead;
* Airbyte's object-storage layout (``object_storage_config``, :class:`BucketLine`)::

    {"_airbyte_raw_id": "…", "_airbyte_extracted_at": 1764400000000, "_airbyte_generation_id": 3,
     "_airbyte_meta": {"sync_id": 42, "changes": [],
                       "rejection": {"reason": "location", "message": "…", "http_status": null,
                                     "field": "postal_code"}},
     "_airbyte_data": {…the record as received…}}

The field names are the ``Final`` constants below, which the ``TypedDict`` s spell out (mypy checks
every line built here against them, and a test checks that the constants and the keys agree).
:func:`read_line` turns either layout back into a :class:`RejectedRow` for ``replay-rejects``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from destination_crowdtwist.records.masking import mask_key_path, mask_record
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.writers.base import Outcome, Row

# --- the local file (rejected_records_path) ---------------------------------------------------------------

STREAM: Final = "stream"
ROW: Final = "row"
USER: Final = "user"
REASON_CLASS: Final = "reason_class"
MESSAGE: Final = "message"
HTTP_STATUS: Final = "http_status"
RECORD: Final = "record"
NAMESPACE: Final = "namespace"
NAME: Final = "name"
PII: Final = "pii"
DRY_RUN: Final = "dry_run"
CHANGES: Final = "changes"


class LocalLine(TypedDict):
    """One rejected row in the local file."""

    stream: str  # the stream's label (namespace.name), for people
    row: int
    user: str
    reason_class: str
    message: str
    http_status: int | None
    record: Mapping[str, Any]
    # What `destination-crowdtwist replay-rejects` needs: the stream as the catalog names it, and
    # whether "record" is the row as received (a masked one must never be sent again).
    namespace: str | None
    name: str
    pii: bool


class ChangeLine(TypedDict):
    """One dry-run row in the local file: the fields it would change (never their values)."""

    stream: str
    row: int
    user: str
    dry_run: str
    changes: list[str]


def local_line(row: Row, outcome: Outcome, *, include_pii: bool) -> LocalLine:
    """The local file's line for a rejected row; masked unless ``include_pii``.

    Masked: the row's values and keys, and what came from the row or CrowdTwist's message (which may
    echo the input) in the message; the connector's guidance stays readable.
    """
    return {
        STREAM: row.stream.label,
        ROW: row.seq,
        USER: outcome.member,
        REASON_CLASS: str(outcome.reason or Reason.REJECTED_BY_API),
        MESSAGE: outcome.text(masked=not include_pii),
        HTTP_STATUS: outcome.status,
        RECORD: row.data if include_pii else mask_record(row.data),
        NAMESPACE: row.stream.namespace,
        NAME: row.stream.name,
        PII: include_pii,
    }


def change_line(row: Row, outcome: Outcome, *, include_pii: bool) -> ChangeLine:
    """The local file's line for a dry-run row: field names can be the row's keys (custom_data.<name>),
    so they are masked unless ``include_pii``.
    """
    return {
        STREAM: row.stream.label,
        ROW: row.seq,
        USER: outcome.member,
        DRY_RUN: str(outcome.kind),
        CHANGES: [name if include_pii else mask_key_path(name) for name in outcome.changes],
    }


# --- the user's bucket (Airbyte's object-storage layout) ---------------------------------------------------

RAW_ID: Final = "_airbyte_raw_id"
EXTRACTED_AT: Final = "_airbyte_extracted_at"
META: Final = "_airbyte_meta"
GENERATION_ID: Final = "_airbyte_generation_id"
DATA_COLUMN: Final = "_airbyte_data"
#: The columns of Airbyte's object-storage layout, in its order (CSV header, JSONL key order).
AIRBYTE_COLUMNS: Final = (RAW_ID, EXTRACTED_AT, META, GENERATION_ID)
REJECTION: Final = "rejection"


class RejectionMeta(TypedDict):
    """``_airbyte_meta.rejection``: why the row was rejected (masked: metadata is read by people)."""

    reason: str
    message: str
    http_status: int | None
    field: str | None


class BucketMeta(TypedDict):
    """``_airbyte_meta``."""

    sync_id: int
    changes: list[Any]
    rejection: RejectionMeta


class BucketLine(TypedDict):
    """One rejected row in Airbyte's object-storage layout (keys in this order)."""

    _airbyte_raw_id: str
    _airbyte_extracted_at: int | None
    _airbyte_meta: BucketMeta
    _airbyte_generation_id: int
    _airbyte_data: dict[str, Any]


def bucket_line(row: Row, outcome: Outcome, *, new_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> BucketLine:
    """One rejected record in Airbyte's layout (keys in :data:`AIRBYTE_COLUMNS` order, then ``_airbyte_data``).

    ``_airbyte_raw_id`` is the record's own when it carries one (a re-sent row keeps its id), else a
    new UUID. The rejection message and field are masked (they may quote the row's values and keys, and
    CrowdTwist's message may echo the input): ``_airbyte_meta`` is metadata, read by people who never
    asked for the data. ``_airbyte_data`` is the record as received, unmasked: the bucket is the
    user's, and fixing a row needs its data.
    """
    stream = row.stream
    own_id = row.data.get(RAW_ID)
    rejection = outcome.rejection
    return {
        RAW_ID: own_id if isinstance(own_id, str) and own_id else new_id(),
        EXTRACTED_AT: row.emitted_at,
        META: {
            "sync_id": stream.sync_id if stream.sync_id is not None else 0,
            "changes": [],
            REJECTION: {
                "reason": str(outcome.reason or Reason.REJECTED_BY_API),
                "message": outcome.text(masked=True),
                "http_status": outcome.status,
                "field": rejection.masked_field if rejection is not None else None,
            },
        },
        GENERATION_ID: stream.generation_id if stream.generation_id is not None else 0,
        DATA_COLUMN: dict(row.data),
    }


# --- reading either layout back (replay-rejects) ------------------------------------------------------------


class ReplayRefused(ValueError):
    """The reject lines cannot be replayed as asked (masked rows, an unknown layout, no stream)."""


@dataclass(frozen=True)
class RejectedRow:
    """One stored rejected row, whichever layout it came from."""

    name: str | None
    namespace: str | None
    reason: str
    data: Mapping[str, Any]
    masked: bool


def read_line(text: str, *, as_stream: str | None) -> RejectedRow:
    """One reject line in either layout; raises ``ReplayRefused`` for anything else.

    Bucket lines do not name their stream (the objects are per stream): ``as_stream`` does.
    """
    try:
        line = json.loads(text)
    except ValueError:
        raise ReplayRefused("a line is not JSON: is this a rejected-rows file (JSONL)?") from None
    except RecursionError:
        # json.loads recurses once per level: a line nested past Python's limit is no row this
        # connector stored (write rejects rows deeper than max_nesting_depth and keeps no record).
        raise ReplayRefused("a line is nested too deeply to be a rejected row (a damaged or foreign file?)") from None
    if not isinstance(line, dict):
        raise ReplayRefused("a line is not a JSON object: is this a rejected-rows file (JSONL)?")
    if DATA_COLUMN in line:
        meta = line.get(META) or {}
        rejection = meta.get(REJECTION) if isinstance(meta, dict) else None
        reason = rejection.get("reason") if isinstance(rejection, dict) else None
        return RejectedRow(as_stream, None, str(reason or Reason.REJECTED_BY_API), _data(line[DATA_COLUMN]),
                           masked=False)
    if REASON_CLASS in line and RECORD in line:
        if DRY_RUN in line:
            raise ReplayRefused("a dry run's change lines are not rejected rows")
        # Files written before "name" existed name the stream by its label only.
        name = line.get(NAME) if NAME in line else line.get(STREAM)
        namespace = line.get(NAMESPACE)
        return RejectedRow(
            name if isinstance(name, str) else None,
            namespace if isinstance(namespace, str) else None,
            str(line[REASON_CLASS]),
            _data(line[RECORD]),
            # Files written before the "pii" field existed are masked unless proven otherwise.
            masked=line.get(PII) is not True,
        )
    raise ReplayRefused("a line is in neither rejected-rows layout (rejected_records_path, object storage JSONL)")


def _data(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ReplayRefused("a rejected row holds no record object")
    return value
