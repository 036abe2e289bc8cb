"""source-faker users and purchases in one connection, purchases first (issue 18 §2, events before members).

A real source: source-faker 7.2.1 (its own venv, faker_source.py) reads the configured catalog in
its order, here ``purchases`` (-> ``activity_credit``) before ``users`` (-> ``user_profile``), as the
platform may. Each stream maps its own column to the matching key (``field_mapping`` per stream:
a purchase's ``user_id``, a user's ``id``). Every purchase must be credited once to its user, every
user created, and every state echoed with exact counts, with the early stop on systematic
rejection left on (a first sync used to stop on the purchases' ``not_found`` before any user).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from faker_source import InstallReport, discover, pipe_source_into

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions

USERS = 150
SEED = 42
DESTINATION = Path(sys.executable).parent / "destination-crowdtwist"


def _catalog(discovered: dict[str, Any]) -> dict[str, Any]:
    streams = {stream["name"]: stream for stream in discovered["streams"]}
    return {"streams": [
        {"stream": streams["purchases"], "sync_mode": "full_refresh", "destination_sync_mode": "append",
         "destination_object_name": "activity_credit", "primary_key": [["third_party_id"]]},
        {"stream": streams["users"], "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
         "destination_object_name": "user_profile", "primary_key": [["third_party_id"]]},
    ]}


@pytest.mark.slow
@pytest.mark.tools
@pytest.mark.timeout(600)  # the first run installs source-faker inside this test's setup
def test_purchases_before_users_from_source_faker_are_all_credited(tmp_path: Path, source_faker: InstallReport) -> None:
    exe = source_faker.executable
    faker_config = tmp_path / "faker.json"
    faker_config.write_text(json.dumps({
        "count": USERS, "seed": SEED, "records_per_slice": 50, "parallelism": 1, "always_updated": False,
    }))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(_catalog(discover(exe, faker_config))))
    with Sandbox(SandboxOptions(api_key=DEFAULT_API_KEY)) as sb:
        dest_config = tmp_path / "destination.json"
        dest_config.write_text(json.dumps({
            "api_base_url": sb.base_url,
            "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY},
            "unmapped_fields": "drop",
            "default_activity_id": "1001",
            "progress_interval_seconds": 0,
            "field_mapping": [
                {"stream": "purchases", "source": "user_id", "destination": "third_party_id"},
                {"stream": "purchases", "source": "id", "destination": "event_id"},
                {"stream": "users", "source": "id", "destination": "third_party_id"},
                {"stream": "users", "source": "email", "destination": "email_address"},
                {"stream": "users", "source": "name", "destination": "first_name"},
                {"stream": "users", "source": "name", "destination": "last_name"},
                # faker's postal codes are 5 digits: a US ZIP, which is location enough for CrowdTwist.
                {"stream": "users", "source": "address.postal_code", "destination": "postal_code"},
            ],
        }))
        pipe = pipe_source_into(
            [str(exe), "read", "--config", str(faker_config), "--catalog", str(catalog)],
            [str(DESTINATION), "write", "--config", str(dest_config), "--catalog", str(catalog)],
        )
        members = {m["third_party_id"]: m for m in sb.members() if m.get("third_party_id")}
        credits = sb.credits()
    print(f"purchases first: pipe ran {pipe.seconds:.1f} s")
    assert pipe.source_returncode == 0, pipe.source_stderr[-2000:]
    assert pipe.destination_returncode == 0, pipe.destination_stderr[-3000:]

    records = pipe.source_of_type("RECORD")
    order = [m["record"]["stream"] for m in records]
    assert order.index("users") > order.index("purchases")  # the credit stream really came first
    assert order[: order.index("users")] == ["purchases"] * order.index("users")
    purchases = [m["record"]["data"] for m in records if m["record"]["stream"] == "purchases"]
    users = [m["record"]["data"] for m in records if m["record"]["stream"] == "users"]
    assert len(users) == USERS and purchases

    assert sorted(members) == sorted(str(u["id"]) for u in users)  # every user created
    by_member = Counter(c["user_id"] for c in credits)
    expected = Counter(members[str(p["user_id"])]["id"] for p in purchases)
    assert by_member == expected  # every purchase credited once, to its own user

    echoed = pipe.echoed_states()
    source_states = pipe.source_of_type("STATE")
    assert [s["id"] for s in echoed] == [s["state"]["id"] for s in source_states]
    for state, segment in zip(echoed, pipe.segments(), strict=True):
        stats = state["destinationStats"]
        assert stats["recordCount"] + stats["rejectedRecordCount"] == len(segment), state["id"]
    assert sum(s["destinationStats"]["rejectedRecordCount"] for s in echoed) == 0
    logs = [m["log"]["message"] for m in pipe.destination_messages if m.get("type") == "LOG"]
    waited = [line for line in logs if "rows arrived before their member" in line]
    assert waited == [f"{len(purchases)} rows arrived before their member and waited for the member streams: "
                      f"{len(purchases)} were then written, 0 rejected as not found."]
