"""Rejected rows back into a sync: ``destination-crowdtwist replay-rejects FILE ...``.

A row rejected for a reason fixed outside the data (a custom attribute set up in Control Center
afterwards, an activity activated late, a member created since) does not come back by itself: an
incremental source has moved past it. This turns the rejected rows a sync stored into RECORD
messages for ``write``, so they can be sent again with the same config and catalog::

    destination-crowdtwist replay-rejects rejected.jsonl --reason custom_attribute |
      destination-crowdtwist write --config config.json --catalog catalog.json

Two layouts are read, one JSON object per line (``.gz`` files are decompressed):

* the local file (``rejected_records_path``): only lines written with
  ``rejected_records_include_pii`` hold the row as received; a masked row is never replayed (it
  would send masked values to CrowdTwist), and a file holding any is refused as a whole;
* Airbyte's object-storage layout (``object_storage_config``, JSONL): ``_airbyte_data`` is the row as
  received; these objects are per stream and their lines do not name it, so ``--as-stream`` does.

Rows rejected as ``invalid_message`` or ``too_large`` hold a preview or a placeholder, not a
record, and are never replayed. Activity credits stay exactly-once: a replayed credit carries the
same dedupe key and is verified as ``credit_verification`` says.

Pure: lines in, messages out (each line read by ``rejects/schema.read_line``, where the layouts are
written too); the CLI shell is ``run.py``'s ``replay-rejects``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.rejects.schema import RejectedRow, ReplayRefused, read_line

__all__ = ["NOT_REPLAYABLE", "RejectedRow", "ReplayPlan", "ReplayRefused", "plan_replay", "record_messages"]

#: Reasons whose stored row is not a record (a preview of a bad line, a too-large placeholder).
NOT_REPLAYABLE = frozenset({str(Reason.INVALID_MESSAGE), str(Reason.TOO_LARGE)})


@dataclass
class ReplayPlan:
    """What :func:`plan_replay` selected, and what it left out and why."""

    rows: list[RejectedRow] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def plan_replay(
    lines: Iterable[str], *, reasons: frozenset[str] | None = None, stream: str | None = None,
    as_stream: str | None = None,
) -> ReplayPlan:
    """Select the rows to replay: by ``reasons`` and ``stream`` (its name), never a row that is not a
    record. Raises ``ReplayRefused`` when a selected row is masked or names no stream.
    """
    plan = ReplayPlan()
    masked = 0
    for text in lines:
        if not text.strip():
            continue
        row = read_line(text, as_stream=as_stream)
        if row.reason in NOT_REPLAYABLE:
            plan.skipped[f"{row.reason} (no record to send)"] += 1
        elif reasons is not None and row.reason not in reasons:
            plan.skipped["another reason"] += 1
        elif stream is not None and row.name != stream:
            plan.skipped["another stream"] += 1
        elif row.masked:
            masked += 1
        elif row.name is None:
            raise ReplayRefused("these lines do not name their stream (object storage layout): pass --as-stream NAME")
        else:
            plan.rows.append(row)
    if masked:
        raise ReplayRefused(
            f"{masked} selected rows are masked (the file was written without rejected_records_include_pii): "
            "sending them would write masked values to CrowdTwist. Replay the rows from your bucket "
            "(object_storage_config) or from a file written with rejected_records_include_pii: true."
        )
    return plan


def record_messages(rows: Iterable[RejectedRow], *, emitted_at: int) -> Iterator[dict[str, Any]]:
    """One Airbyte RECORD message per row, for ``write``'s standard input."""
    for row in rows:
        record: dict[str, Any] = {"stream": row.name, "data": dict(row.data), "emitted_at": emitted_at}
        if row.namespace is not None:
            record["namespace"] = row.namespace
        yield {"type": "RECORD", "record": record}
