"""SyncReport: counts, capped log lines, masked summaries, sinks, and the fail-fast check."""

from __future__ import annotations

import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from destination_crowdtwist import wiring
from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.records.rejection import Reason, Rejection, server
from destination_crowdtwist.rejects.local_file import LocalFileSink
from destination_crowdtwist.sync.report import LOGGED_PER_REASON, SyncReport, Traffic
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row, StreamContext

STREAM = StreamContext(None, "users", "append_dedup")


def row(i: int, **data: object) -> Row:
    return Row(stream=STREAM, data={"user_id": f"u{i}@example.com", **data}, seq=i)


def bad(
    member: str = "u***@e***.com", reason: Reason = Reason.VALIDATION, message: str | tuple[Any, ...] = "fix it"
) -> Outcome:
    return Outcome.rejected(member, Rejection(reason, message))


def test_counts_by_kind_reason_and_stream() -> None:
    report = SyncReport()
    report.record(row(0), Outcome(OutcomeKind.CREATED))
    report.record(row(1), bad())
    report.record(row(2), bad(reason=Reason.LOCATION))
    assert report.by_kind == {"created": 1, "rejected": 2}
    assert report.by_reason == {"validation": 1, "location": 1}
    assert report.rejected == 2
    assert report.by_stream["users"] == {"created": 1, "rejected": 2}


def test_rejected_rows_are_logged_up_to_a_cap_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    report = SyncReport()
    with caplog.at_level(logging.WARNING, logger="airbyte"):
        for i in range(LOGGED_PER_REASON + 30):
            report.record(row(i), bad())
        report.record(row(999), bad(reason=Reason.LOCATION))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LOGGED_PER_REASON + 1
    assert "further rows of this reason are counted, not logged" in lines[LOGGED_PER_REASON - 1]
    assert report.by_reason["validation"] == LOGGED_PER_REASON + 30


def test_log_lines_and_summary_mask_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    report = SyncReport()
    with caplog.at_level(logging.WARNING, logger="airbyte"):
        report.record(row(0), bad(message=(
            server("alice@example.com of Jane Doe, 42 Elm St is taken; call +1 212 555 0100"), " — fix it"
        )))
    text = caplog.text + "\n".join(report.summary_lines())
    assert "alice@example.com" not in text and "555 0100" not in text
    assert "Jane" not in text and "Elm" not in text and "42" not in text
    assert "is taken;" in text and "— fix it" in text  # the message stays readable


def test_log_lines_keep_the_connectors_guidance_readable(caplog: pytest.LogCaptureFixture) -> None:
    guidance = "postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789)"
    report = SyncReport()
    with caplog.at_level(logging.WARNING, logger="airbyte"):
        report.record(row(0), bad(reason=Reason.LOCATION, message=guidance))
    assert guidance in caplog.text


