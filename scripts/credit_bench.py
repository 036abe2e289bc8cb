"""Measure which Activity Credit rows need a history read and the award-queue wait (issue 20), with bench.py's driver.

    .venv/bin/python scripts/credit_bench.py                 # 300 members, 2 credits each (~2 minutes)
    .venv/bin/python scripts/credit_bench.py --members 100   # a smoke run

The sandbox runs in its own process as in ``scripts/bench.py``: 100 ms round trip, limit = budget = the
connector's default (9,000/min), ``credit_verification: every_row`` and ``award_queue_delay_seconds`` at their
defaults (10 s). Every case credits two rows per member, scattered over the members (bench.py's credit data):

1. ``new_members``: each member's profile row (new members, upsert), then its credits, in one sync: the members
   are created by this sync, so no credit needs a history read (``writers/created_members.py``).
2. ``existing_members``: the same rows, the members created by an earlier sync: every member's history is read
   once, after the award-queue wait (what case 1 cost before).
3. ``credits_only``: the credit rows alone, members existing, no ledger (bench.py's ``credit/...`` rows).
4. ``ledger_quiet``: the credit rows alone with a local ledger that knows earlier events (trusted), a tenth of the
   rows' events ``pending`` from a session that closed quietly a minute ago: their members' histories are read
   at once (``writers/ledger.py``), every other row is sent without a read.
5. ``ledger_killed``: as 4, the pending keys left by a killed session (no quiet close): the reads wait.

Per case: the start (launch to the first request for a row), rows/s over the active window (first to last such
request) as a share of the budget, requests per row and history reads, from the sandbox's own counters.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import bench  # noqa: E402

from destination_crowdtwist.writers.ledger import CreditLedger, event_key, ledger_scope  # noqa: E402

PROFILES, CREDITS = "members", "purchases"
HISTORY = "GET /v2.1/users/{id}/activity_history"
CREDIT = "POST /v2/users/{id}/activities"
BUDGET = 9000
LATENCY_MS = 100.0


def member(i: int) -> dict[str, Any]:
    return {"email_address": bench.email(i), "first_name": "Bench", "last_name": f"Row{i}", "postal_code": "10010"}


def credit_row(i: int, members: int) -> dict[str, Any]:
    return {"email_address": bench.email((i * 7919) % members), "activity_id": bench.ACTIVITY_ID, "num_points": 5,
            "event_id": f"bench-{i}"}


def write_case(workdir: Path, base_url: str, members: int, *, profiles: bool, ledger: Path | None,
               award_delay: float | None) -> int:
    """Config, catalog and input of one case; returns its rows."""
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"api_base_url": base_url, "credentials": {"auth_type": "api_key", "api_key": bench.API_KEY},
                              "object_type": "activity_credit", "max_requests_per_minute": BUDGET}
    if award_delay is not None:
        config["award_queue_delay_seconds"] = award_delay
    if ledger is not None:
        config["ledger_path"] = str(ledger)
    (workdir / "config.json").write_text(json.dumps(config))
    # Routed by destination_object_name; the primary key is the matching key (the member's email).
    streams = [(CREDITS, "activity_credit", "append", [["email_address"]])]
    if profiles:
        streams.insert(0, (PROFILES, "user_profile", "append_dedup", [["email_address"]]))
    (workdir / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": {"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": mode, "destination_object_name": obj, "primary_key": key,
    } for name, obj, mode, key in streams]}))
    rows: list[tuple[str, dict[str, Any]]] = [(PROFILES, member(i)) for i in range(members)] if profiles else []
    rows += [(CREDITS, credit_row(i, members)) for i in range(2 * members)]
    every = max(1, len(rows) // 10)
    with (workdir / "messages.jsonl").open("w") as fh:
        for n, (stream, data) in enumerate(rows, 1):
            fh.write(json.dumps({"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 0}}) + "\n")
            if n % every == 0 or n == len(rows):
                fh.write(json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": {
                    "shared_state": {"n": n}, "stream_states": []}}}) + "\n")
    return len(rows)


def seed_ledger(path: Path, base_url: str, members: int, *, quiet: bool) -> int:
    """Earlier events (done) and a tenth of this run's events pending; returns the pending count."""
    ago = time.time() - 60
    ledger = CreditLedger(str(path), scope=ledger_scope(base_url), clock=lambda: ago)
    for i in range(members):
        ledger.mark_done(event_key("email", bench.email(i), bench.ACTIVITY_ID, f"earlier-{i}"), "credited")
    pending = range(0, 2 * members, 10)
    for i in pending:
        row = credit_row(i, members)
        ledger.mark_pending(event_key("email", row["email_address"], bench.ACTIVITY_ID, row["event_id"]), session="earlier")
    if quiet:
        ledger.close_session("earlier", quiet=True)
    ledger.close()
    return len(pending)


