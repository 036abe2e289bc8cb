"""field_mapping per stream: members and purchases in one connection, each with its own rules (issue 18 §2).

source-faker's ``users`` identify a member by ``id`` and its ``purchases`` by ``user_id`` (their own
``id`` is the purchase's). With one global list, ``id -> third_party_id`` and ``user_id ->
third_party_id`` both applied to a purchase, and which one won depended on the order of the rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from test_members_later import catalog_json, line_record, line_state

from crowdtwist_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
USERS, PURCHASES = "users", "purchases"
N = 5


def run(tmp_path: Path, config: dict[str, Any], lines: list[str]) -> tuple[list[dict[str, Any]], str]:
    cfg_path, cat_path = tmp_path / "config.json", tmp_path / "catalog.json"
    cfg_path.write_text(json.dumps(config))
    cat_path.write_text(json.dumps(catalog_json(
        (USERS, "user_profile", "append_dedup", [["third_party_id"]]),
        (PURCHASES, "activity_credit", "append", [["third_party_id"]]),
    )))
    out = subprocess.run(
        [*MAIN, "write", "--config", str(cfg_path), "--catalog", str(cat_path)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()], out.stdout


def test_users_and_purchases_each_map_their_own_column_to_the_matching_key(sandbox: Sandbox, tmp_path: Path) -> None:
    lines = [line_record({"id": i, "name": f"User{i}", "email": f"u{i}@example.com", "postal": "10001"}, USERS)
             for i in range(1, N + 1)]
    lines.append(line_state(1, USERS))
    # Purchase i belongs to user N + 1 - i: its own id names another member.
    lines += [line_record({"id": i, "user_id": N + 1 - i, "product_id": 40 + i, "points": i}, PURCHASES)
              for i in range(1, N + 1)]
    lines.append(line_state(2, PURCHASES))
    config = {
        "api_base_url": sandbox.base_url,
        "credentials": {"auth_type": "api_key", "api_key": sandbox.options.api_key},
        "progress_interval_seconds": 0,
        "award_queue_delay_seconds": 0.2,
        "default_activity_id": "1001",  # purchases have no activity column
        "unmapped_fields": "drop",
        "field_mapping": [
            # The purchases' rule first: with one global list the users' rule, later, would win on purchases.
            {"stream": PURCHASES, "source": "user_id", "destination": "third_party_id"},
            {"stream": PURCHASES, "source": "points", "destination": "num_points"},
            {"stream": PURCHASES, "source": "id", "destination": "event_id"},
            {"stream": USERS, "source": "id", "destination": "third_party_id"},
            {"source": "name", "destination": "first_name"},  # every stream (purchases have no name)
            {"stream": USERS, "source": "name", "destination": "last_name"},
            {"stream": USERS, "source": "email", "destination": "email_address"},
            {"stream": USERS, "source": "postal", "destination": "postal_code"},
        ],
    }
    messages, _ = run(tmp_path, config, lines)

    states = [m["state"] for m in messages if m["type"] == "STATE"]
    assert [(s["id"], s["destinationStats"]["recordCount"], s["destinationStats"]["rejectedRecordCount"])
            for s in states] == [(1, N, 0), (2, N, 0)]
    members = {m["third_party_id"]: m for m in sandbox.members() if m.get("third_party_id")}
    assert sorted(members) == [str(i) for i in range(1, N + 1)]
    assert members["1"]["first_name"] == "User1" and members["1"]["email_address"] == "u1@example.com"
    by_member = {c["user_id"]: c["num_points"] for c in sandbox.credits()}
    # Purchase i (i points) is credited to user N + 1 - i, not to user i.
    assert by_member == {members[str(N + 1 - i)]["id"]: i for i in range(1, N + 1)}
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert "Activity Credit: stream purchases: fields ignored (not credit fields): 'product_id'." in logs


def test_a_rule_for_a_stream_the_catalog_lacks_is_reported(sandbox: Sandbox, tmp_path: Path) -> None:
    config = {
        "api_base_url": sandbox.base_url,
        "credentials": {"auth_type": "api_key", "api_key": sandbox.options.api_key},
        "progress_interval_seconds": 0,
        "field_mapping": [{"stream": "purchase", "source": "user_id", "destination": "third_party_id"}],
    }
    messages, _ = run(tmp_path, config, [line_state(1, USERS)])
    warnings = [m["log"]["message"] for m in messages if m["type"] == "LOG" and m["log"]["level"] == "WARN"]
    assert any("field_mapping has rules for stream 'purchase', which is not in this connection's catalog" in w
               for w in warnings), warnings
