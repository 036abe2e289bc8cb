"""Activity Credit sync against the sandbox: outcomes, coercions, rejections and the checkpoint contract.

Assertions are on the sandbox's state (``sb.credits()``, member points, request counters); per-row
outcomes are captured from the sync report.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.models import FailureType, SyncMode
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import (
    catalog,
    credit_config,
    cursor,
    record,
    run_write,
    run_write_until_error,
    state,
    state_ids,
    stats,
    wait_until,
)

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD
from destination_crowdtwist.writers.base import Outcome, Row

CREDIT = "POST /v2/users/{id}/activities"
HISTORY = "GET /v2.1/users/{id}/activity_history"
ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> dict[int, Outcome]:
    """Every row's outcome by input position (of the last sync run in the test)."""
    seen: dict[int, Outcome] = {}
    original = SyncReport.record

    def record_outcome(self: SyncReport, row: Row, outcome: Outcome) -> None:
        seen[row.seq] = outcome
        original(self, row, outcome)

    monkeypatch.setattr(SyncReport, "record", record_outcome)
    return seen


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    sandbox.add_member(email_address=ALICE, first_name="Alice")
    sandbox.add_member(email_address=BOB, first_name="Bob")
    return sandbox


def points(sandbox: Sandbox, email: str) -> int:
    member = sandbox.member("email", email)
    assert member is not None
    return int(member["total_points"])


