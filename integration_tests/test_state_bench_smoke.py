"""Smoke test of ``scripts/state_bench.py`` (the sync state at scale): a small run end to end. No speed is
asserted (a small state is mostly fixed costs); the objects, their formats and the figures must be there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# About 20 s: a measurement tool's smoke run, in the perf tier (make perf) with the other benches' smokes.
pytestmark = [pytest.mark.perf, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent


def test_the_state_bench_runs_and_reports_the_state_share(tmp_path: Path) -> None:
    out = tmp_path / "state.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "state_bench.py"), "--members", "2000", "--sample", "300",
         "--json", str(out)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["codec_records"] == 2000
    assert figures["member_base_format2_bytes"] > 0 and figures["member_base_format1_bytes"] > 0
    assert set(figures["after_compaction"]) == {"ledger/base.ctss", "member_index/email/base.ctss"}
    assert figures["resync_sample"]["rows"] == 300 and figures["resync_estimate_s"] > 0
    assert figures["state_share"] > 0 and figures["state_share_cpu"] > 0
    assert len(figures["load_average_start"]) == 3
