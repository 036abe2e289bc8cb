"""Throughput benchmark of the connector against the local CrowdTwist sandbox (``make bench``).

    .venv/bin/python scripts/bench.py                 # full run, ~5 minutes
    .venv/bin/python scripts/bench.py --quick         # smoke version, well under a minute
    .venv/bin/python scripts/bench.py --memory        # adds the 200,000-row peak-RSS run
    .venv/bin/python scripts/bench.py --scenarios update,overhead --rows 5000

How it measures, and why:

* The sandbox runs as a **separate process** (``crowdtwist-sandbox``), so its CPU is never counted
  as the connector's; it is reconfigured between scenarios through its admin API
  (``POST /__sandbox/options`` then ``/__sandbox/reset``), which also seeds the existing members.
* The connector runs through its **real entry point** (``destination-crowdtwist write --config ...
  --catalog ... < messages.jsonl``) as a child process; its CPU time and peak RSS come from
  ``os.wait4`` (the child's own rusage, nothing else mixed in).
* Request counts come from the **sandbox's counters** (what reached the API), not the connector's.
  While the connector runs, the counters are polled every 0.1 s, which gives the *active window*
  (first to last API request). Requests/s and rows/s are computed over that window, so they are
  steady-state figures; the process start-up (imports, config parsing) is reported apart.
* The sandbox rate limit is a **token bucket with a one-second burst**: a 60-second sliding window
  would let a 30-second run burst through without ever meeting the limit, which measures nothing.
* The "physical limit" of a scenario is ``min(sandbox limit, connector budget, concurrency /
  latency)`` in requests/s: no connector can do better than that with this configuration.
* A STATE message follows every tenth of the rows, as a source would send them. For Activity Credit
  this matters: with the default ``credit_verification=replay_window`` the rows before the first
  state are verified against activity history (one extra read per distinct member), and a barrier
  waits at each state. ``award_queue_delay_seconds`` is set to 0.2 s for the bench (the default,
  10 s, would only add a fixed wait at the start of every credit run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONNECTOR = BIN / "destination-crowdtwist"
SANDBOX = BIN / "crowdtwist-sandbox"
API_KEY = "ctsbx_3f9a2c7e1b8d4e6f9a0b3c5d7e9f1a2b"  # the sandbox's public dummy key
HMAC_PUBLIC = "CTPUBsbx7Kq2Wm9Zr4Tn6Yp1Xc8Vb3Nd5Lf0"
HMAC_PRIVATE = "CTPRIVsbxH4s9Jd2Kf7Lg1Qw6Er3Ty8Ui5Op0Az"
STREAM = "bench"
ACTIVITY_ID = "1001"  # "Ad Hoc Points" in the sandbox defaults; no frequency cap
POLL_SECONDS = 0.1
# The connector's max_requests_per_minute ceiling (spec.json): "no connector-side limit".
UNLIMITED_BUDGET = 100_000
# Members listed back from the sandbox to check what landed; above this only the states are checked.
VERIFY_LIMIT = 20_000

WORKLOADS = ("upsert_new", "upsert_existing", "update", "credit")
GROUPS = ("baseline", "default", "half_budget", "overhead", "memory")


# --------------------------------------------------------------------------------------------------
# scenarios


@dataclass(frozen=True)
class Scenario:
    """One connector run: a workload, the sandbox's knobs and the connector's config."""

    workload: str  # upsert_new | upsert_existing | update | credit | empty
    group: str  # baseline | default | half_budget | overhead | memory
    rows: int
    latency_ms: float
    sandbox_limit: int | None  # requests per minute; None = no limit
    budget: int  # connector max_requests_per_minute
    concurrency: int | None  # None = the connector's default (spec.json)
    upsert_strategy: str | None = None  # None = the connector's default
    note: str = ""

    @property
    def name(self) -> str:
        """``workload/group``, e.g. ``update/default``."""
        return f"{self.workload}/{self.group}"

    def effective_concurrency(self, default: int) -> int:
        """Worker threads the connector will run."""
        return self.concurrency if self.concurrency is not None else default

    def physical_limit(self, default_concurrency: int) -> float:
        """The best possible requests/s for this configuration (inf when nothing bounds it)."""
        bounds = [self.budget / 60.0]
        if self.sandbox_limit is not None:
            bounds.append(self.sandbox_limit / 60.0)
        if self.latency_ms > 0:
            bounds.append(self.effective_concurrency(default_concurrency) / (self.latency_ms / 1000.0))
        return min(bounds)


@dataclass
class Result:
    """What one scenario measured."""

    scenario: str
    workload: str
    group: str
    config: dict[str, Any]
    rows: int
    exit_code: int
    wall_seconds: float
    startup_seconds: float | None
    active_seconds: float | None
    rows_per_second: float | None
    requests: int
    requests_per_row: float
    requests_per_second: float | None
    physical_limit_rps: float | None
    limit_ratio: float | None
    throttled_429: int
    accepted: int
    rejected: int
    lost: int
    landed: int | None  # rows whose effect is visible in the sandbox (None: not checked)
    cpu_seconds: float
    cpu_seconds_per_1000_rows: float
    marginal_cpu_ms_per_row: float | None
    peak_rss_mb: float
    by_endpoint: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    note: str = ""


def spec_defaults() -> dict[str, Any]:
    """Defaults of the connector's spec.json (the single source of truth)."""
    spec = json.loads((ROOT / "spec.json").read_text(encoding="utf-8"))
    props = spec["connectionSpecification"]["properties"]
    return {name: prop["default"] for name, prop in props.items() if "default" in prop}


