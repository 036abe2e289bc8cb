"""`make demo`: two real syncs into the embedded CrowdTwist sandbox, through the real entry point.

1. User Profile, upsert: examples/users.jsonl (300 rows, some bad) into a program with the custom
   attribute "tier" and 40 existing members.
2. Activity Credit: examples/credits.jsonl (credits with duplicates and bad rows), run twice to
   show that a re-run credits nothing twice (with a local ledger).

Prints the connector's own summary and what the sandbox holds afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions  # noqa: E402

EXAMPLES = ROOT / "examples"
DEMO_DIR = ROOT / ".demo"
CONNECTOR = [sys.executable, str(ROOT / "main.py")]


def run_sync(title: str, config: dict[str, Any], catalog: Path, messages: Path, work: Path) -> None:
    cfg = work / "config.json"
    cfg.write_text(json.dumps(config))
    print(f"\n=== {title} ===")
    print(f"$ destination-crowdtwist write --config config.json --catalog {catalog.name} < {messages.name}")
    with messages.open("rb") as stdin:
        proc = subprocess.run(
            [*CONNECTOR, "write", "--config", str(cfg), "--catalog", str(catalog)],
            stdin=stdin, capture_output=True, text=True, check=False,
        )
    states = 0
    rejected_shown = 0
    in_summary = False
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg["type"] == "STATE":
            states += 1
            s = msg["state"]
            stats = s.get("destinationStats", {})
            print(f"  STATE id={s.get('id')} echoed: recordCount={stats.get('recordCount'):.0f} "
                  f"rejectedRecordCount={stats.get('rejectedRecordCount'):.0f}")
        elif msg["type"] == "LOG":
            text = msg["log"]["message"]
            if text.startswith(("Sync summary", "Dry run summary")):
                in_summary = True
            if text.startswith("Writing complete"):
                in_summary = False
            elif in_summary or text.startswith(("Progress", "Activity Credit:")):
                print(f"  {text}")
            elif text.startswith("Rejected row") and rejected_shown < 4:
                rejected_shown += 1
                print(f"  {text}")
        elif msg["type"] == "TRACE" and msg["trace"].get("error"):
            print(f"  ERROR: {msg['trace']['error']['message']}")
    print(f"  exit code {proc.returncode}, {states} states echoed")
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(proc.returncode)


def main() -> None:
    existing = [
        {"email_address": f"member{i:04d}@example.com", "first_name": "Existing", "last_name": "Member",
         "postal_code": "10001"}
        for i in range(0, 40)
    ]
    options = SandboxOptions(custom_attributes=("tier",), members=tuple(existing), queue_delay_ms=50)
    with Sandbox(options) as sb, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"CrowdTwist sandbox running at {sb.base_url} (API key auth, custom attribute 'tier', "
              f"{len(sb.members())} existing members)")
        base = {
            "api_base_url": sb.base_url,
            "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY},
            "user_identifier_type": "email",
        }
        # Kept after the demo (git-ignored), so the path the sync summary prints can be opened.
        DEMO_DIR.mkdir(exist_ok=True)
        rejects = DEMO_DIR / "rejected.jsonl"
        rejects.unlink(missing_ok=True)
        run_sync(
            "User Profile sync (upsert, 300 rows)",
            {**base, "object_type": "user_profile", "rejected_records_path": str(rejects)},
            EXAMPLES / "catalog_users.json", EXAMPLES / "users.jsonl", work,
        )
        first = json.loads(rejects.read_text().splitlines()[0])
        print(f"  first line of the rejected-records file {rejects.relative_to(ROOT)} (PII masked): "
              f"{json.dumps(first)[:300]}")
        print(f"  sandbox now holds {len(sb.members())} members")

        ledger = work / "ledger.sqlite"
        credit_config = {**base, "object_type": "activity_credit", "award_queue_delay_seconds": 0.5,
                         "ledger_path": str(ledger)}
        run_sync("Activity Credit sync", credit_config, EXAMPLES / "catalog_credits.json",
                 EXAMPLES / "credits.jsonl", work)
        credited = [c for c in sb.credits() if c.get("awarded")]
        print(f"  sandbox recorded {len(credited)} awarded credits, "
              f"{sum(int(c.get('num_points') or 0) for c in credited)} points")
        run_sync("Activity Credit sync again (a re-run: nothing is credited twice)", credit_config,
                 EXAMPLES / "catalog_credits.json", EXAMPLES / "credits.jsonl", work)
        again = [c for c in sb.credits() if c.get("awarded")]
        print(f"  sandbox still records {len(again)} awarded credits")
        counts = sb.request_counts()
        print(f"\nRequests served by the sandbox: {counts.get('total')} "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()) if k.startswith(('GET', 'PUT', 'POST')))})")


if __name__ == "__main__":
    main()
