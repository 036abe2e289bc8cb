"""Smoke test of ``scripts/credit_bench.py`` (which credits need a history read): a small run end to end. No
speed is asserted (a short run is mostly start-up); the request counts must hold anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A measurement tool's smoke run (five syncs, about 20 s): the perf tier, with the other bench smoke tests.
pytestmark = [pytest.mark.perf, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent


def test_the_credit_bench_runs_and_reads_history_only_where_needed(tmp_path: Path) -> None:
    out = tmp_path / "credits.json"
    members = 20
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "credit_bench.py"), "--members", str(members), "--award-delay", "0.5",
         "--json", str(out)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    cases = {case["case"]: case for case in json.loads(out.read_text())}
    for case in cases.values():
        assert case["distinct_credits"] == case["credit_requests"] == 2 * members  # each credit once
    assert cases["new_members"]["history_reads"] == 0
    assert cases["existing_members"]["history_reads"] == members
    assert cases["credits_only"]["history_reads"] == members
    # Only the pending keys' members are read (every tenth row's member; rows spread over the members).
    assert 0 < cases["ledger_quiet"]["history_reads"] == cases["ledger_killed"]["history_reads"] <= 4