def build_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario of this run, in execution order."""
    lat, limit = args.latency_ms, args.rate_limit
    # First: the fixed cost of a run, subtracted from every later run's CPU ("ms/row+").
    empty = Scenario("empty", "overhead", 0, 0.0, None, UNLIMITED_BUDGET, None, None,
                     "no rows: the fixed cost of one connector run (start-up, imports)")
    out: list[Scenario] = [empty]
    for workload in WORKLOADS:
        # The reference connector's method: one row at a time, always PUT first.
        out.append(Scenario(workload, "baseline", args.baseline_rows, lat, limit, limit, 1, "update_first",
                            "reference method: max_concurrency 1, upsert_strategy update_first"))
        out.append(Scenario(workload, "default", args.rows, lat, limit, limit, None, None,
                            "connector defaults; max_requests_per_minute = sandbox limit"))
    half = max(1, limit // 2)
    out.append(Scenario("update", "half_budget", args.half_rows, lat, half, limit, None, None,
                        f"sandbox limit {half}/min, connector budget {limit}/min"))
    for workload in ("upsert_new", "update"):
        out.append(Scenario(workload, "overhead", args.overhead_rows, 0.0, None, UNLIMITED_BUDGET, None, None,
                            "latency 0, no rate limit: connector CPU per row"))
    if args.memory:
        out.append(Scenario("upsert_new", "memory", args.memory_rows, 0.0, None, UNLIMITED_BUDGET, None, None,
                            "latency 0, no rate limit: peak RSS"))
    if args.scenarios:
        wanted = [w.strip() for w in args.scenarios.split(",") if w.strip()]
        out = [s for s in out if any(w in (s.group, s.workload, s.name) for w in wanted)]
        if out and out[0] is not empty:
            out.insert(0, empty)
    return out


# --------------------------------------------------------------------------------------------------
# input generation


def email(i: int) -> str:
    """The i-th bench member's e-mail (the user_id)."""
    return f"bench.member{i:07d}@example.com"


