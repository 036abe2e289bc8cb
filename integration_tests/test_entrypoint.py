"""The real entry point as the platform runs it: a subprocess fed on stdin, read on stdout."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def write_files(tmp_path: Path, config: dict[str, Any], mode: str = "append_dedup") -> tuple[Path, Path]:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"streams": [{
        "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": mode,
    }]}))
    return cfg, cat


def record(data: dict[str, Any]) -> str:
    return json.dumps({"type": "RECORD", "record": {"stream": "users", "emitted_at": 0, "data": data}})


def state(state_id: int) -> str:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": state_id, "stream": {
        "stream_descriptor": {"name": "users"}, "stream_state": {"cursor": state_id}}}})


def person(i: int) -> dict[str, Any]:
    return {"user_id": f"e{i}@example.com", "first_name": "Eve", "last_name": "Ng", "postal_code": "10010"}


def parse_stdout(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be a protocol message


def test_spec_prints_the_top_level_spec_json() -> None:
    out = subprocess.run([*MAIN, "spec"], capture_output=True, text=True, env=ENV, timeout=60, check=True)
    [message] = parse_stdout(out.stdout)
    assert message["type"] == "SPEC"
    spec = json.loads((ROOT / "spec.json").read_text())
    assert message["spec"]["connectionSpecification"] == spec["connectionSpecification"]
    assert message["spec"]["supported_destination_sync_modes"] == ["append", "append_dedup", "update", "soft_delete"]


def test_write_through_stdin_echoes_states_with_ids_and_skips_unknown_messages(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions()) as sb:
        cfg, cat = write_files(tmp_path, {"api_base_url": sb.base_url,
                                          "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY}})
        lines = [
            record(person(1)),
            json.dumps({"type": "SOMETHING_NEW", "payload": {}}),  # unknown type: must not crash
            "this is not json",
            json.dumps({"type": "LOG", "log": {"level": "INFO", "message": "from the source"}}),
            json.dumps({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1.0, "stream_status": {
                "stream_descriptor": {"name": "users"}, "status": "RUNNING"}}}),
            record(person(2)),
            state(41),
            record({"user_id": "bad", "first_name": "X"}),
            state(42),
        ]
        out = subprocess.run(
            [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
            input="\n".join(lines) + "\n", capture_output=True, text=True, env=ENV, timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        messages = parse_stdout(out.stdout)
        states = [m["state"] for m in messages if m["type"] == "STATE"]
        assert [s["id"] for s in states] == [41, 42]
        assert [s["destinationStats"] for s in states] == [
            {"recordCount": 2.0, "rejectedRecordCount": 0.0},
            {"recordCount": 0.0, "rejectedRecordCount": 1.0},
        ]
        assert states[0]["stream"]["stream_state"] == {"cursor": 41}
        assert len(sb.members()) == 2
        logs = " ".join(m["log"]["message"] for m in messages if m["type"] == "LOG")
        assert "unknown type 'SOMETHING_NEW'" in logs
        assert DEFAULT_API_KEY not in out.stdout + out.stderr


def test_state_is_echoed_and_flushed_while_the_source_is_still_open(tmp_path: Path) -> None:
    """The platform reads states as they come; a state must not wait for stdin to close."""
    with Sandbox(SandboxOptions()) as sb:
        cfg, cat = write_files(tmp_path, {"api_base_url": sb.base_url,
                                          "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY}})
        proc = subprocess.Popen(
            [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
        )
        assert proc.stdin is not None and proc.stdout is not None
        seen: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                seen.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            proc.stdin.write(record(person(1)) + "\n" + state(7) + "\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            echoed = None
            while time.monotonic() < deadline and echoed is None:
                try:
                    line = seen.get(timeout=0.5)
                except queue.Empty:
                    continue
                message = json.loads(line)
                if message["type"] == "STATE":
                    echoed = message
            assert echoed is not None, "the state was not echoed while stdin stayed open"
            assert echoed["state"]["id"] == 7
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
        assert proc.returncode == 0


def test_mid_sync_auth_failure_exits_non_zero_with_a_config_error_trace_and_no_secret(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions(api_key="ctsbx_other_key_aaaaaaaaaaaaaaaaaaaa")) as sb:
        cfg, cat = write_files(tmp_path, {"api_base_url": sb.base_url,
                                          "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY}})
        lines = [record(person(i)) for i in range(200)] + [state(1)]
        out = subprocess.run(
            [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
            input="\n".join(lines) + "\n", capture_output=True, text=True, env=ENV, timeout=120,
        )
        total = sb.request_counts()["total"]
    assert out.returncode != 0
    messages = parse_stdout(out.stdout)
    traces = [m["trace"] for m in messages if m["type"] == "TRACE"]
    assert traces and traces[0]["error"]["failure_type"] == "config_error"
    assert "API key" in traces[0]["error"]["message"]
    assert not [m for m in messages if m["type"] == "STATE"]
    assert DEFAULT_API_KEY not in out.stdout + out.stderr
    # Stopped at once: only the requests already in flight (max_concurrency 20) got a 403, not all 200 rows.
    assert total <= 21


@pytest.mark.parametrize("mode", ["overwrite"])
def test_unsupported_mode_is_refused_before_any_request(tmp_path: Path, mode: str) -> None:
    with Sandbox(SandboxOptions()) as sb:
        cfg, cat = write_files(tmp_path, {"api_base_url": sb.base_url,
                                          "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY}}, mode)
        out = subprocess.run(
            [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
            input=record(person(1)) + "\n", capture_output=True, text=True, env=ENV, timeout=120,
        )
        assert sb.request_counts()["total"] == 0
    assert out.returncode != 0
    [trace] = [m["trace"] for m in parse_stdout(out.stdout) if m["type"] == "TRACE"]
    assert trace["error"]["failure_type"] == "config_error"
    assert mode in trace["error"]["message"] and "append_dedup" in trace["error"]["message"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "No command given. The commands are: spec; check --config CONFIG; discover --config CONFIG; "
             "write --config CONFIG --catalog CATALOG; replay-rejects FILE"),
        (["bogus"], "Unknown command. The commands are: spec; check --config CONFIG; discover"),
        (["check"], "The check command needs --config CONFIG."),
        (["write", "--config", "GOOD"], "The write command needs --config CONFIG --catalog CATALOG."),
        (["check", "--config", "/nonexistent/config.json"], "cannot be read (No such file or directory)"),
        (["check", "--config", "NOT_JSON"], "is not valid JSON"),
        (["check", "--config", "LIST_JSON"], "must hold a JSON object, not list"),
        (["write", "--config", "GOOD", "--catalog", "NOT_JSON"], "configured catalog file"),
        (["write", "--config", "GOOD", "--catalog", "BAD_CATALOG"], "is not a valid Airbyte catalog"),
    ],
)
def test_command_line_and_file_problems_are_config_errors_not_crashes(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    files = {
        "NOT_JSON": "{'api_key': 'sk_live_abc'",  # must never be quoted back
        "LIST_JSON": "[1, 2]",
        "GOOD": json.dumps({"api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"}}),
        "BAD_CATALOG": json.dumps({"streams": [{"stream": 5}]}),
    }
    argv = []
    for arg in args:
        if arg in files:
            path = tmp_path / f"{arg}.json"
            path.write_text(files[arg])
            arg = str(path)
        argv.append(arg)
    proc = subprocess.run([*MAIN, *argv], capture_output=True, text=True, env=ENV, timeout=60, input="")
    assert proc.returncode != 0
    messages = parse_stdout(proc.stdout)
    [trace] = [m for m in messages if m["type"] == "TRACE"]
    assert trace["trace"]["error"]["failure_type"] == "config_error"
    assert needle in trace["trace"]["error"]["message"]
    assert "sk_live_abc" not in proc.stdout + proc.stderr


def test_a_retry_is_logged_on_stdout_in_a_real_sync(tmp_path: Path) -> None:
    """Retries must be visible: the CDK configures only the "airbyte" logger, so the client logs under it."""
    with Sandbox(SandboxOptions(maintenance_first_n=1)) as sb:
        cfg, cat = write_files(tmp_path, {"api_base_url": sb.base_url,
                                          "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY}})
        out = subprocess.run(
            [*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)],
            input=record(person(1)) + "\n" + state(1) + "\n", capture_output=True, text=True, env=ENV, timeout=120,
        )
        counts = sb.request_counts()
        members = sb.members()
    assert out.returncode == 0, out.stderr[-2000:]
    messages = parse_stdout(out.stdout)
    retries = [m["log"] for m in messages if m["type"] == "LOG" and m["log"]["message"].startswith("Retrying")]
    assert len(retries) == 1, [m for m in messages if m["type"] == "LOG"]
    assert retries[0]["level"] == "INFO"
    assert "maintenance" in retries[0]["message"]
    assert "e1@example.com" not in retries[0]["message"]  # the member id is masked in the request line
    assert len(members) == 1
    assert [m["state"]["id"] for m in messages if m["type"] == "STATE"] == [1]
    assert counts["total"] >= 2  # the 503, then the request that went through
