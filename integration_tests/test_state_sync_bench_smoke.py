"""Smoke test of ``scripts/state_sync_bench.py`` (the sync state's savings through the connector): a small run
end to end. No speed is asserted (a short re-sync is mostly start-up); the request counts must hold anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# About 30 s on the reference machine: a measurement tool's smoke run, in the perf tier with
# test_measure_memory_smoke.py (make perf, run by CI), which keeps make test within its budget.
pytestmark = [pytest.mark.perf, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent


def test_the_state_bench_runs_and_counts_only_the_changed_rows(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "state_sync_bench.py"), "--resync-rows", "500", "--mixed-rows", "100",
         "--latency-ms", "5", "--json", str(out)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: a speed target missed, which a small run may
    figures = json.loads(out.read_text())
    resync, mixed = figures["resync"], figures["mixed"]
    assert resync["with_state"]["accepted"] == resync["without_state"]["accepted"] == 500
    assert resync["with_state"]["requests"] == resync["changed"] == 10  # one update per changed row, nothing else
    # Without the state nothing is known of the members: the rows sent before the first answers alternate
    # update-first and create-first, so about half of that first window (some 11 rows) costs a create
    # answered "already taken" before its update (writers/learner.py; docs/performance.md, "what not
    # knowing costs"). With the state, none does.
    assert 500 < resync["without_state"]["requests"] <= 514
    saved = resync["with_state"]["state"]  # the store's closing line, read by the bench
    assert saved["flushes"] >= 10 and 1 <= saved["delta_objects"] <= saved["flushes"]
    assert mixed["with_state"]["accepted"] == 100
    assert mixed["with_state"]["by_endpoint"] == {"POST /v2/users": 50, "PUT /v2/users/{id}": 50}
    assert mixed["without_state"]["requests_per_row"] > mixed["with_state"]["requests_per_row"]
