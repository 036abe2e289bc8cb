"""Hostile input against the sandbox: no hang, no crash, every row settled or the sync stopped cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import catalog, credit_config, record, run_write_until_error, state, state_ids, stats

from crowdtwist_sandbox import Sandbox


def profile_config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    return credit_config(sandbox, object_type="user_profile", **extra)


@pytest.mark.timeout(30)
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) to simulate a full disk")
def test_a_reject_file_on_a_full_disk_stops_the_sync_with_a_config_error_and_echoes_nothing_after(
    sandbox: Sandbox,
) -> None:
    messages = [
        record({"user_id": "a@example.com", "first_name": "A", "last_name": "B", "postal_code": "10001"}, "users"),
        state(1, "users"),
        record({"first_name": "x" * 20_000}, "users"),  # no user_id: rejected, and its line cannot be stored
        state(2, "users"),
    ]
    out, error = run_write_until_error(
        profile_config(sandbox, rejected_records_path="/dev/full"), catalog("append_dedup", "users"), messages
    )
    # State 1 covers only the good row, so it may be echoed if it was released before the failing
    # write; state 2 covers the row that could not be stored and must never be echoed.
    assert state_ids(out) in ([], [1])
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type.value == "config_error" and error.message is not None
    assert "/dev/full" in error.message and "No space left" in error.message


# -- through the real entry point (bytes on stdin, as the platform sends them) ------------------------

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _files(tmp_path: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"streams": [{
        "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
    }]}))
    return cfg, cat


def _record(data: Any) -> bytes:
    return json.dumps({"type": "RECORD", "record": {"stream": "users", "emitted_at": 0, "data": data}}).encode()


def _state(state_id: int) -> bytes:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": state_id, "stream": {
        "stream_descriptor": {"name": "users"}, "stream_state": {"cursor": state_id}}}}).encode()


def _person(i: int, **extra: Any) -> dict[str, Any]:
    return {"user_id": f"p{i}@example.com", "first_name": "Eve", "last_name": "Ng", "postal_code": "10010", **extra}


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


def _run(tmp_path: Path, sandbox: Sandbox, lines: list[bytes], **extra: Any) -> tuple[int, list[dict[str, Any]], str]:
    config = profile_config(sandbox, rejected_records_path=str(tmp_path / "rejects.jsonl"), **extra)
    cfg, cat = _files(tmp_path, config)
    proc = subprocess.run(
        [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
        input=b"\n".join(lines) + b"\n", capture_output=True, env=ENV, timeout=90, check=False,
    )
    out = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    return proc.returncode, out, proc.stdout.decode()


def _states(out: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    return [
        (m["state"]["id"], m["state"]["destinationStats"]["recordCount"],
         m["state"]["destinationStats"].get("rejectedRecordCount", 0.0))
        for m in out if m["type"] == "STATE"
    ]


def _rejects(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]


def test_bad_bytes_bad_json_and_bad_records_are_rejected_rows_and_the_sync_goes_on(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    lines = [
        _record(_person(1)),
        b'{"type": "RECORD", "record": {"stream": "users", "emitted_at": 0, "data": {"first_name": "caf\xe9"}}}',
        b"this is not json",
        b"[1, 2, 3]",
        _record("not an object"),
        _record(_person(2)),
        _state(1),
        _record(_person(3)),
        _state(2),
    ]
    code, out, _ = _run(tmp_path, sandbox, lines)
    assert code == 0
    # The invalid-UTF-8 line still says it is a RECORD of "users" and the RECORD with non-object data
    # names its stream: both count in that stream's state. Lines with no stream count only in GLOBAL
    # states (there are none here).
    assert _states(out) == [(1, 2.0, 2.0), (2, 1.0, 0.0)]
    assert len(sandbox.members()) == 3
    reasons = [r["reason_class"] for r in _rejects(tmp_path)]
    assert reasons == ["invalid_message"] * 4
    assert any("not valid UTF-8" in r["message"] for r in _rejects(tmp_path))


def test_deep_and_huge_records_are_rejected_and_the_sync_goes_on(tmp_path: Path, sandbox: Sandbox) -> None:
    lines = [
        _record(_person(1, extra_data=_nested(600))),  # json.dumps would raise RecursionError
        _record({**_person(2), "blob": "x" * 3_000_000}),
        _record(_person(3)),
        _state(1),
    ]
    code, out, _ = _run(tmp_path, sandbox, lines, max_record_bytes=1_000_000)
    assert code == 0
    assert _states(out) == [(1, 1.0, 2.0)]
    assert [r["reason_class"] for r in _rejects(tmp_path)] == ["too_large", "too_large"]
    assert sandbox.member("email", "p3@example.com") is not None


def test_a_systematic_rejection_stops_the_sync_early_with_a_config_error_naming_the_fix(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    # The sandbox program has no custom attributes: every row with an unmapped column is refused by
    # CrowdTwist. After the first 100 rows the sync stops instead of spending a request on each row.
    lines = [_record(_person(i, loyalty_tier="gold")) for i in range(300)]
    lines.insert(50, _state(1))
    code, out, _ = _run(tmp_path, sandbox, lines)
    assert code != 0
    traces = [m["trace"]["error"] for m in out if m["type"] == "TRACE"]
    assert traces and traces[0]["failure_type"] == "config_error"
    message = traces[0]["message"]
    assert "of the first 100 rows were rejected" in message and "[custom_attribute]" in message
    assert "p1@example.com" not in message  # the example is masked
    assert _states(out) == [(1, 0.0, 50.0)]  # the safe state was echoed first
    assert sandbox.request_counts()["POST /v2/users"] + sandbox.request_counts().get("PUT /v2/users/{id}", 0) < 140


def test_the_early_stop_can_be_turned_off(tmp_path: Path, sandbox: Sandbox) -> None:
    lines = [_record(_person(i, loyalty_tier="gold")) for i in range(120)] + [_state(1)]
    code, out, _ = _run(tmp_path, sandbox, lines, reject_stop_share=0)
    assert code == 0
    assert _states(out) == [(1, 0.0, 120.0)]


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_lost_answers_to_creates_never_turn_our_members_into_already_taken(sandbox_factory: Any, mode: str) -> None:
    # 15% of requests are processed, then the connection is dropped before the answer: the retried
    # create meets the member the first attempt made.
    sandbox = sandbox_factory(drop_rate=0.15, seed=7)
    people = [_person(i) for i in range(120)]
    cfg = profile_config(sandbox, upsert_strategy="create_first", max_retries=8)
    cat = catalog(mode, "users")
    out, error = run_write_until_error(cfg, cat, [*(record(p, "users") for p in people), state(1, "users")])
    assert error is None
    assert [stats(m)[0] for m in out if m.state is not None] == [120.0]
    assert sandbox.request_counts()["dropped"] > 5
    assert len(sandbox.members()) == 120


def test_sigterm_drains_echoes_the_safe_states_and_exits_non_zero(tmp_path: Path, sandbox_factory: Any) -> None:
    import signal
    import time

    sandbox = sandbox_factory(latency_ms=50)
    config = profile_config(sandbox, max_concurrency=2)
    cfg, cat = _files(tmp_path, config)
    proc = subprocess.Popen(
        [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    assert proc.stdin is not None and proc.stdout is not None
    for i in range(10):
        proc.stdin.write(_record(_person(i)) + b"\n")
    proc.stdin.write(_state(1) + b"\n")
    for i in range(10, 400):  # more rows than can be written before the signal
        proc.stdin.write(_record(_person(i)) + b"\n")
    proc.stdin.write(_state(2) + b"\n")
    proc.stdin.flush()
    lines: list[dict[str, Any]] = []
    while True:  # wait until state 1 is echoed
        line = proc.stdout.readline()
        assert line, "the connector ended before echoing state 1"
        lines.append(json.loads(line))
        if lines[-1]["type"] == "STATE":
            break
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    elapsed = time.monotonic() - started
    lines += [json.loads(line) for line in rest.decode().splitlines() if line.strip()]
    assert proc.returncode != 0
    assert elapsed < 15
    assert [m["state"]["id"] for m in lines if m["type"] == "STATE"] == [1]  # state 2 is not safe
    [trace] = [m for m in lines if m["type"] == "TRACE"]
    assert "SIGTERM" in trace["trace"]["error"]["message"]
    assert trace["trace"]["error"]["failure_type"] == "transient_error"
    assert 10 <= len(sandbox.members()) < 400
