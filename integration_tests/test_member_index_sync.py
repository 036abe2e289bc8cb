"""Member index (member_index_path) against the sandbox: requests per row with a warm index, states
echoed only after the index holds their rows, stale entries, and the skip_unchanged caveat."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from airbyte_cdk.models.airbyte_protocol_serializers import ConfiguredAirbyteCatalogSerializer

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox
from destination_crowdtwist import DestinationCrowdtwist
from destination_crowdtwist.cdk_adapter import load_message
from destination_crowdtwist.writers.member_index import MemberIndex

UPSERT = "append_dedup"


def config(sb: Sandbox, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "api_base_url": sb.base_url,
        "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY},
        "progress_interval_seconds": 0,
        "max_concurrency": 4,
        "member_index_path": str(tmp_path / "members.sqlite"),
        **extra,
    }


def catalog(mode: str = UPSERT) -> Any:
    return ConfiguredAirbyteCatalogSerializer.load({"streams": [{
        "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh",
        "destination_sync_mode": mode,
    }]})


def rec(data: dict[str, Any]) -> Any:
    return load_message({"type": "RECORD", "record": {"stream": "users", "emitted_at": 0, "data": data}})


def state(state_id: int) -> Any:
    return load_message({"type": "STATE", "state": {"type": "STREAM", "id": state_id,
                         "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"n": state_id}}}})


def person(email: str, **extra: Any) -> dict[str, Any]:
    return {"user_id": email, "first_name": "Ann", "last_name": "Lee", "postal_code": "10010", **extra}


def sync(
    cfg: dict[str, Any], rows: list[dict[str, Any]], sb: Sandbox, *, clock: Callable[[], float] = time.time,
    mode: str = UPSERT,
) -> tuple[list[Any], int]:
    """Run one sync of ``rows`` (one state at the end); the echoed states and its request count."""
    before = sb.request_counts().get("total", 0)
    messages = [*(rec(row) for row in rows), state(1)]
    destination = DestinationCrowdtwist(index_clock=clock)
    out = list(destination.write(config=cfg, configured_catalog=catalog(mode), input_messages=iter(messages)))
    return out, sb.request_counts()["total"] - before


def record_count(out: list[Any]) -> float:
    return float(sum(m.state.destinationStats.recordCount for m in out))


def test_mixed_new_and_existing_members_cost_about_one_request_per_row_with_a_warm_index(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    n = 300
    cfg = config(sandbox, tmp_path)
    sync(cfg, [person(f"old{i}@example.com") for i in range(n)], sandbox)  # warms the index
    # Half known members (changed, so they need their update), half new ones, interleaved.
    rows = []
    for i in range(n):
        rows += [person(f"old{i}@example.com", first_name="Changed"), person(f"new{i}@example.com")]
    out, requests = sync(cfg, rows, sandbox)
    assert record_count(out) == 2 * n
    # Known members: one PUT each. New ones: the index already knew members of this program, so an
    # unknown member is guessed new and created with one POST (no PUT 404 first).
    assert requests == 2 * n, f"{requests / (2 * n):.3f} requests per row"
    assert sandbox.request_counts().get("400", 0) == 0  # no create was tried on a known member
    assert all(m["first_name"] == "Changed" for m in sandbox.members() if m["email_address"].startswith("old"))
    assert len(sandbox.members()) == 2 * n


def test_resync_with_two_percent_changed_costs_only_the_changed_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    n = 500
    cfg = config(sandbox, tmp_path)
    rows = [person(f"m{i}@example.com") for i in range(n)]
    sync(cfg, rows, sandbox)
    changed = set(range(0, n, 50))  # 2%
    again = [person(f"m{i}@example.com", last_name="Moved" if i in changed else "Lee") for i in range(n)]
    out, requests = sync(cfg, again, sandbox)
    assert record_count(out) == n
    assert requests / n <= 0.03
    assert requests == len(changed)  # one PUT per changed row, nothing else
    moved = {m["email_address"] for m in sandbox.members() if m["last_name"] == "Moved"}
    assert moved == {f"m{i}@example.com" for i in changed}


def test_each_state_is_echoed_only_after_the_index_holds_its_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    cfg = config(sandbox, tmp_path)
    messages: list[Any] = []
    for batch in range(3):
        messages += [rec(person(f"b{batch}-{i}@example.com")) for i in range(15)]
        messages.append(state(batch + 1))
    seen_at_state: list[int] = []
    for _ in DestinationCrowdtwist().write(config=cfg, configured_catalog=catalog(), input_messages=iter(messages)):
        # The sync is suspended right at this echo: what another process would find in the file now.
        view = MemberIndex(cfg["member_index_path"], sandbox.base_url)
        seen_at_state.append(view.size("email"))
        view.close()
    assert seen_at_state[-1] == 45
    # Every row before a state is in the file when that state is echoed (later rows may be too).
    assert all(count >= 15 * (k + 1) for k, count in enumerate(seen_at_state)), seen_at_state


def test_a_stale_index_is_corrected_and_unchanged_rows_are_the_documented_caveat(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    cfg = config(sandbox, tmp_path)
    sync(cfg, [person(f"m{i}@example.com") for i in range(10)], sandbox)
    sandbox.reset()  # the members disappear from CrowdTwist behind the connector's back
    # Identical rows: the index says they are written already, so nothing is sent (the caveat).
    out, requests = sync(cfg, [person(f"m{i}@example.com") for i in range(10)], sandbox)
    assert (record_count(out), requests) == (10.0, 0)
    assert sandbox.members() == []
    # Changed rows: the update is answered "not found", the entry is corrected and the member created.
    out, requests = sync(cfg, [person(f"m{i}@example.com", first_name="Back") for i in range(10)], sandbox)
    assert record_count(out) == 10.0
    assert requests == 20  # PUT 404 + POST each
    assert sorted(m["first_name"] for m in sandbox.members()) == ["Back"] * 10
    # And the corrected index is trusted again: the same rows now cost nothing.
    assert sync(cfg, [person(f"m{i}@example.com", first_name="Back") for i in range(10)], sandbox)[1] == 0
    # skip_unchanged off: every row is sent again (an update each, the index still orders them).
    _, requests = sync({**cfg, "skip_unchanged": False},
                       [person(f"m{i}@example.com", first_name="Back") for i in range(10)], sandbox)
    assert requests == 10
    assert sandbox.request_counts().get("PUT /v2/users/{id}", 0) == 20


DAY = 86400.0


def test_members_deleted_or_changed_outside_are_healed_once_their_entries_expire(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Issue 21 item 4: 10 members changed and 10 deleted in CrowdTwist; a re-sync of the same rows
    within the max age sends nothing (the caveat), after it re-creates and corrects them."""
    now = [1_800_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    cfg = config(sandbox, tmp_path, member_index_max_age_days=7)
    rows = [person(f"m{i}@example.com", first_name=f"Name{i}") for i in range(30)]
    out, sent = sync(cfg, rows, sandbox, clock=clock)
    assert record_count(out) == 30
    for i in range(10):
        sandbox.delete_member("email", f"m{i}@example.com")
    for i in range(10, 20):  # another integration changes 10 members through the API
        answer = requests.put(
            f"{sandbox.base_url}/v2/users/m{i}@example.com", params={"id_type": "email"},
            json={"first_name": "Outside", "last_name": "Changed"},
            headers={"X-CT-Authorization": f"CTApiKey {DEFAULT_API_KEY}"}, timeout=10,
        )
        assert answer.status_code == 200, answer.text
    assert len(sandbox.members()) == 20
    assert sandbox.existing_member("email", "m15@example.com")["first_name"] == "Outside"

    now[0] += 2 * DAY  # young entries are trusted: nothing is sent (the documented caveat)
    out, sent = sync(cfg, rows, sandbox, clock=clock)
    assert (record_count(out), sent) == (30.0, 0)

    now[0] += 5 * DAY  # 7 days after the writes: past every entry's limit
    before = sandbox.request_counts()
    out, sent = sync(cfg, rows, sandbox, clock=clock)
    assert record_count(out) == 30
    by_email = {m["email_address"]: m for m in sandbox.members()}
    assert len(by_email) == 30  # the 10 deleted members are back, once each
    assert all(by_email[f"m{i}@example.com"]["first_name"] == f"Name{i}" for i in range(30))
    assert all(by_email[f"m{i}@example.com"]["last_name"] == "Lee" for i in range(30))
    # 30 PUTs (10 answered "not found") and 10 POSTs re-creating the deleted members.
    assert sent == 40
    after = sandbox.request_counts()
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in ("PUT /v2/users/{id}", "POST /v2/users", "404")}
    assert delta == {"PUT /v2/users/{id}": 30, "POST /v2/users": 10, "404": 10}

    now[0] += 1 * DAY  # the writes dated the entries afresh: trusted again
    assert sync(cfg, rows, sandbox, clock=clock)[1] == 0
