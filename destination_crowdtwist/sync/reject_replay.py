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

Pure: lines in, messages out; the CLI shell lives in ``destination.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from destination_crowdtwist.records.rejection import Reason

#: Reasons whose stored row is not a record (a preview of a bad line, a too-large placeholder).
NOT_REPLAYABLE = frozenset({str(Reason.INVALID_MESSAGE), str(Reason.TOO_LARGE)})


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


@dataclass
class ReplayPlan:
    """What :func:`plan_replay` selected, and what it left out and why."""

    rows: list[RejectedRow] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def parse_line(text: str, *, as_stream: str | None) -> RejectedRow:
    """One reject line in either layout (see the module docstring); raises ``ReplayRefused``."""
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
    if "_airbyte_data" in line:
        meta = line.get("_airbyte_meta") or {}
        rejection = meta.get("rejection") if isinstance(meta, dict) else None
        reason = rejection.get("reason") if isinstance(rejection, dict) else None
        return RejectedRow(as_stream, None, str(reason or Reason.REJECTED_BY_API), _data(line["_airbyte_data"]),
                           masked=False)
    if "reason_class" in line and "record" in line:
        if "dry_run" in line:
            raise ReplayRefused("a dry run's change lines are not rejected rows")
        name = line.get("name") if "name" in line else line.get("stream")
        return RejectedRow(
            name if isinstance(name, str) else None,
            line.get("namespace") if isinstance(line.get("namespace"), str) else None,
            str(line["reason_class"]),
            _data(line["record"]),
            # Files written before the "pii" field existed are masked unless proven otherwise.
            masked=line.get("pii") is not True,
        )
    raise ReplayRefused("a line is in neither rejected-rows layout (rejected_records_path, object storage JSONL)")


def _data(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ReplayRefused("a rejected row holds no record object")
    return value


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
        row = parse_line(text, as_stream=as_stream)
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