def credit_by_key(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {c["extra_data"][DEDUPE_KEY_FIELD]: c for c in sandbox.credits()}


def kinds(outcomes: dict[int, Outcome]) -> list[str]:
    return [outcomes[seq].kind for seq in sorted(outcomes)]


# -- credited, in both auth modes -----------------------------------------------------------------


@pytest.mark.parametrize("auth", ["api_key", "hmac"])
def test_rows_are_credited_with_dedupe_key_merged_into_extra_data(
    auth: str, sandbox_factory: Any, outcomes: dict[int, Outcome]
) -> None:
    if auth == "hmac":
        from sandboxes import HMAC_PRIVATE_KEY, HMAC_PUBLIC_KEY

        sandbox = sandbox_factory(hmac_public_key=HMAC_PUBLIC_KEY, hmac_private_key=HMAC_PRIVATE_KEY)
    else:
        sandbox = sandbox_factory()
    sandbox.add_member(email_address=ALICE, total_points=100)
    messages = [
        record({"user_id": ALICE, "activity_id": "1001", "event_id": "order-1", "extra_data": {"store": "NYC"}}),
        record({"user_id": "Alice@Example.com", "activity_id": 1002, "num_points": 7, "event_id": "order-2"}),
        state(1),
    ]
    out = run_write(credit_config(sandbox, hmac=auth == "hmac"), catalog("append"), messages)

    assert state_ids(out) == [1]
    assert stats(out[0]) == (2.0, 0.0)
    assert kinds(outcomes) == ["credited", "credited"]
    credits = credit_by_key(sandbox)
    assert set(credits) == {"order-1", "order-2"}
    assert credits["order-1"]["extra_data"] == {"store": "NYC", DEDUPE_KEY_FIELD: "order-1"}
    assert credits["order-1"]["num_points"] == 10  # the activity's default
    assert credits["order-2"]["activity_id"] == "1002"
    assert credits["order-2"]["num_points"] == 7  # the row's override
    assert points(sandbox, ALICE) == 117


def test_hash_key_when_no_event_id_and_extra_data_given_as_json_text(sb: Sandbox, outcomes: dict[int, Outcome]) -> None:
    messages = [
        record({"user_id": ALICE, "activity_id": "1001", "extra_data": '{"coupon": "123|456"}'}),
        # Same credit fields, other extra_data: another event, so another key and another credit.
        record({"user_id": ALICE, "activity_id": "1001", "extra_data": {"coupon": "789"}}),
        state(1),
    ]
    run_write(credit_config(sb), catalog("append"), messages)

    assert kinds(outcomes) == ["credited", "credited"]
    credits = sb.credits()
    assert [c["extra_data"]["coupon"] for c in credits] == ["123|456", "789"]
    keys = [c["extra_data"][DEDUPE_KEY_FIELD] for c in credits]
    assert all(k.startswith("sha256:") for k in keys)
    assert keys[0] != keys[1]
    assert points(sb, ALICE) == 20


# -- duplicates -------------------------------------------------------------------------------------


def test_same_event_id_twice_in_a_sync_credits_once(sb: Sandbox, outcomes: dict[int, Outcome]) -> None:
    row = {"user_id": ALICE, "activity_id": "1002", "event_id": "evt-9"}
    plain = {"user_id": BOB, "activity_id": "1001", "num_points": 3}
    messages = [record(row), record(plain), state(1), record(row), record(dict(plain)), state(2)]
    out = run_write(credit_config(sb), catalog("append"), messages)

    assert kinds(outcomes) == ["credited", "credited", "duplicate", "duplicate"]
    assert [stats(m) for m in out] == [(2.0, 0.0), (2.0, 0.0)]  # a duplicate is an accepted row
    assert len(sb.credits()) == 2
    assert sb.request_counts()[CREDIT] == 2
    assert points(sb, ALICE) == 50
    assert points(sb, BOB) == 3


def test_event_already_processed_is_a_duplicate_not_a_rejection(
    sb: Sandbox, outcomes: dict[int, Outcome]
) -> None:
    sb.set_options(duplicate_detection=True, duplicate_window_seconds=600)
    row = {"user_id": ALICE, "activity_id": "1001", "event_id": "evt-1"}
    # replay_window: outside the window the connector does not look, so CrowdTwist's own answer shows.
    cfg = credit_config(sb, credit_verification="replay_window")
    run_write(cfg, catalog("append"), [record(row), state(1)])
    assert kinds(outcomes) == ["credited"]

    # Re-sent after the first state of the next sync: not in the replay window, so no lookup; CrowdTwist
    # itself answers "Event already processed".
    out = run_write(cfg, catalog("append"), [state(2), record(row), state(3)])

    assert kinds(outcomes) == ["duplicate"]
    assert outcomes[0].message == "Event already processed"
    assert [stats(m) for m in out] == [(0.0, 0.0), (1.0, 0.0)]
    assert sb.request_counts()["400"] == 1
    assert len(sb.credits()) == 1
    assert points(sb, ALICE) == 10


# -- not awarded --------------------------------------------------------------------------------------


def test_frequency_cap_gives_not_awarded(sb: Sandbox, outcomes: dict[int, Outcome]) -> None:
    messages = [
        record({"user_id": ALICE, "activity_id": "1003", "event_id": "signup-1"}),
        record({"user_id": ALICE, "activity_id": "1003", "event_id": "signup-2"}),
        state(1),
    ]
    out = run_write(credit_config(sb), catalog("append"), messages)

    assert kinds(outcomes) == ["credited", "not_awarded"]
    assert stats(out[0]) == (2.0, 0.0)  # not awarded is accepted: CrowdTwist took the request
    assert [c["awarded"] for c in sb.credits()] == [True, False]
    assert points(sb, ALICE) == 25


# -- rejected ---------------------------------------------------------------------------------------


def test_unknown_member_is_rejected_with_a_reason(sb: Sandbox, outcomes: dict[int, Outcome], tmp_path: Any) -> None:
    rejects = tmp_path / "rejects.jsonl"
    messages = [
        record({"user_id": "nobody@example.com", "activity_id": "1001"}),
        record({"user_id": ALICE, "activity_id": "1001"}),
        state(1),
    ]
    out = run_write(credit_config(sb, rejected_records_path=str(rejects)), catalog("append"), messages)

    assert kinds(outcomes) == ["rejected", "credited"]
    assert outcomes[0].reason == "not_found"
    assert outcomes[0].status == 404
    assert "sync the member's profile" in (outcomes[0].message or "")
    assert stats(out[0]) == (1.0, 1.0)
    assert '"reason_class": "not_found"' in rejects.read_text()
    assert sb.request_counts()[CREDIT] == 2
    assert len(sb.credits()) == 1


def test_inactive_activity_is_rejected_before_any_request(sb: Sandbox, outcomes: dict[int, Outcome]) -> None:
    messages = [record({"user_id": ALICE, "activity_id": "9999"}), record({"user_id": BOB, "activity_id": 1004}), state(1)]
    out = run_write(credit_config(sb), catalog("append"), messages)

    assert kinds(outcomes) == ["rejected", "rejected"]
    assert {o.reason for o in outcomes.values()} == {"invalid_activity"}
    message = outcomes[0].message or ""
    assert "Control Center" in message
    assert "GET /v2/activities" in message
    assert stats(out[0]) == (0.0, 2.0)
    # Only the one activity list read at the start: no credit, no history lookup.
    counts = sb.request_counts()
    assert counts["total"] == 1
    assert counts["GET /v2/activities"] == 1


def test_activity_list_is_read_once_per_sync(sb: Sandbox) -> None:
    sb.add_activity("2001", title="Late Activity", num_points=4)
    messages = [record({"user_id": ALICE, "activity_id": "2001", "event_id": f"e{i}"}) for i in range(5)]
    run_write(credit_config(sb, credit_verification="none"), catalog("append"), [*messages, state(1)])

    assert sb.request_counts()["GET /v2/activities"] == 1
    assert points(sb, ALICE) == 20


@pytest.mark.parametrize(
    ("row", "reason", "text"),
    [
        ({"num_points": "ten"}, "validation", "num_points"),
        ({"num_points": 2.5}, "validation", "num_points"),
        ({"num_points": True}, "validation", "num_points"),
        ({"activity_date": "next tuesday"}, "validation", "activity_date"),
        ({"activity_date": "2024-02-30"}, "validation", "activity_date"),
        ({"extra_data": [1, 2]}, "validation", "extra_data"),
        ({"extra_data": "not json"}, "validation", "extra_data"),
        ({"extra_data": 5}, "validation", "extra_data"),
        ({"user_id": None}, "missing_identifier", "user_id"),
        ({"user_id": "  "}, "missing_identifier", "user_id"),
        ({"activity_id": None}, "validation", "activity_id"),
        ({"activity_id": ""}, "validation", "activity_id"),
        ({"activity_id": {"id": 1}}, "validation", "activity_id"),
    ],
)
def test_invalid_rows_are_rejected_without_a_request(
    sb: Sandbox, outcomes: dict[int, Outcome], row: dict[str, Any], reason: str, text: str
) -> None:
    data = {"user_id": ALICE, "activity_id": "1001", **row}
    out = run_write(credit_config(sb), catalog("append"), [record(data), state(1)])

    assert kinds(outcomes) == ["rejected"]
    assert outcomes[0].reason == reason
    assert text in (outcomes[0].message or "")
    assert stats(out[0]) == (0.0, 1.0)
    assert sb.request_counts()["total"] == 1  # the activity list only
    assert sb.credits() == []


# -- coercions --------------------------------------------------------------------------------------


def test_activity_date_coercions_land_as_epoch_seconds(sb: Sandbox, outcomes: dict[int, Outcome]) -> None:
    dates: dict[str, Any] = {
        "iso-date": "2024-01-05",
        "iso-offset": "2024-01-05T10:00:00+02:00",
        "iso-z": "2024-01-05T08:00:00Z",
        "epoch-ms": 1704412800000,
        "epoch-s": 1704412800,
        "epoch-s-text": "1704412800",
    }
    messages = [
        record({"user_id": ALICE, "activity_id": "1001", "event_id": key, "activity_date": value})
        for key, value in dates.items()
    ]
    run_write(credit_config(sb), catalog("append"), [*messages, state(1)])

    assert set(kinds(outcomes)) == {"credited"}
    landed = {key: c["activity_date"] for key, c in credit_by_key(sb).items()}
    assert landed == {
        "iso-date": 1704412800,
        "iso-offset": 1704441600,
        "iso-z": 1704441600,
        "epoch-ms": 1704412800,
        "epoch-s": 1704412800,
        "epoch-s-text": 1704412800,
    }


def test_field_mapping_and_numeric_coercions(sb: Sandbox, outcomes: dict[int, Outcome]) -> None:
    cfg = credit_config(
        sb,
        field_mapping=[{"source": "member.email", "destination": "user_id"}, {"source": "act", "destination": "activity_id"}],
    )
    messages = [record({"member": {"email": ALICE}, "act": 1002.0, "num_points": "12", "event_id": 77}), state(1)]
    run_write(cfg, catalog("append"), messages)

    assert kinds(outcomes) == ["credited"]
    (credit,) = sb.credits()
    assert credit["activity_id"] == "1002"
    assert credit["num_points"] == 12
    assert credit["extra_data"] == {DEDUPE_KEY_FIELD: "77"}


def test_ignored_fields_are_listed_once_per_stream_with_the_summary(
    sb: Sandbox, outcomes: dict[int, Outcome], caplog: pytest.LogCaptureFixture
) -> None:
    messages = [
        record({"user_id": ALICE, "activity_id": "1001", "event_id": f"e{i}", "store": "x", "till": i,
                "_airbyte_meta": {}})
        for i in range(3)
    ]
    with caplog.at_level(logging.INFO, logger="airbyte"):
        run_write(credit_config(sb), catalog("append"), [*messages, state(1)])

    ignored = [r.getMessage() for r in caplog.records if "ignor" in r.getMessage()]
    # One line for the stream, naming each field once, logged with the summary at the end of the sync.
    assert ignored == [
        "Activity Credit: stream credits: fields ignored (not credit fields): 'store', 'till'."
    ]
    logged = [r.getMessage() for r in caplog.records]
    summary = next(i for i, m in enumerate(logged) if m.startswith("Sync summary"))
    assert logged.index(ignored[0]) == summary - 1  # with the summary, not among the rows
    assert kinds(outcomes) == ["credited"] * 3


# -- checkpoint contract ------------------------------------------------------------------------------


def test_interleaved_states_are_echoed_once_in_order_with_exact_counts(
    sb: Sandbox, outcomes: dict[int, Outcome]
) -> None:
    ok = {"user_id": ALICE, "activity_id": "1001"}
    messages = [
        record({**ok, "event_id": "a"}),
        record({**ok, "user_id": BOB, "event_id": "b"}),
        state(10),
        record({**ok, "activity_id": "404"}),  # rejected
        record({**ok, "event_id": "a"}),  # duplicate of the first row
        state(11),
        state(12),  # no records since the last state
        record({**ok, "user_id": "ghost@example.com", "event_id": "g"}),  # rejected by CrowdTwist
        record({**ok, "event_id": "c"}),
        record({**ok, "user_id": BOB, "event_id": "d"}),
        state(13),
        record({**ok, "event_id": "e"}),  # after the last state: credited, but no state covers it
    ]
    out = run_write(credit_config(sb), catalog("append"), messages)

    assert state_ids(out) == [10, 11, 12, 13]
    assert [stats(m) for m in out] == [(2.0, 0.0), (1.0, 1.0), (0.0, 0.0), (2.0, 1.0)]
    assert [cursor(m) for m in out] == [10, 11, 12, 13]
    assert kinds(outcomes) == ["credited", "credited", "rejected", "duplicate", "rejected", "credited", "credited", "credited"]
    assert sorted(c["extra_data"][DEDUPE_KEY_FIELD] for c in sb.credits()) == ["a", "b", "c", "d", "e"]


def test_global_states_and_two_streams(sb: Sandbox) -> None:
    cat = catalog("append_dedup", name="web", primary_key=[["id"]], extra_streams=["store"])
    messages = [
        record({"id": 1, "user_id": ALICE, "activity_id": "1001"}, stream="web"),
        record({"id": 1, "user_id": ALICE, "activity_id": "1001"}, stream="store"),  # other stream: other key
        record({"id": 2, "user_id": BOB, "activity_id": "nope"}, stream="store"),
        state(1, stream=None),
        record({"id": 3, "user_id": BOB, "activity_id": "1002"}, stream="store"),
        record({"id": 9}, stream="unknown_stream"),  # not in the catalog: skipped
        state(2, stream=None),
    ]
    out = run_write(credit_config(sb), cat, messages)

    assert state_ids(out) == [1, 2]
    assert [stats(m) for m in out] == [(2.0, 1.0), (1.0, 0.0)]
    assert points(sb, ALICE) == 20
    assert points(sb, BOB) == 50


def test_update_mode_is_refused_for_activity_credit(sb: Sandbox) -> None:
    with pytest.raises(AirbyteTracedException) as err:
        run_write(credit_config(sb), catalog("update"), [state(1)])
    assert err.value.failure_type == FailureType.config_error
    assert sb.request_counts()["total"] == 0


def test_revoked_key_mid_sync_stops_with_config_error_and_echoes_settled_states(
    sb: Sandbox, outcomes: dict[int, Outcome]
) -> None:
    def messages() -> Any:
        yield record({"user_id": ALICE, "activity_id": "1001", "event_id": "1"})
        yield state(1)
        # Input is read ahead on its own thread: wait until row 1 landed, then revoke the key.
        wait_until(lambda: len(sb.credits()) == 1)
        sb.set_options(api_key="revoked-key")
        yield record({"user_id": BOB, "activity_id": "1001", "event_id": "2"})
        yield state(2)

    echoed, error = run_write_until_error(credit_config(sb), catalog("append"), messages())

    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type == FailureType.config_error
    assert state_ids(echoed) == [1]
    assert len(sb.credits()) == 1


def test_numeric_event_ids_beyond_64_bits_stay_distinct_through_the_entry_point(sb: Sandbox, tmp_path: Any) -> None:
    """Issue 21, 5: event ids above 2**64 read as floats collapsed into one dedupe key (1 of 2 credited).
    The ids travel as the platform sends them, JSON lines on stdin of ``main.py write``."""
    root = Path(__file__).resolve().parents[1]
    config, catalog_file = tmp_path / "config.json", tmp_path / "catalog.json"
    config.write_text(json.dumps(credit_config(sb)))
    catalog_file.write_text(json.dumps({"streams": [{
        "stream": {"name": "credits", "json_schema": {}, "supported_sync_modes": ["incremental"]},
        "sync_mode": "incremental", "destination_sync_mode": "append",
    }]}))
    big = 2**64 + 1  # 18446744073709551617; the next one differs only in its last digit
    lines = [
        '{"type": "RECORD", "record": {"stream": "credits", "emitted_at": 0, "data": '
        f'{{"user_id": "{ALICE}", "activity_id": "1001", "num_points": 1, "event_id": {event_id}}}}}}}'
        for event_id in (big, big + 1, f'"{big}"')  # the third: the first id as text, the same event
    ]
    lines.append(json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": 1, "stream": {
        "stream_descriptor": {"name": "credits"}, "stream_state": {"cursor": 1}}}}))
    run = subprocess.run(
        [sys.executable, str(root / "main.py"), "write", "--config", str(config), "--catalog", str(catalog_file)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert run.returncode == 0, run.stderr[-2000:]

    keys = sorted(c["extra_data"][DEDUPE_KEY_FIELD] for c in sb.credits())
    assert keys == [str(big), str(big + 1)]  # was: one credit, key "18446744073709551616"
    states = [json.loads(line) for line in run.stdout.splitlines() if '"STATE"' in line]
    assert [s["state"]["destinationStats"]["recordCount"] for s in states] == [3.0]  # 2 credited + 1 duplicate


@pytest.mark.parametrize(
    ("policy", "sync_mode", "warned"),
    [("replay_window", "full_refresh", True), ("none", "full_refresh", True),
     ("every_row", "full_refresh", False), ("replay_window", "incremental", False)],
)
def test_write_warns_at_the_start_of_a_full_refresh_credit_stream_under_an_unsafe_policy(
    sb: Sandbox, caplog: pytest.LogCaptureFixture, policy: str, sync_mode: str, warned: bool
) -> None:
    cat = catalog("append")
    cat.streams[0].sync_mode = SyncMode(sync_mode)
    with caplog.at_level(logging.WARNING, logger="airbyte"):
        run_write(credit_config(sb, credit_verification=policy), cat,
                  [record({"user_id": ALICE, "activity_id": "1001", "event_id": "w1"}), state(1)])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "full_refresh" in r.getMessage()]
    if not warned:
        assert warnings == []
        return
    assert len(warnings) == 1
    assert f"Stream credits is full_refresh and credited with credit_verification={policy}" in warnings[0]
    assert ("1,967 of 2,000" if policy == "replay_window" else "231 of 300") in warnings[0]