def run_case(name: str, sandbox: bench.SandboxProcess, workroot: Path, members: int, *, profiles: bool,
             seeded: bool, ledger: str | None, award_delay: float | None = None) -> dict[str, Any]:
    workdir = workroot / name
    workdir.mkdir(parents=True, exist_ok=True)
    ledger_path = workdir / "ledger.sqlite" if ledger else None
    rows = write_case(workdir, sandbox.base_url, members, profiles=profiles, ledger=ledger_path,
                      award_delay=award_delay)
    sandbox.admin("POST", "options", {
        "latency_ms": LATENCY_MS, "rate_limit_per_minute": BUDGET, "rate_limit_algorithm": "token_bucket",
        "rate_limit_burst": BUDGET // 60, "retry_after": True, "refuse_immediately": True,
        "hmac_public_key": None, "hmac_private_key": None,
        "members": [{"email_address": bench.email(i), "first_name": "Seed", "last_name": f"Member{i}",
                     "postal_code": "10010"} for i in range(members)] if seeded else [],
    })
    sandbox.admin("POST", "reset")
    pending = seed_ledger(ledger_path, sandbox.base_url, members, quiet=ledger == "quiet") if ledger_path else 0
    child = bench.run_connectors(sandbox, [workdir], timeout=300)[0]
    counters = sandbox.counters()
    out = bench.parse_output(workdir / "stdout.jsonl")
    active = None
    if child.first_request is not None and child.last_request is not None:
        active = max(child.last_request - child.first_request, bench.POLL_SECONDS)
    cap = BUDGET / 60.0
    credits = len({c.get("extra_data", {}).get("airbyte_dedupe_key") for c in sandbox.admin("GET", "credits")})
    return {
        "case": name, "rows": rows, "exit_code": child.exit_code, "errors": out.errors[:2],
        "accepted": out.accepted, "rejected": out.rejected, "pending_keys": pending,
        "start_s": round(child.first_request, 2) if child.first_request is not None else None,
        "active_s": round(active, 2) if active else None, "wall_s": round(child.wall, 2),
        "rows_per_s": round(rows / active, 1) if active else None,
        "rows_share_of_budget": round(rows / (cap * active), 3) if active else None,
        "end_to_end_rows_per_s": round(rows / child.wall, 1),
        "requests_per_row": round(counters.get("total", 0) / rows, 3),
        "history_reads": counters.get(HISTORY, 0), "credit_requests": counters.get(CREDIT, 0),
        "distinct_credits": credits, "429": counters.get("429", 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=300, help="members; each gets two credit rows")
    parser.add_argument("--award-delay", type=float, help="award_queue_delay_seconds (default: the connector's, 10)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    cases = [
        ("new_members", {"profiles": True, "seeded": False, "ledger": None}),
        ("existing_members", {"profiles": True, "seeded": True, "ledger": None}),
        ("credits_only", {"profiles": False, "seeded": True, "ledger": None}),
        ("ledger_quiet", {"profiles": False, "seeded": True, "ledger": "quiet"}),
        ("ledger_killed", {"profiles": False, "seeded": True, "ledger": "killed"}),
    ]
    results = []
    with tempfile.TemporaryDirectory(prefix="credit-bench-") as tmp:
        workroot = Path(tmp)
        with bench.SandboxProcess(workroot) as sandbox:
            for name, kw in cases:
                result = run_case(name, sandbox, workroot, args.members, award_delay=args.award_delay,
                                  **kw)  # type: ignore[arg-type]
                results.append(result)
                print(json.dumps(result), flush=True)
    header = ("case", "rows", "start_s", "rows_per_s", "rows_share_of_budget", "end_to_end_rows_per_s",
              "requests_per_row", "history_reads", "credit_requests", "distinct_credits", "pending_keys", "exit_code")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in results:
        print("| " + " | ".join(str(r[h]) for h in header) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
