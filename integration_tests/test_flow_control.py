"""Flow control end to end against the sandbox: the in-flight target and the pacing change nothing a
sync writes (requests per row, per-member order, states and their counts), and a server limit below
the budget costs time, never rows."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

import pytest
from helpers import catalog, profile_config, record, run_write, seeded_sandbox, state, state_ids, stats
from sandboxes import SandboxFactory

from destination_crowdtwist.destination import DestinationCrowdtwist

STREAM = "users"
MEMBERS = 40
FLOW = re.compile(r"up to (\d+) requests at once \(max_concurrency (\d+)\), round trip (\d+) ms; "
                  r"sending at most ([\d,]+) requests/min \(max_requests_per_minute ([\d,]+)\)")






def _two_rows_per_member_with_states() -> list[Any]:
    """Each member updated twice (the second row must win), a state after every 20 rows."""
    messages: list[Any] = []
    for n in range(2 * MEMBERS):
        i, which = n % MEMBERS, "first" if n < MEMBERS else "second"
        messages.append(record({"user_id": f"m{i}@example.com", "last_name": which}, stream=STREAM))
        if (n + 1) % 20 == 0:
            messages.append(state((n + 1) // 20, stream=STREAM))
    return messages


def _final_flow(caplog: pytest.LogCaptureFixture) -> re.Match[str]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress:")]
    assert lines, "no progress line"
    match = FLOW.search(lines[-1])
    assert match, lines[-1]
    return match


def test_a_sync_without_changes_writes_what_it_wrote_before(
    sandbox_factory: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sb = seeded_sandbox(sandbox_factory, MEMBERS, latency_ms=20.0)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(profile_config(sb), catalog("update", STREAM), _two_rows_per_member_with_states())
    # One PUT per row, nothing else; every state echoed once, in order, with its exact count.
    assert sb.request_counts()["total"] == 2 * MEMBERS
    assert sb.request_counts().get("429", 0) == 0
    assert state_ids(out) == [1, 2, 3, 4]
    assert [stats(m) for m in out] == [(20.0, 0.0)] * 4
    # Per-member order: the second row of every member landed last.
    assert {m["email_address"]: m["last_name"] for m in sb.members()} == {
        f"m{i}@example.com": "second" for i in range(MEMBERS)
    }
    flow = _final_flow(caplog)
    target, ceiling, rtt_ms = int(flow.group(1)), int(flow.group(2)), int(flow.group(3))
    assert ceiling == 256
    assert rtt_ms >= 20  # the sandbox's latency is part of every round trip
    # 9,000/min x RTT x 1.25 + 2: a handful at 20-odd ms, far below the ceiling.
    assert 1 <= target <= 2 + 150 * (rtt_ms / 1000) * 1.25 + 1
    assert flow.group(4) == flow.group(5) == "9,000"  # no 429, so the rate never left the budget


def test_a_server_limit_below_the_budget_costs_time_not_rows(
    sandbox_factory: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A token bucket of 1,200/min with a 2-request burst against a budget of 2,400/min; 429s carry
    # Retry-After: 1, which must slow the connector down, not stop it for a second each time.
    sb = seeded_sandbox(sandbox_factory, MEMBERS, rate_limit_per_minute=1200, rate_limit_algorithm="token_bucket",
                 rate_limit_burst=2, latency_ms=5.0)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(profile_config(sb, max_requests_per_minute=2400), catalog("update", STREAM),
                        _two_rows_per_member_with_states())
    counts = sb.request_counts()
    assert counts["429"] > 0
    assert counts["total"] == 2 * MEMBERS + counts["429"]  # each refused attempt was repeated once it was allowed
    assert [stats(m) for m in out] == [(20.0, 0.0)] * 4
    assert {m["last_name"] for m in sb.members()} == {"second"}
    flow = _final_flow(caplog)
    # The budget now paces below the 2,400/min it started at (near the 1,200 the server revealed).
    assert int(flow.group(4).replace(",", "")) < 2400
    # The sync's workers are gone (named, so that threads other tests of this process left, such as a
    # sandbox's request handlers, do not count: a bare thread count failed under make check's ordering).
    assert [t.name for t in threading.enumerate() if t.name.startswith("crowdtwist-worker-")] == []


def test_a_limit_below_the_budget_with_immediate_429s_is_used_to_the_full(
    sandbox_factory: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 20: a gateway answers 429 at once (the sandbox's default, refuse_immediately), 100 ms
    # round trips, a limit at 0.67x the default budget (6,000/min against 9,000/min) with a 0.2 s
    # burst and no Retry-After. The fast 429s used to shrink the in-flight target to 7 (0.58-0.69
    # of the limit); now the target stays sized by the real round trip and the limit is used.
    rows, limit, burst = 500, 100.0, 20
    members = tuple({"email_address": f"u{i}@example.com", "first_name": "S", "last_name": "S"} for i in range(rows))
    sb = sandbox_factory(members=members, latency_ms=100.0, rate_limit_per_minute=6000,
                         rate_limit_algorithm="token_bucket", rate_limit_burst=burst, retry_after=False)
    assert sb.options.refuse_immediately
    messages = [record({"user_id": f"u{i}@example.com", "last_name": "new"}, stream=STREAM) for i in range(rows)]
    messages.append(state(1, stream=STREAM))
    started: list[float] = []

    def timed() -> Any:
        started.append(time.monotonic())
        yield from messages

    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = list(DestinationCrowdtwist().write(profile_config(sb), catalog("update", STREAM), timed()))
    took = time.monotonic() - started[0]
    counts = sb.request_counts()
    assert [stats(m) for m in out] == [(float(rows), 0.0)]
    assert counts["total"] == rows + counts.get("429", 0)
    assert {m["last_name"] for m in sb.members()} == {"new"}
    # Rows beyond the bucket's initial burst, per second, against the server's limit (the last
    # answer's round trip is part of the run, so a perfect client scores just under 1).
    share = (rows - burst) / took / limit
    flow = _final_flow(caplog)
    print(f"share of the limit {share:.3f}, 429s {counts.get('429', 0)}, {flow.group(0)}")
    target, rtt_ms, rate = int(flow.group(1)), int(flow.group(3)), int(flow.group(4).replace(",", ""))
    assert rtt_ms >= 100  # the RTT the target is sized by is the real round trip, not a 429's
    # ... so the target is what the paced rate needs at that round trip (it was 4 before the fix)
    assert target >= math.ceil(rate / 60 * rtt_ms / 1000 * 1.25) + 2 - 1
    # 0.95 to 0.96 on this project's 2 shared cores; 0.575 before the fix. The margin is for a machine
    # loaded several times over (the sandbox shares the connector's process and interpreter here).
    assert share >= 0.85
