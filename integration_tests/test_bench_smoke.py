"""Smoke test of the benchmark driver: ``scripts/bench.py --quick`` runs end to end and reports sane figures.

No speed is asserted (the machine is shared and noisy); what must hold on any machine is that every
scenario ran through the real entry point, that no row was lost or rejected, and that the figures
are internally consistent (a row costs at least one request, ratios count useful rows and accepted
requests only, CPU and RSS were measured, the connector reported its in-flight target).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# About 35 s on the reference machine: make check skips it, make test runs it.
pytestmark = [pytest.mark.slow, pytest.mark.perf]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench.py"

EXPECTED = {
    "empty/overhead",
    "upsert_new/baseline",
    "upsert_new/baseline_create_first",
    "credit/baseline",
    "upsert_new/default",
    "update/rtt5",
    "credit/rtt5",
    "update/over_limit",
    "update/small_burst",
    "update/overhead",
    "update/perfect",  # the perfect client beside it (scripts/perfect_client.py)
    "upsert_mixed/index_warm",
    # the flow-control grid's smoke rows: a limit at 0.67x the budget with 429s answered at once, and
    # two connections (processes) on one program
    "update/grid_rtt5_0.67x_now_nora_b0.2",
    "update/pair_rtt5_above_now",
}
#: Grid rows whose server limit is below the budget (x connections): their ratio counts the server's initial burst.
GRID_BINDING = {"update/grid_rtt5_0.67x_now_nora_b0.2", "update/pair_rtt5_above_now"}
# 2 x round-trip sweep, 6 x limits (2 run), 2 x requests/row (1 run), 3 x member index (1 run),
# 4 x speed-up (2 run), CPU, CPU beside the perfect client (ms/row and ratio), RSS (not run), 2 grid rows (2 run)
TARGETS = 23
RUN_TARGETS = 13


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
        if r["group"] == "perfect":  # no connector: the perfect client's own process (its RSS is not read)
            continue
        assert 10 < r["peak_rss_mb"] < 1000, name


def test_figures_are_consistent(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    _proc, doc = bench
    for r in doc["results"]:
        if r["rows"] == 0:
            assert r["requests"] == 0
            continue
        if r["group"] == "perfect":
            # The same updates, one PUT per row; its CPU is its send loop's, the sandbox's is read beside it.
            assert r["by_endpoint"] == {"PUT /v2/users/{id}": r["rows"]} and r["requests"] == r["rows"] == r["accepted"]
            assert r["marginal_cpu_ms_per_row"] == r["cpu_ms_per_row"] > 0, r["scenario"]
            assert r["sandbox_cpu_ms_per_row"] is not None, r["scenario"]
            continue
        assert r["requests_per_row"] >= 1.0, r["scenario"]
        assert r["requests_per_second"] > 0, r["scenario"]
        assert r["rows_per_second"] > 0, r["scenario"]
        assert r["marginal_cpu_ms_per_row"] is not None, r["scenario"]
        assert r["startup_seconds"] is not None and r["startup_seconds"] < r["wall_seconds"], r["scenario"]
        # The connector's last progress line carries its in-flight target, within [1, max_concurrency].
        assert 1 <= r["in_flight_target"] <= r["config"]["max_concurrency"], r["scenario"]
        startup = r["by_endpoint"].get("GET /v2/activities", 0)  # credits read the activities once at start
        assert r["ok_requests"] == r["requests"] - r["throttled_429"] - startup, r["scenario"]
        if r["cap_rps"] is None:
            assert r["group"] == "overhead" and r["rows_ratio"] is None
            continue
        # Honest ratios: rows and accepted requests over the active window against min(budget, limit),
        # with no burst credit in the denominator.
        budget = r["config"]["max_requests_per_minute"] * r["config"]["connections"]
        cap = min(budget, r["config"]["sandbox_limit_per_minute"]) / 60
        assert r["cap_rps"] == pytest.approx(cap, abs=1e-3)
        # (active_seconds is rounded to the millisecond). A grid row whose server limit binds also
        # counts the server's bucket, which starts full, as what a perfect client could have had.
        possible = r["active_seconds"] * cap + r["config"]["burst_credit"]
        assert r["config"]["burst_credit"] == (r["config"]["sandbox_burst"] if r["scenario"] in GRID_BINDING else 0)
        assert r["rows_ratio"] == pytest.approx(r["rows"] / possible, rel=5e-3)
        assert r["ok_ratio"] == pytest.approx(r["ok_requests"] / possible, rel=5e-3)
        # Update touches existing members only: one PUT per row (plus one per 429 answer), nothing else.
        if r["workload"] == "update":
            assert r["by_endpoint"] == {"PUT /v2/users/{id}": r["rows"] + r["throttled_429"]}, r["scenario"]
    by_name = {r["scenario"]: r for r in doc["results"]}
    update_first, create_first = by_name["upsert_new/baseline"], by_name["upsert_new/baseline_create_first"]
    # The baseline is update-first on all-new rows: PUT (404) then POST for every row; create-first POSTs once.
    assert (update_first["requests_per_row"], create_first["requests_per_row"]) == (2.0, 1.0)
    assert (update_first["method"], create_first["method"]) == ("update_first", "create_first")
    assert by_name["upsert_new/default"]["config"]["max_concurrency"] > 1
    assert update_first["config"]["max_concurrency"] == 1
    credit = by_name["credit/rtt5"]
    assert credit["method"] == "every_row" and credit["config"]["award_queue_delay_seconds"] == 0.2
    over = by_name["update/over_limit"]["config"]
    assert (over["max_requests_per_minute"], over["sandbox_limit_per_minute"], over["sandbox_retry_after"]) == (
        9000, 6000, True)
    assert by_name["update/small_burst"]["config"]["sandbox_burst"] == 3
    assert doc["settings"]["connector_defaults"]["max_concurrency"] == 256
    # The grid: 429s on arrival by default, the median of the repetitions, two connections side by side.
    grid = by_name["update/grid_rtt5_0.67x_now_nora_b0.2"]
    assert grid["config"]["sandbox_refuse_immediately"] is True
    assert (grid["config"]["max_requests_per_minute"], grid["config"]["sandbox_limit_per_minute"]) == (9000, 6000)
    assert grid["repeat_ratios"] == [grid["rows_ratio"]]
    pair = by_name["update/pair_rtt5_above_now"]
    assert pair["config"]["connections"] == 2 and len(pair["connections"]) == 2
    assert sum(c["rows"] for c in pair["connections"]) == pair["rows"]
    assert all(c["exit_code"] == 0 and c["of_fair_share"] > 0 for c in pair["connections"])


def test_table_and_targets_are_printed(bench: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    proc, doc = bench
    for name in EXPECTED:
        assert name in proc.stdout
    assert len(doc["targets"]) == TARGETS
    assert {t["status"] for t in doc["targets"]} <= {"PASS", "FAIL", "SKIP"}
    assert len([t for t in doc["targets"] if t["status"] != "SKIP"]) == RUN_TARGETS
    cpu = next(t for t in doc["targets"] if "beside the perfect client" in t["name"])
    assert "x the perfect client's" in cpu["detail"]
    ratio = next(t for t in doc["targets"] if "x the perfect client's (half of issue 20's" in t["name"])
    assert ratio["detail"] == cpu["detail"] and ratio["status"] in ("PASS", "FAIL")
    for t in doc["targets"]:
        assert f"{t['status']:<5} {t['name']}" in proc.stdout