def test_summary_lists_outcomes_reasons_examples_and_sinks(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    report = SyncReport(sinks=[LocalFileSink(str(path), include_pii=False)], sink_names=[str(path)])
    report.record(row(0), Outcome(OutcomeKind.UPDATED))
    for i in range(5):
        report.record(row(i), bad(member=f"m{i}"))
    report.close()
    lines = report.summary_lines()
    assert lines[0] == "Sync summary: 6 rows"
    assert "  validation: 5 (e.g. m0, m1, m2)" in lines
    assert lines[-1] == f"Rejected rows were written to {path}"
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [w["reason_class"] for w in written] == ["validation"] * 5
    assert written[0]["record"]["user_id"] != "u0@example.com"  # masked unless include_pii


def test_sinks_receive_only_rejected_rows_and_flush_before_echo(tmp_path: Path) -> None:
    class Sink:
        def __init__(self) -> None:
            self.rows: list[int] = []
            self.flushes = 0

        def add(self, row: Row, outcome: Outcome) -> None:
            self.rows.append(row.seq)

        def add_change(self, row: Row, outcome: Outcome) -> None: ...

        def wait_for_room(self) -> None: ...

        def flush(self) -> None:
            self.flushes += 1

        def close(self) -> None: ...

    sink = Sink()
    report = SyncReport(sinks=[sink])
    report.record(row(0), Outcome(OutcomeKind.CREATED))
    report.record(row(1), bad())
    report.flush()
    assert (sink.rows, sink.flushes) == ([1], 1)


@pytest.mark.parametrize(
    ("rejected_of_10", "share", "stops"),
    [(10, 0.9, True), (9, 0.9, True), (8, 0.9, False), (10, 0.0, False), (3, 0.3, True)],
)
def test_fail_fast_after_the_sample(rejected_of_10: int, share: float, stops: bool) -> None:
    report = SyncReport(stop_sample=10, stop_share=share)
    for i in range(10):
        assert report.systematic_rejection() is None  # never before the sample is complete
        if i < rejected_of_10:
            report.record(row(i), bad(member=f"m{i}", reason=Reason.CUSTOM_ATTRIBUTE, message="configure it"))
        else:
            report.record(row(i), Outcome(OutcomeKind.UPDATED))
    error = report.systematic_rejection()
    assert (error is not None) == stops
    if error is not None:
        assert isinstance(error, ConfigError)
        assert f"{rejected_of_10} of the first 10 rows were rejected" in error.message
        assert "[custom_attribute]" in error.message and "configure it" in error.message
    assert report.systematic_rejection() is None  # checked once


def test_dry_run_changes_are_logged_capped_counted_and_filed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dry.jsonl"
    report = SyncReport(sinks=[LocalFileSink(str(path), include_pii=False)], dry_run=True)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        for i in range(60):
            report.record(row(i), Outcome(OutcomeKind.WOULD_UPDATE, member=f"m{i}", changes=("first_name",)))
        report.record(row(99), Outcome(OutcomeKind.WOULD_CREATE, member="new", changes=("email_address", "first_name")))
    report.close()
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dry run:")]
    assert len(logged) == 50
    assert logged[0] == "Dry run: row 0 of stream users for m0: would update first_name"
    assert report.changed_fields == {"first_name": 61, "email_address": 1}
    assert "  first_name: 61" in report.summary_lines()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 61
    assert lines[-1] == {"stream": "users", "row": 99, "user": "new", "dry_run": "would_create",
                         "changes": ["email_address", "first_name"]}


def test_dry_run_field_names_from_the_row_are_masked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dry.jsonl"
    report = SyncReport(sinks=[LocalFileSink(str(path), include_pii=False)], dry_run=True)
    changes = ("first_name", "custom_data.Quentin Doe (spouse)", "custom_data.loyalty_tier")
    with caplog.at_level(logging.INFO, logger="airbyte"):
        report.record(row(0), Outcome(OutcomeKind.WOULD_UPDATE, member="m0", changes=changes))
    report.close()
    expected = ["first_name", "custom_data.***", "custom_data.loyalty_tier"]
    assert json.loads(path.read_text())["changes"] == expected
    assert "Quentin" not in caplog.text + "\n".join(report.summary_lines())
    assert "would update first_name, custom_data.***, custom_data.loyalty_tier" in caplog.text
    kept = SyncReport(log_pii=True, dry_run=True)
    kept.record(row(0), Outcome(OutcomeKind.WOULD_UPDATE, member="m0", changes=changes))
    assert "  custom_data.Quentin Doe (spouse): 1" in kept.summary_lines()


def test_summary_has_the_duration_the_requests_and_a_split_by_stream() -> None:
    report = SyncReport()
    purchases = StreamContext(None, "purchases", "append")
    report.record(row(0), Outcome(OutcomeKind.CREATED))
    report.record(row(1), Outcome(OutcomeKind.UPDATED))
    report.record(Row(stream=purchases, data={"user_id": "u2@example.com"}, seq=2), bad())
    lines = report.summary_lines(Traffic(seconds=185.4, requests=2150, retries=120, throttled=44, server_errors=9))
    assert lines[0] == "Sync summary: 3 rows in 3 min 05 s"
    assert ("Requests to CrowdTwist: 2,150 sent, 120 of them retries; 44 answered HTTP 429 (throttled), "
            "9 answered HTTP 5xx (server error)") in lines
    split = lines.index("Rows by stream:")
    assert lines[split + 1:split + 3] == ["  purchases: 1 rows (rejected 1)", "  users: 2 rows (created 1, updated 1)"]
    assert report.summary_lines(Traffic(seconds=42.4))[0] == "Sync summary: 3 rows in 42 s"


def test_a_bucket_that_cannot_be_reached_closes_every_sink_it_opened(tmp_path: Path) -> None:
    """wiring.make_report: when the S3 sink's start() fails, its client's watchdog thread does not outlive it."""
    with socket.socket() as probe:  # a local port nobody listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = parse_config({
        "api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"}, "max_retries": 0,
        "rejected_records_path": str(tmp_path / "rejects.jsonl"),
        "object_storage_config": {
            "storage_type": "S3", "s3_bucket_name": "rejects", "bucket_path": "x", "s3_endpoint": f"http://127.0.0.1:{port}",
            "access_key_id": "key", "secret_access_key": "secret", "format": {"format_type": "JSONL"},
        },
    })
    opened: list[LocalFileSink] = []

    class SpiedFileSink(LocalFileSink):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    def deadline_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "crowdtwist-deadlines"]

    before = deadline_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiring, "LocalFileSink", SpiedFileSink)
        with pytest.raises(TransientError, match="unreachable"):
            wiring.make_report(cfg)
    assert deadline_threads() == before  # the S3 client's watchdog was stopped (it started with the call)
    [local] = opened
    assert local._file is None  # the local file opened before the bucket was closed as well
