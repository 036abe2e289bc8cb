"""Replaying rejected rows: both stored layouts in, RECORD messages out; masked rows never go out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.rejects import schema
from destination_crowdtwist.rejects.local_file import LocalFileSink
from destination_crowdtwist.rejects.replay import ReplayRefused, plan_replay, record_messages
from destination_crowdtwist.rejects.schema import bucket_line
from destination_crowdtwist.writers.base import Outcome, Row, StreamContext

MEMBERS = StreamContext("crm", "members", "append_dedup")
CREDITS = StreamContext(None, "credits", "append")
ALICE = {"user_id": "alice@example.com", "first_name": "Alice", "tier": "gold"}


def rejected(reason: Reason) -> Outcome:
    return Outcome.rejected("a***@e***.com", Rejection(reason, "refused"))


def local_file(tmp_path: Path, rows: list[tuple[StreamContext, dict[str, Any], Reason]], *, pii: bool) -> list[str]:
    """Lines as the real sink writes them (rejected_records_path)."""
    path = tmp_path / f"rejected-{pii}.jsonl"
    sink = LocalFileSink(str(path), include_pii=pii)
    for seq, (stream, data, reason) in enumerate(rows):
        sink.add(Row(stream=stream, data=data, seq=seq), rejected(reason))
    sink.close()
    return path.read_text(encoding="utf-8").splitlines()


def test_local_rows_written_with_pii_come_back_as_records_of_their_stream(tmp_path: Path) -> None:
    lines = local_file(tmp_path, [(MEMBERS, ALICE, Reason.CUSTOM_ATTRIBUTE),
                                  (CREDITS, {"user_id": "bob@example.com", "activity_id": "7"}, Reason.INVALID_ACTIVITY)],
                       pii=True)

    plan = plan_replay(lines)

    assert list(record_messages(plan.rows, emitted_at=5)) == [
        {"type": "RECORD", "record": {"stream": "members", "namespace": "crm", "data": ALICE, "emitted_at": 5}},
        {"type": "RECORD", "record": {"stream": "credits", "data": {"user_id": "bob@example.com", "activity_id": "7"},
                                      "emitted_at": 5}},
    ]


def test_filters_by_reason_and_stream_and_never_replays_rows_that_are_not_records(tmp_path: Path) -> None:
    lines = local_file(tmp_path, [
        (MEMBERS, ALICE, Reason.CUSTOM_ATTRIBUTE),
        (MEMBERS, {**ALICE, "user_id": "x@example.com"}, Reason.VALIDATION),
        (CREDITS, {"user_id": "bob@example.com"}, Reason.CUSTOM_ATTRIBUTE),
        (MEMBERS, {"raw_line": "{not json"}, Reason.INVALID_MESSAGE),
    ], pii=True)

    plan = plan_replay(lines, reasons=frozenset({"custom_attribute", "invalid_message"}), stream="members")

    assert [row.data for row in plan.rows] == [ALICE]
    assert dict(plan.skipped) == {"another reason": 1, "another stream": 1, "invalid_message (no record to send)": 1}


def test_a_masked_file_is_refused_whole(tmp_path: Path) -> None:
    """Masked values sent to CrowdTwist would overwrite real ones: nothing of such a file goes out."""
    lines = local_file(tmp_path, [(MEMBERS, ALICE, Reason.CUSTOM_ATTRIBUTE)], pii=False)
    assert json.loads(lines[0])["record"]["user_id"] != ALICE["user_id"]
    with pytest.raises(ReplayRefused, match="1 selected rows are masked"):
        plan_replay(lines)
    # A line from before the "pii" field existed counts as masked too.
    old = {k: v for k, v in json.loads(local_file(tmp_path, [(MEMBERS, ALICE, Reason.VALIDATION)], pii=True)[-1]).items()
           if k not in ("pii", "namespace", "name")}
    with pytest.raises(ReplayRefused, match="masked"):
        plan_replay([json.dumps(old)])


def test_object_storage_lines_need_their_stream_named() -> None:
    line = json.dumps(bucket_line(Row(stream=MEMBERS, data=ALICE, seq=0), rejected(Reason.LOCATION)))
    with pytest.raises(ReplayRefused, match="--as-stream"):
        plan_replay([line])

    plan = plan_replay([line, ""], reasons=frozenset({"location"}), as_stream="members")

    assert [(row.name, row.reason, row.data) for row in plan.rows] == [("members", "location", ALICE)]


@pytest.mark.parametrize(("text", "needle"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"some": "thing"}', "neither rejected-rows layout"),
    ('{"stream": "m", "row": 1, "user": "u", "dry_run": "would_create", "reason_class": "x", "record": {}}', "dry run"),
    ('{"reason_class": "validation", "record": "text", "pii": true, "name": "m"}', "no record object"),
    ('{"record": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
])
def test_what_is_not_a_rejected_row_is_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(ReplayRefused, match=needle):
        plan_replay([text])


def test_the_field_name_constants_are_the_keys_of_the_typed_lines() -> None:
    """The lines are written and read by their Final names (rejects/schema.py); the TypedDicts spell them out."""
    assert schema.LocalLine.__required_keys__ == {
        schema.STREAM, schema.ROW, schema.USER, schema.REASON_CLASS, schema.MESSAGE, schema.HTTP_STATUS,
        schema.RECORD, schema.NAMESPACE, schema.NAME, schema.PII,
    }
    assert schema.ChangeLine.__required_keys__ == {
        schema.STREAM, schema.ROW, schema.USER, schema.DRY_RUN, schema.CHANGES,
    }
    assert list(schema.BucketLine.__annotations__) == [*schema.AIRBYTE_COLUMNS, schema.DATA_COLUMN]
    assert schema.REJECTION in schema.BucketMeta.__required_keys__
