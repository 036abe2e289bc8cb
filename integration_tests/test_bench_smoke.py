"""Smoke test of the benchmark driver: ``scripts/bench.py --quick`` runs end to end and reports sane figures.

No speed is asserted (the machine is shared and noisy); what must hold on any machine is that every
scenario ran through the real entry point, that no row was lost or rejected, and that the figures
are internally consistent (a row costs at least one request, CPU and RSS were measured).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# About 20 s on the reference machine: make check skips it, make test runs it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench.py"

EXPECTED = {
    *(f"{w}/{g}" for w in ("upsert_new", "upsert_existing", "update", "credit") for g in ("baseline", "default")),
    "update/half_budget",
    "empty/overhead",
    "upsert_new/overhead",
    "update/overhead",
}
TARGETS = 13  # 2 x % of limit, 2 x requests/row, 4 x speed-up, 2 x half budget, 2 x CPU, 1 x RSS


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text(encoding="utf-8"))


def test_every_scenario_ran_without_losing_rows(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    _proc, doc = bench
    results = {r["scenario"]: r for r in doc["results"]}
    assert set(results) == EXPECTED
    for name, r in results.items():
        assert r["exit_code"] == 0, (name, r["errors"])
        assert r["errors"] == [], name
        assert r["lost"] == 0, name
        assert r["rejected"] == 0, name
        assert r["accepted"] == r["rows"], name
        if r["landed"] is not None:
            assert r["landed"] == r["rows"], name  # the sandbox shows every row's effect
        assert r["cpu_seconds"] > 0, name
        assert 10 < r["peak_rss_mb"] < 1000, name


def test_figures_are_consistent(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    _proc, doc = bench
    for r in doc["results"]:
        if r["rows"] == 0:
            assert r["requests"] == 0
            continue
        assert r["requests_per_row"] >= 1.0, r["scenario"]
        assert r["requests_per_second"] > 0, r["scenario"]
        assert r["rows_per_second"] > 0, r["scenario"]
        assert r["marginal_cpu_ms_per_row"] is not None, r["scenario"]
        assert r["startup_seconds"] is not None and r["startup_seconds"] < r["wall_seconds"], r["scenario"]
        # Update touches existing members only: one PUT per row (plus one per 429 answer), nothing else.
        if r["workload"] == "update":
            assert r["by_endpoint"] == {"PUT /v2/users/{id}": r["rows"] + r["throttled_429"]}, r["scenario"]
    by_name = {r["scenario"]: r for r in doc["results"]}
    baseline, ours = by_name["upsert_new/baseline"], by_name["upsert_new/default"]
    # The baseline is update-first on all-new rows: PUT (404) then POST for every row.
    assert baseline["requests_per_row"] == 2.0
    assert ours["config"]["max_concurrency"] > 1 and baseline["config"]["max_concurrency"] == 1
    assert by_name["credit/default"]["config"]["award_queue_delay_seconds"] == 0.2


def test_table_and_targets_are_printed(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    proc, doc = bench
    for name in EXPECTED:
        assert name in proc.stdout
    assert len(doc["targets"]) == TARGETS
    assert {t["status"] for t in doc["targets"]} <= {"PASS", "FAIL", "SKIP"}
    # Only the opt-in memory run is skipped in --quick.
    assert [t["name"] for t in doc["targets"] if t["status"] == "SKIP"] == ["peak RSS < 200 MB for 200k rows"]
    for t in doc["targets"]:
        assert f"{t['status']:<5} {t['name']}" in proc.stdout