def member_pool(scenario: Scenario) -> int:
    """How many distinct members the rows touch (credits: two rows per member on average)."""
    if scenario.workload == "credit":
        return max(1, scenario.rows // 2)
    return scenario.rows


def seeded_members(scenario: Scenario) -> list[dict[str, Any]]:
    """Members that must exist before the run (empty for all-new upserts)."""
    if scenario.workload not in ("upsert_existing", "update", "credit"):
        return []
    return [
        {"email_address": email(i), "first_name": "Seed", "last_name": f"Member{i}", "postal_code": "10010"}
        for i in range(member_pool(scenario))
    ]


def record_data(scenario: Scenario, i: int) -> dict[str, Any]:
    """The i-th input row."""
    if scenario.workload == "credit":
        # Spread over the pool in a scattered order so one member's rows are not back to back.
        member = (i * 7919) % member_pool(scenario)
        return {"user_id": email(member), "activity_id": ACTIVITY_ID, "num_points": 5, "event_id": f"bench-{i}"}
    # Known CrowdTwist fields only: the sandbox has no custom attributes set up.
    return {"user_id": email(i), "first_name": "Bench", "last_name": f"Row{i}", "postal_code": "10010"}


def sync_mode(scenario: Scenario) -> str:
    """The destination sync mode of the bench stream."""
    return {"update": "update", "credit": "append"}.get(scenario.workload, "append_dedup")


def state_message(n: int, emitted: int) -> dict[str, Any]:
    """A STREAM state after ``emitted`` records."""
    return {
        "type": "STATE",
        "state": {
            "type": "STREAM",
            "stream": {"stream_descriptor": {"name": STREAM}, "stream_state": {"cursor": emitted}},
            "sourceStats": {"recordCount": float(n)},
        },
    }


def write_messages(path: Path, scenario: Scenario) -> int:
    """Write the input (records, a state after every tenth of the rows, a final state); returns #states."""
    every = max(1, math.ceil(scenario.rows / 10))
    states = 0
    since = 0
    emitted_at = int(time.time() * 1000)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(scenario.rows):
            msg = {"type": "RECORD", "record": {"stream": STREAM, "data": record_data(scenario, i),
                                                "emitted_at": emitted_at}}
            fh.write(json.dumps(msg, separators=(",", ":")) + "\n")
            since += 1
            if since == every:
                fh.write(json.dumps(state_message(since, i + 1)) + "\n")
                states += 1
                since = 0
        if since or states == 0:
            fh.write(json.dumps(state_message(since, scenario.rows)) + "\n")
            states += 1
    return states


def write_config(path: Path, scenario: Scenario, base_url: str, *, hmac: bool) -> dict[str, Any]:
    """Write the connector config; returns the bench-relevant part of it (for the report)."""
    config: dict[str, Any] = {
        "api_base_url": base_url,
        "credentials": (
            {"auth_type": "hmac", "public_key": HMAC_PUBLIC, "private_key": HMAC_PRIVATE}
            if hmac
            else {"auth_type": "api_key", "api_key": API_KEY}
        ),
        "object_type": "activity_credit" if scenario.workload == "credit" else "user_profile",
        "max_requests_per_minute": scenario.budget,
    }
    if scenario.concurrency is not None:
        config["max_concurrency"] = scenario.concurrency
    if scenario.upsert_strategy is not None:
        config["upsert_strategy"] = scenario.upsert_strategy
    if scenario.workload == "credit":
        # Bench only: the default 10 s would add a fixed pause before the first verified row.
        config["award_queue_delay_seconds"] = 0.2
    path.write_text(json.dumps(config), encoding="utf-8")
    shown = {k: v for k, v in config.items() if k not in ("api_base_url", "credentials")}
    shown["auth"] = "hmac" if hmac else "api_key"
    shown["sync_mode"] = sync_mode(scenario)
    return shown


def write_catalog(path: Path, scenario: Scenario) -> None:
    """A one-stream configured catalog."""
    catalog = {
        "streams": [
            {
                "stream": {"name": STREAM, "json_schema": {"type": "object"},
                           "supported_sync_modes": ["full_refresh", "incremental"]},
                "sync_mode": "incremental",
                "destination_sync_mode": sync_mode(scenario),
                "primary_key": [["event_id"]] if scenario.workload == "credit" else [["user_id"]],
            }
        ]
    }
    path.write_text(json.dumps(catalog), encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# the sandbox process


class SandboxProcess:
    """``crowdtwist-sandbox`` in its own process, driven through its admin API."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._session = requests.Session()

    def __enter__(self) -> SandboxProcess:
        port_file = self._workdir / "sandbox.port"
        port_file.unlink(missing_ok=True)  # a stale file would point at a dead port
        self._proc = subprocess.Popen(
            [str(SANDBOX), "--port", "0", "--port-file", str(port_file), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=(self._workdir / "sandbox.stderr").open("wb"),
        )
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start; see " + str(self._workdir / "sandbox.stderr"))
            time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{int(port_file.read_text().strip())}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def admin(self, method: str, name: str, body: Any = None) -> Any:
        """Call ``/__sandbox/<name>`` (no auth, no faults, not counted)."""
        response = self._session.request(method, f"{self.base_url}/__sandbox/{name}", json=body, timeout=120)
        response.raise_for_status()
        return response.json()

    def configure(self, scenario: Scenario, *, hmac: bool) -> None:
        """Set latency / rate limit / members for a scenario and start from a clean program."""
        limit = scenario.sandbox_limit
        self.admin("POST", "options", {
            "latency_ms": scenario.latency_ms,
            "rate_limit_per_minute": limit,
            "rate_limit_algorithm": "token_bucket",
            # One second of burst: enforces the rate within seconds (see the module docstring).
            "rate_limit_burst": max(1, limit // 60) if limit else None,
            "hmac_public_key": HMAC_PUBLIC if hmac else None,
            "hmac_private_key": HMAC_PRIVATE if hmac else None,
            "members": seeded_members(scenario),
        })
        self.admin("POST", "reset")  # seeds the members, zeroes the counters, refills the bucket

    def counters(self) -> dict[str, int]:
        """The API request counters since the last reset."""
        data: dict[str, int] = self.admin("GET", "counters")
        return data


# --------------------------------------------------------------------------------------------------
# one run


@dataclass
class _ChildRun:
    exit_code: int
    wall: float
    first_request: float | None  # seconds after start
    last_request: float | None
    cpu: float
    maxrss_kb: int


def run_connector(scenario: Scenario, sandbox: SandboxProcess, workdir: Path, timeout: float) -> _ChildRun:
    """Run ``destination-crowdtwist write`` and watch the sandbox's counters while it runs."""
    cmd = [str(CONNECTOR), "write", "--config", str(workdir / "config.json"),
           "--catalog", str(workdir / "catalog.json")]
    with (workdir / "messages.jsonl").open("rb") as stdin, (workdir / "stdout.jsonl").open("wb") as stdout, \
            (workdir / "stderr.txt").open("wb") as stderr:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, cwd=workdir)
        first: float | None = None
        last: float | None = None
        seen = 0
        killed = False
        while True:
            # os.wait4 rather than Popen.wait: it returns the child's own CPU time and peak RSS.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            now = time.monotonic() - start
            if pid:
                break
            if now > timeout and not killed:
                proc.kill()
                killed = True
            total = sandbox.counters().get("total", 0)
            if total > seen:
                # Between the previous poll and this one; the midpoint halves the error.
                stamp = now - POLL_SECONDS / 2 if seen or first is None else now
                if first is None:
                    first = max(0.0, stamp)
                last = stamp
                seen = total
            time.sleep(POLL_SECONDS)
        proc.returncode = os.waitstatus_to_exitcode(status)
        final = sandbox.counters().get("total", 0)
        if final > seen:
            last = now
            if first is None:
                first = now
    return _ChildRun(
        exit_code=-9 if killed else proc.returncode,
        wall=now,
        first_request=first,
        last_request=last,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
    )


def parse_output(path: Path) -> tuple[int, int, int, dict[str, int], list[str]]:
    """(states echoed, accepted, rejected, outcomes from the summary, error messages) from stdout."""
    states = accepted = rejected = 0
    outcomes: dict[str, int] = {}
    errors: list[str] = []
    in_summary = False
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            kind = msg.get("type")
            if kind == "STATE":
                states += 1
                stats = msg["state"].get("destinationStats") or {}
                accepted += int(stats.get("recordCount") or 0)
                rejected += int(stats.get("rejectedRecordCount") or 0)
            elif kind == "TRACE" and msg.get("trace", {}).get("type") == "ERROR":
                errors.append(str(msg["trace"]["error"].get("message")))
            elif kind == "LOG":
                text = msg["log"].get("message", "")
                if text.startswith("Sync summary"):
                    in_summary = True
                    continue
                if in_summary and text.startswith("  ") and ":" in text:
                    name, _, count = text.strip().partition(":")
                    if count.strip().isdigit():
                        outcomes[name] = int(count)
                        continue
                in_summary = False
    return states, accepted, rejected, outcomes, errors


def landed(scenario: Scenario, sandbox: SandboxProcess) -> int | None:
    """Rows whose effect the sandbox shows: credits recorded, or members created / updated."""
    if scenario.rows == 0 or scenario.rows > VERIFY_LIMIT:
        return None
    if scenario.workload == "credit":
        keys = {c.get("extra_data", {}).get("airbyte_dedupe_key") for c in sandbox.admin("GET", "credits")}
        return len(keys & {f"bench-{i}" for i in range(scenario.rows)})
    members = sandbox.admin("GET", "members")
    wanted = {email(i) for i in range(scenario.rows)}
    if scenario.workload == "upsert_new":
        return sum(1 for m in members if m.get("email_address") in wanted)
    # Existing members: the row's last_name replaced the seeded one.
    return sum(1 for m in members if m.get("email_address") in wanted and str(m.get("last_name", "")).startswith("Row"))


def run_scenario(
    scenario: Scenario, sandbox: SandboxProcess, workroot: Path, *, hmac: bool, default_concurrency: int,
    fixed_cpu: float | None,
) -> Result:
    """Prepare, run and measure one scenario."""
    workdir = workroot / scenario.name.replace("/", "-")
    workdir.mkdir(parents=True, exist_ok=True)
    write_messages(workdir / "messages.jsonl", scenario)
    config = write_config(workdir / "config.json", scenario, sandbox.base_url, hmac=hmac)
    write_catalog(workdir / "catalog.json", scenario)
    sandbox.configure(scenario, hmac=hmac)
    physical = scenario.physical_limit(default_concurrency)
    # Generous: four times the physical minimum plus start-up, so a slow machine is measured, not killed.
    expected = scenario.rows * 1.3 / min(physical, 2000.0)
    child = run_connector(scenario, sandbox, workdir, timeout=60 + 4 * expected)
    counters = sandbox.counters()
    states, accepted, rejected, outcomes, errors = parse_output(workdir / "stdout.jsonl")
    if child.exit_code != 0 and not errors:
        errors.append(f"exit code {child.exit_code}; see {workdir / 'stderr.txt'}")
    total = counters.get("total", 0)
    active = None
    if child.first_request is not None and child.last_request is not None:
        active = max(child.last_request - child.first_request, POLL_SECONDS)
    rps = total / active if active else None
    rows_ps = scenario.rows / active if active and scenario.rows else None
    marginal = None
    if fixed_cpu is not None and scenario.rows:
        marginal = max(child.cpu - fixed_cpu, 0.0) / scenario.rows * 1000.0
    by_endpoint = {k: v for k, v in counters.items() if " " in k}
    finite = math.isfinite(physical)
    ratio = None
    if active and finite:
        # The sandbox's bucket starts full: one second of burst is part of what the limit allows.
        limit_binds = scenario.sandbox_limit is not None and physical >= scenario.sandbox_limit / 60.0
        burst = max(1, scenario.sandbox_limit // 60) if limit_binds and scenario.sandbox_limit else 0
        ratio = total / (physical * active + burst)
    return Result(
        scenario=scenario.name,
        workload=scenario.workload,
        group=scenario.group,
        config={**config, "sandbox_latency_ms": scenario.latency_ms, "sandbox_limit_per_minute": scenario.sandbox_limit,
                "max_concurrency": scenario.effective_concurrency(default_concurrency), "states": states},
        rows=scenario.rows,
        exit_code=child.exit_code,
        wall_seconds=round(child.wall, 3),
        startup_seconds=round(child.first_request, 3) if child.first_request is not None else None,
        active_seconds=round(active, 3) if active is not None else None,
        rows_per_second=round(rows_ps, 2) if rows_ps is not None else None,
        requests=total,
        requests_per_row=round(total / scenario.rows, 4) if scenario.rows else 0.0,
        requests_per_second=round(rps, 2) if rps is not None else None,
        physical_limit_rps=round(physical, 2) if finite else None,
        limit_ratio=round(ratio, 4) if ratio is not None else None,
        throttled_429=counters.get("429", 0),
        accepted=accepted,
        rejected=rejected,
        lost=scenario.rows - accepted - rejected,
        landed=landed(scenario, sandbox),
        cpu_seconds=round(child.cpu, 3),
        cpu_seconds_per_1000_rows=round(child.cpu / scenario.rows * 1000, 4) if scenario.rows else 0.0,
        marginal_cpu_ms_per_row=round(marginal, 4) if marginal is not None else None,
        peak_rss_mb=round(child.maxrss_kb / 1024.0, 1),
        by_endpoint=by_endpoint,
        outcomes=outcomes,
        errors=errors,
        note=scenario.note,
    )


# --------------------------------------------------------------------------------------------------
# targets and report


@dataclass(frozen=True)
class Target:
    """One PASS/FAIL line."""

    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str


def _find(results: list[Result], name: str) -> Result | None:
    return next((r for r in results if r.scenario == name), None)


def evaluate(results: list[Result]) -> list[Target]:
    """The issue's targets, checked against this run's figures."""
    out: list[Target] = []

    def check(name: str, ok: bool | None, detail: str) -> None:  # noqa: FBT001 - a table row: name, verdict, detail
        out.append(Target(name, "SKIP" if ok is None else ("PASS" if ok else "FAIL"), detail))

    for workload in ("update", "credit"):
        r = _find(results, f"{workload}/default")
        ratio = r.limit_ratio if r else None
        check(f"{workload}/default >= 95% of the limit", None if ratio is None else ratio >= 0.95,
              "not run" if ratio is None or r is None else
              f"{r.requests_per_second:.1f} req/s of {r.physical_limit_rps:.1f} = {ratio:.1%}")
    for workload in ("upsert_new", "upsert_existing"):
        r = _find(results, f"{workload}/default")
        check(f"{workload}/default requests per row <= 1.1", None if r is None else r.requests_per_row <= 1.1,
              "not run" if r is None else f"{r.requests_per_row:.3f} requests/row")
    for workload in WORKLOADS:
        base, ours = _find(results, f"{workload}/baseline"), _find(results, f"{workload}/default")
        if base is None or ours is None or not base.rows_per_second or not ours.rows_per_second:
            check(f"{workload}: >= 10x the sequential baseline", None, "not run")
            continue
        speedup = ours.rows_per_second / base.rows_per_second
        check(f"{workload}: >= 10x the sequential baseline", speedup >= 10,
              f"{ours.rows_per_second:.1f} vs {base.rows_per_second:.2f} rows/s = {speedup:.1f}x")
    r = _find(results, "update/half_budget")
    if r is None:
        check("half budget: no row lost or rejected", None, "not run")
        check("half budget: >= 80% of the sandbox limit", None, "not run")
    else:
        check("half budget: no row lost or rejected", r.exit_code == 0 and r.lost == 0 and r.rejected == 0,
              f"exit {r.exit_code}, {r.lost} lost, {r.rejected} rejected, {r.throttled_429} answers 429")
        ratio = r.limit_ratio
        check("half budget: >= 80% of the sandbox limit", None if ratio is None else ratio >= 0.8,
              "no figure" if ratio is None else
              f"{r.requests_per_second:.1f} req/s of {r.physical_limit_rps:.1f} = {ratio:.1%}")
    overhead = [r for r in results if r.group == "overhead" and r.rows]
    if not overhead:
        check("CPU < 1 ms per row", None, "not run")
    for r in overhead:
        ms = r.marginal_cpu_ms_per_row
        check(f"{r.scenario}: CPU < 1 ms per row", None if ms is None else ms < 1.0,
              "no figure" if ms is None else
              f"{ms:.3f} ms/row beyond the fixed start-up cost ({r.cpu_seconds_per_1000_rows:.3f} ms/row in total)")
    r = _find(results, "upsert_new/memory")
    check("peak RSS < 200 MB for 200k rows", None if r is None else (r.peak_rss_mb < 200 and r.rows >= 200_000),
          "not run (use --memory)" if r is None else f"{r.peak_rss_mb:.1f} MB for {r.rows} rows")
    return out


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[Result]) -> str:
    """The human-readable table."""
    head = (f"{'scenario':<24}{'conc':>5}{'rows':>8}{'wall s':>8}{'start s':>8}{'rows/s':>9}{'requests':>9}"
            f"{'req/row':>8}{'req/s':>8}{'limit':>8}{'%limit':>7}{'429':>6}{'lost':>5}{'rej':>5}"
            f"{'CPU s/1k':>9}{'ms/row+':>8}{'RSS MB':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.scenario:<24}{r.config.get('max_concurrency', '-'):>5}{r.rows:>8}{r.wall_seconds:>8.1f}"
            f"{_fmt(r.startup_seconds, '.1f'):>8}{_fmt(r.rows_per_second, '.1f'):>9}{r.requests:>9}"
            f"{r.requests_per_row:>8.3f}{_fmt(r.requests_per_second, '.1f'):>8}{_fmt(r.physical_limit_rps, '.1f'):>8}"
            f"{_fmt(None if r.limit_ratio is None else r.limit_ratio * 100, '.1f'):>7}{r.throttled_429:>6}"
            f"{r.lost:>5}{r.rejected:>5}{r.cpu_seconds_per_1000_rows:>9.3f}"
            f"{_fmt(r.marginal_cpu_ms_per_row, '.3f'):>8}{r.peak_rss_mb:>8.1f}"
        )
    lines.append("")
    lines.append("rows/s and req/s are over the active window (first to last API request); 'start s' is the")
    lines.append("time to the first request; 'limit' = min(sandbox limit, budget, concurrency/latency) in req/s;")
    lines.append("'CPU s/1k' = connector CPU seconds per 1,000 rows incl. start-up; 'ms/row+' = CPU per row beyond")
    lines.append("the empty run's fixed cost. '%limit' = requests / (limit x active window + the sandbox's 1-s burst).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, help="rows per default scenario (default 3000; quick 80)")
    p.add_argument("--baseline-rows", type=int, help="rows per baseline scenario (default 150; quick 20)")
    p.add_argument("--half-rows", type=int, help="rows of the half-budget scenario (default 1500; quick 60)")
    p.add_argument("--overhead-rows", type=int, help="rows of the zero-latency CPU runs (default 10000; quick 500)")
    p.add_argument("--memory", action="store_true", help="add the peak-RSS run (200,000 rows, a few minutes)")
    p.add_argument("--memory-rows", type=int, default=200_000)
    p.add_argument("--latency-ms", type=float, help="sandbox latency per request (default 100; quick 5)")
    p.add_argument("--rate-limit", type=int, default=6000, help="sandbox limit, requests/minute (default 6000)")
    p.add_argument("--quick", action="store_true", help="small smoke version (< 60 s); figures are not meaningful")
    p.add_argument("--json", type=Path, default=ROOT / ".bench" / "results.json", help="where to write the JSON")
    p.add_argument("--scenarios", help="comma-separated names, workloads or groups, e.g. 'update/default,overhead'")
    p.add_argument("--hmac", action="store_true", help="HMAC-signed requests instead of the API key")
    p.add_argument("--keep", action="store_true", help="keep the work directory (inputs, connector output)")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (("rows", 3000, 80), ("baseline_rows", 150, 20), ("half_rows", 1500, 60),
                              ("overhead_rows", 10_000, 500), ("latency_ms", 100.0, 5.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a run failed or lost rows (slow figures are not errors)."""
    args = parse_args(argv)
    scenarios = build_scenarios(args)
    if not scenarios:
        print("no scenario matches --scenarios", file=sys.stderr)
        return 2
    defaults = spec_defaults()
    default_concurrency = int(defaults["max_concurrency"])
    workroot = Path(tempfile.mkdtemp(prefix="bench-", dir=_ensure(ROOT / ".bench")))
    results: list[Result] = []
    fixed_cpu: float | None = None
    started = time.monotonic()
    try:
        with SandboxProcess(workroot) as sandbox:
            for i, scenario in enumerate(scenarios, 1):
                print(f"[{i}/{len(scenarios)}] {scenario.name}: {scenario.rows} rows, "
                      f"latency {scenario.latency_ms:g} ms, sandbox limit {scenario.sandbox_limit or 'none'}/min ...",
                      file=sys.stderr, flush=True)
                result = run_scenario(scenario, sandbox, workroot, hmac=args.hmac,
                                      default_concurrency=default_concurrency, fixed_cpu=fixed_cpu)
                if scenario.workload == "empty":
                    fixed_cpu = result.cpu_seconds
                results.append(result)
                print(f"    {result.wall_seconds:.1f} s, {result.requests} requests, "
                      f"{_fmt(result.rows_per_second, '.1f')} rows/s, exit {result.exit_code}"
                      + (f", errors: {result.errors}" if result.errors else ""), file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    targets = evaluate(results)
    doc = {
        "quick": args.quick,
        "settings": {"latency_ms": args.latency_ms, "rate_limit_per_minute": args.rate_limit, "hmac": args.hmac,
                     "sandbox_rate_limit_algorithm": "token_bucket (burst = 1 s of the limit)",
                     "award_queue_delay_seconds (credit scenarios)": 0.2,
                     "connector_defaults": {k: defaults.get(k) for k in ("max_concurrency", "max_requests_per_minute",
                                                                          "upsert_strategy", "credit_verification")}},
        "total_seconds": round(time.monotonic() - started, 1),
        "results": [asdict(r) for r in results],
        "targets": [asdict(t) for t in targets],
    }
    print(table(results))
    print()
    if args.quick:
        print("(--quick: tiny runs at low latency; the figures below are a smoke check, not a measurement)")
    for t in targets:
        print(f"{t.status:<5} {t.name}: {t.detail}")
    print()
    print("JSON:")
    print(json.dumps(doc, indent=2))
    _ensure(args.json.parent)
    args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.json} ({doc['total_seconds']} s in total)", file=sys.stderr)
    broken = [r for r in results if r.exit_code != 0 or r.lost != 0]
    return 1 if broken else 0


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
