"""What an operator reads (issue 18 §4), through the real entry point against the sandbox: throttling
is logged once per episode, retries say they are retrying, progress lines and the summary say what
they count in a user's words."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import catalog, profile_config, record, run_write, seeded_sandbox, state, stats
from sandboxes import SandboxFactory

STREAM = "users"
MEMBERS = 40






def _updates(rows: int = 2 * MEMBERS) -> list[Any]:
    messages: list[Any] = [record({"user_id": f"m{n % MEMBERS}@example.com", "last_name": f"v{n}"}, stream=STREAM)
                           for n in range(rows)]
    messages.append(state(1, stream=STREAM))
    return messages


def _lines(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelno == level]


def test_throttling_is_one_warning_per_episode(sandbox_factory: SandboxFactory, caplog: pytest.LogCaptureFixture) -> None:
    sb = seeded_sandbox(sandbox_factory, MEMBERS, rate_limit_per_minute=1200, rate_limit_algorithm="token_bucket",
                 rate_limit_burst=2, latency_ms=5.0)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(profile_config(sb, max_requests_per_minute=2400), catalog("update", STREAM), _updates())
    assert [stats(m) for m in out] == [(float(2 * MEMBERS), 0.0)]
    assert sb.request_counts()["429"] > 1
    throttling = [line for line in _lines(caplog, logging.WARNING) if "throttling" in line]
    # Several 429s within seconds: one episode, one line, with the lowered rate.
    assert len(throttling) == 1, throttling
    assert "HTTP 429" in throttling[0] and "/min of 2,400/min" in throttling[0]


def test_progress_lines_keep_rows_and_requests_apart_in_words(
    sandbox_factory: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sb = seeded_sandbox(sandbox_factory, MEMBERS, latency_ms=20.0)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(profile_config(sb, progress_interval_seconds=0.2), catalog("update", STREAM), _updates())
    assert [stats(m) for m in out] == [(float(2 * MEMBERS), 0.0)]
    progress = [line for line in _lines(caplog) if line.startswith("Progress:")]
    assert len(progress) >= 2  # at the interval while the sync runs, and once at the end
    last = progress[-1]
    assert last.startswith(f"Progress: {2 * MEMBERS} rows done in ")
    assert f"0 of them rejected; {2 * MEMBERS} requests sent" in last
    assert "0 answered HTTP 429 (throttled); 0 rows read and not done yet; up to " in last
    assert "requests at once (max_concurrency 256), round trip " in last
    assert "sending at most 9,000 requests/min (max_requests_per_minute 9,000)" in last
    assert "in flight" not in last and "in-flight target" not in last


def test_the_summary_says_how_long_what_it_cost_and_per_stream(
    sandbox_factory: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Every 5th request answers 500 (retried), two streams routed to the same object.
    sb = seeded_sandbox(sandbox_factory, MEMBERS, error_rate=0.2, seed=7)
    messages = [record({"user_id": f"m{n}@example.com", "last_name": "a"}, stream=STREAM) for n in range(20)]
    messages += [record({"user_id": f"m{n}@example.com", "last_name": "b"}, stream="buyers") for n in range(20, 30)]
    messages.append(state(1, stream=STREAM))
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(profile_config(sb, max_retries=10), catalog("update", STREAM, extra_streams=("buyers",)), messages)
    assert [stats(m) for m in out] == [(20.0, 0.0)]  # a stream state counts its own stream's rows
    lines = _lines(caplog)
    head = next(line for line in lines if line.startswith("Sync summary"))
    assert head.startswith("Sync summary: 30 rows in ") and head.endswith(" s")
    counts = sb.request_counts()
    fives = sum(n for key, n in counts.items() if str(key).startswith("5"))
    assert fives > 0
    cost = next(line for line in lines if line.startswith("Requests to CrowdTwist:"))
    assert cost == (f"Requests to CrowdTwist: {counts['total']} sent, {fives} of them retries; 0 answered HTTP 429 "
                    f"(throttled), {fives} answered HTTP 5xx (server error)")
    split = lines.index("Rows by stream:")
    assert lines[split + 1:split + 3] == ["  buyers: 10 rows (updated 10)", "  users: 20 rows (updated 20)"]


def test_help_lists_every_command() -> None:
    # Issue 18 §4: --help listed spec, check and write, not discover and replay-rejects.
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "main.py"), "--help"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("commands:", 1)[1]
    for command in ("spec", "check", "discover", "write", "replay-rejects"):
        assert f"\n    {command} " in listed, proc.stdout
