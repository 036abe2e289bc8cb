"""Member removal end to end against the sandbox: ``soft_delete`` streams of User Profile.

Every test runs ``write`` through the real entry point (``DestinationCrowdtwist().write``, or
``main.py write`` in a subprocess for the kill -9 test) and checks the sandbox's members, the
requests it counted and the states echoed with their exact counts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import catalog, record, run_write, run_write_until_error, state, state_ids, stats

from crowdtwist_sandbox import Sandbox
from crowdtwist_sandbox.options import DEFAULT_API_KEY

ROOT = Path(__file__).resolve().parent.parent
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

STREAM = "gone"
PUT, DELETE, POST = "PUT /v2/users/{id}", "DELETE /v2/users/{id}", "POST /v2/users"
STATUS = "GET /v2/users/delete/{id}"


def da_catalog(*streams: tuple[str, str, list[list[str]]]) -> Any:
    """A data-activation catalog of user_profile streams: (stream, sync mode, matching key)."""
    return ConfiguredAirbyteCatalogSerializer.load({"streams": [
        {"stream": {"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
         "sync_mode": "full_refresh", "destination_sync_mode": mode, "destination_object_name": "user_profile",
         "primary_key": key}
        for name, mode, key in streams]})


def config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    return {
        "api_base_url": sandbox.base_url,
        "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY},
        "object_type": "user_profile",
        "user_identifier_type": "email",
        "progress_interval_seconds": 0,
        "max_concurrency": 4,
        **extra,
    }


def seed(sandbox: Sandbox, n: int, *, points: int = 0, prefix: str = "m") -> list[str]:
    emails = [f"{prefix}{i}@example.com" for i in range(n)]
    for email in emails:
        sandbox.add_member(email_address=email, first_name="Ann", last_name="Lee", postal_code="10001",
                           total_points=points)
    return emails


def deletes(emails: list[str], *, every: int = 0, first_state: int = 1, stream: str = STREAM) -> list[Any]:
    """Delete rows (classic: ``user_id``), with a state after every ``every`` rows (and one at the end)."""
    messages: list[Any] = []
    state_id = first_state
    for n, email in enumerate(emails, start=1):
        messages.append(record({"user_id": email}, stream))
        if every and n % every == 0:
            messages.append(state(state_id, stream))
            state_id += 1
    if not every or len(emails) % every:
        messages.append(state(state_id, stream))
    return messages


def counts(sandbox: Sandbox) -> dict[str, int]:
    return sandbox.request_counts()


def test_deactivate_is_the_default_and_a_missing_member_is_already_gone(sandbox: Sandbox) -> None:
    emails = seed(sandbox, 3, points=40)
    keep = seed(sandbox, 1, prefix="keep")[0]
    rows = [*emails[:2], "nobody@example.com", "NOT-AN-EMAIL"]
    out = run_write(config(sandbox), catalog("soft_delete", STREAM), deletes(rows))

    assert state_ids(out) == [1]
    # 3 accepted (two deactivated, one already gone), 1 rejected before any request (no valid email).
    assert [stats(m) for m in out] == [(3.0, 1.0)]
    for email in emails[:2]:
        member = sandbox.member("email", email)
        assert member is not None and member["is_active"] is False
        assert member["redeemable_points"] == 40  # plain deactivation keeps the balance (reversible)
    assert sandbox.existing_member("email", emails[2])["is_active"] is True
    assert sandbox.existing_member("email", keep)["is_active"] is True
    assert counts(sandbox).get(PUT) == 3 and counts(sandbox).get(DELETE, 0) == 0

    # A replay of the same deletes changes nothing and rejects nothing.
    again = run_write(config(sandbox), catalog("soft_delete", STREAM), deletes(rows))
    assert [stats(m) for m in again] == [(3.0, 1.0)]
    assert sandbox.existing_member("email", emails[0])["redeemable_points"] == 40


def test_deactivate_and_remove_points_wipes_the_balance(sandbox: Sandbox) -> None:
    emails = seed(sandbox, 2, points=75)
    out = run_write(config(sandbox, delete_behaviour="deactivate_and_remove_points"), catalog("soft_delete", STREAM),
                    deletes(emails[:1]))
    assert [stats(m) for m in out] == [(1.0, 0.0)]
    gone, kept = sandbox.member("email", emails[0]), sandbox.member("email", emails[1])
    assert gone is not None and gone["is_active"] is False and gone["redeemable_points"] == 0
    assert kept is not None and kept["redeemable_points"] == 75


def test_erase_queues_then_completes_and_follows_the_status(
    sandbox_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = sandbox_factory(deletion_delay_ms=300)
    emails = seed(sandbox, 3)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(config(sandbox, delete_behaviour="erase", erase_status_wait_seconds=10),
                        catalog("soft_delete", STREAM), deletes([*emails[:2], "nobody@example.com"], every=2))

    assert state_ids(out) == [1, 2]
    assert [stats(m) for m in out] == [(2.0, 0.0), (1.0, 0.0)]
    assert counts(sandbox)[DELETE] == 3
    assert sandbox.member("email", emails[0]) is None and sandbox.member("email", emails[1]) is None
    assert sandbox.member("email", emails[2]) is not None
    assert [d["status"] for d in sandbox.engine.state.deletions()] == ["Deletion_completed"] * 2
    assert counts(sandbox)[STATUS] >= 2
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "erase: 2 members queued for erasure" in logs and "2 done, 0 still queued, 0 failed" in logs
    assert "erase_queued: 2" in logs and "already_gone: 1" in logs
    assert "m0@example.com" not in logs  # masked (log_pii is off)


def test_erase_status_not_followed_when_the_wait_is_zero(sandbox_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    sandbox = sandbox_factory(deletion_delay_ms=60_000)
    emails = seed(sandbox, 2)
    with caplog.at_level(logging.INFO, logger="airbyte"):
        run_write(config(sandbox, delete_behaviour="erase", erase_status_wait_seconds=0),
                  catalog("soft_delete", STREAM), deletes(emails))
    assert counts(sandbox).get(STATUS, 0) == 0
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "0 done, 2 still queued, 0 failed" in logs
    # Queued, not erased yet: the members are still there, and a repeat is answered "Queued" again.
    assert sandbox.member("email", emails[0]) is not None
    again = run_write(config(sandbox, delete_behaviour="erase", erase_status_wait_seconds=0),
                      catalog("soft_delete", STREAM), deletes(emails))
    assert [stats(m) for m in again] == [(2.0, 0.0)]
    assert len(sandbox.engine.state.deletions()) == 2


def test_erase_refused_with_400_is_a_rejected_row_with_the_fix(
    sandbox_factory: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    sandbox = sandbox_factory()
    inactive = sandbox.add_member(email_address="inactive@example.com", first_name="In", last_name="Active",
                                  postal_code="10001", is_active=0, total_points=30)
    stuck = sandbox.add_member(email_address="stuck@example.com", first_name="St", last_name="Uck",
                               postal_code="10001")
    fine = seed(sandbox, 1)[0]
    sandbox.set_options(undeletable_member_ids=[stuck["id"]])
    rejects = tmp_path / "rejected.jsonl"
    with caplog.at_level(logging.WARNING, logger="airbyte"):
        out = run_write(config(sandbox, delete_behaviour="erase", erase_status_wait_seconds=0,
                               rejected_records_path=str(rejects)),
                        catalog("soft_delete", STREAM), deletes(["inactive@example.com", "stuck@example.com", fine]))
    assert [stats(m) for m in out] == [(1.0, 2.0)]
    # In input order (rows settle in any order: requests run concurrently).
    lines = sorted((json.loads(line) for line in rejects.read_text().splitlines()), key=lambda line: line["row"])
    assert [line["reason_class"] for line in lines] == ["cannot_erase", "cannot_erase"]
    assert [line["http_status"] for line in lines] == [400, 400]
    assert "Remove the points first" in lines[0]["message"]
    assert "delete_behaviour deactivate" in lines[1]["message"]
    assert sandbox.member("id", inactive["id"]) is not None and sandbox.member("id", stuck["id"]) is not None
    assert sandbox.member("email", fine) is None

    # The fix the message names: remove the points, then erase again.
    run_write(config(sandbox, delete_behaviour="deactivate_and_remove_points"), catalog("soft_delete", STREAM),
              deletes(["inactive@example.com"]))
    out = run_write(config(sandbox, delete_behaviour="erase", erase_status_wait_seconds=0),
                    catalog("soft_delete", STREAM), deletes(["inactive@example.com"]))
    assert [stats(m) for m in out] == [(1.0, 0.0)]
    assert sandbox.member("id", inactive["id"]) is None


@pytest.mark.parametrize("behaviour", ["deactivate", "erase"])
def test_the_guardrail_stops_before_the_first_delete_beyond_it(sandbox: Sandbox, behaviour: str) -> None:
    emails = seed(sandbox, 8)
    cfg = config(sandbox, delete_behaviour=behaviour, max_deletes_per_sync=3, erase_status_wait_seconds=0)
    out, error = run_write_until_error(cfg, catalog("soft_delete", STREAM), deletes(emails, every=1))

    assert isinstance(error, AirbyteTracedException)
    message = str(error.message)
    assert "max_deletes_per_sync = 3" in message and "raise max_deletes_per_sync" in message
    assert error.failure_type is not None and error.failure_type.value == "config_error"
    # Exactly three removal requests, and the states of those three rows (each exact), nothing after.
    sent = counts(sandbox).get(DELETE if behaviour == "erase" else PUT, 0)
    assert sent == 3
    assert state_ids(out) == [1, 2, 3]
    assert [stats(m) for m in out] == [(1.0, 0.0)] * 3
    removed = [e for e in emails if (m := sandbox.member("email", e)) is None or m["is_active"] is False]
    assert removed == emails[:3]


def test_dry_run_reports_would_deactivate_and_would_erase_with_masked_examples(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    emails = seed(sandbox, 4)
    rows = [*emails, "nobody@example.com"]
    for behaviour, kind in (("deactivate", "would_deactivate"), ("erase", "would_erase")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="airbyte"):
            out = run_write(config(sandbox, delete_behaviour=behaviour, dry_run=True, max_deletes_per_sync=2),
                            catalog("soft_delete", STREAM), deletes(rows))
        assert out == []  # a dry run echoes no state
        logs = "\n".join(r.getMessage() for r in caplog.records)
        assert f"  {kind}: 4 (e.g. " in logs
        assert "already_gone: 1" in logs
        assert "@example.com" not in logs  # examples masked
        # Over the guardrail: the dry run goes on, and says where a real sync would stop.
        assert "exceed max_deletes_per_sync = 2; a real sync would stop before input row 2" in logs
    assert counts(sandbox).get(PUT, 0) == 0 and counts(sandbox).get(DELETE, 0) == 0
    assert all(sandbox.existing_member("email", e)["is_active"] is True for e in emails)


def test_an_upsert_then_a_delete_of_the_same_member_in_two_streams_land_in_that_order(sandbox: Sandbox) -> None:
    members = [f"tp-{i}" for i in range(12)]
    messages: list[Any] = []
    for tp in members:
        messages.append(record({"third_party_id": tp, "first_name": "Ann", "last_name": "Lee",
                                "email_address": f"{tp}@example.com", "postal_code": "10001"}, "crm"))
        messages.append(record({"third_party_id": tp}, "removals"))
    messages += [state(1, "crm"), state(2, "removals")]
    cat = da_catalog(("crm", "append_dedup", [["third_party_id"]]), ("removals", "soft_delete", [["third_party_id"]]))
    out = run_write(config(sandbox, delete_behaviour="erase", erase_status_wait_seconds=0, max_concurrency=8),
                    cat, messages)
    assert [stats(m) for m in out] == [(12.0, 0.0), (12.0, 0.0)]
    # Each member was created, then its erasure queued: none answered 404 (a delete that overtook
    # its upsert would have), and all of them are gone now.
    assert len(sandbox.engine.state.deletions()) == 12
    assert counts(sandbox)[POST] == 12 and counts(sandbox)[DELETE] == 12
    assert all(sandbox.member("third_party_id", tp) is None for tp in members)


def test_the_member_index_forgets_an_erased_member_so_a_later_upsert_creates_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    index = str(tmp_path / "members.sqlite")
    people = [{"user_id": f"p{i}@example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}
              for i in range(3)]
    cfg = config(sandbox, member_index_path=index)
    run_write(cfg, catalog("append_dedup", "crm"), [*(record(p, "crm") for p in people), state(1, "crm")])
    run_write(config(sandbox, member_index_path=index, delete_behaviour="erase", erase_status_wait_seconds=0),
              catalog("soft_delete", STREAM), deletes(["p0@example.com"]))
    assert sandbox.member("email", "p0@example.com") is None
    before = counts(sandbox)
    out = run_write(cfg, catalog("append_dedup", "crm"), [record(people[0], "crm"), state(2, "crm")])
    after = counts(sandbox)
    assert [stats(m) for m in out] == [(1.0, 0.0)]
    assert sandbox.member("email", "p0@example.com") is not None
    # One request, the create: the index no longer claims the member (no update answered 404 first).
    assert after["total"] - before["total"] == 1 and after[POST] - before.get(POST, 0) == 1


def test_a_stream_of_activity_credits_cannot_soft_delete(sandbox: Sandbox) -> None:
    out, error = run_write_until_error(config(sandbox, object_type="activity_credit"), catalog("soft_delete", STREAM),
                                       deletes(["a@example.com"]))
    assert out == [] and isinstance(error, AirbyteTracedException)
    assert "soft_delete" in str(error.message) and counts(sandbox)["total"] == 0


# -- kill -9 in the middle of deletes, then the platform's replay ------------------------------------------


def _attempt(cfg: Path, cat: Path, lines: list[str], sandbox: Sandbox, kill_after: int | None) -> list[dict[str, Any]]:
    proc = subprocess.Popen([*MAIN, "write", "--config", str(cfg), "--catalog", str(cat)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            stdin.write("".join(line + "\n" for line in lines).encode())
            stdin.close()
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    if kill_after is not None:
        target = counts(sandbox)["total"] + kill_after

        def killer() -> None:
            while proc.poll() is None:
                if counts(sandbox)["total"] >= target:
                    proc.send_signal(signal.SIGKILL)
                    return
                time.sleep(0.002)

        threading.Thread(target=killer, daemon=True).start()
    raw = proc.stdout.read().decode()
    proc.wait(timeout=60)
    if kill_after is not None:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 0
    messages = []
    for line in raw.splitlines():
        with contextlib.suppress(ValueError):  # a line cut by the kill is the only one that is not JSON
            messages.append(json.loads(line))
    return [m for m in messages if m.get("type") == "STATE"]


# Each attempt is a process start (seconds on a loaded machine): the deactivate variant runs only
# outside the quick loop (make check skips slow tests; make test runs them).
@pytest.mark.parametrize("behaviour", [pytest.param("deactivate", marks=pytest.mark.slow), "erase"])
def test_kill_9_in_the_middle_of_deletes_then_replay_recreates_nothing_and_misses_nothing(
    sandbox_factory: Any, tmp_path: Path, behaviour: str
) -> None:
    sandbox = sandbox_factory(latency_ms=15)
    doomed = seed(sandbox, 24, prefix="doomed")
    kept = seed(sandbox, 12, prefix="kept")
    lines: list[str] = []
    state_id = 0
    for n, email in enumerate(doomed):
        lines.append(json.dumps({"type": "RECORD", "record": {"stream": STREAM, "data": {"user_id": email},
                                                             "emitted_at": 1}}))
        if n % 2 == 0:  # upserts of other members in between, in a second stream
            person = {"user_id": kept[n // 2], "first_name": f"Renamed{n}", "last_name": "Lee"}
            lines.append(json.dumps({"type": "RECORD", "record": {"stream": "crm", "data": person, "emitted_at": 1}}))
        if n % 4 == 3:
            state_id += 1
            lines.append(json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "id": state_id, "global": {
                "shared_state": {"cursor": state_id}, "stream_states": []}}}))
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config(sandbox, delete_behaviour=behaviour, erase_status_wait_seconds=0,
                                     max_concurrency=2)))
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"streams": [
        {"stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["incremental"]},
         "sync_mode": "incremental", "destination_sync_mode": mode}
        for name, mode in ((STREAM, "soft_delete"), ("crm", "update"))]}))

    echoed = _attempt(cfg, cat, lines, sandbox, kill_after=14)
    last = echoed[-1]["state"]["id"] if echoed else 0
    assert last < state_id  # killed mid-sync
    # The platform re-sends what followed the last echoed state.
    start = 0 if last == 0 else next(i for i, line in enumerate(lines) if json.loads(line).get("state", {}).get("id")
                                     == last) + 1
    replayed = _attempt(cfg, cat, lines[start:], sandbox, kill_after=None)
    assert [m["state"]["id"] for m in replayed] == list(range(last + 1, state_id + 1))
    # Exact counts on the replay: every row accepted (a delete already applied is deactivated again or
    # already gone), none rejected.
    for message in replayed:
        count = message["state"]["destinationStats"]
        assert count["recordCount"] == 6.0 and count.get("rejectedRecordCount", 0) == 0
    total = counts(sandbox)
    assert total.get(POST, 0) == 0  # nothing recreated
    for email in doomed:  # nothing missed
        member = sandbox.member("email", email)
        assert member is None or (behaviour == "deactivate" and member["is_active"] is False)
        if behaviour == "erase":
            assert member is None
    for email in kept:
        member = sandbox.member("email", email)
        assert member is not None and member["is_active"] is True


def test_erase_and_its_status_are_signed_with_hmac(hmac_sandbox: Sandbox) -> None:
    emails = seed(hmac_sandbox, 2)
    options = hmac_sandbox.options
    cfg = config(hmac_sandbox, delete_behaviour="erase", erase_status_wait_seconds=5,
                 credentials={"auth_type": "hmac", "public_key": options.hmac_public_key,
                              "private_key": options.hmac_private_key})
    out = run_write(cfg, catalog("soft_delete", STREAM), deletes(emails))
    assert [stats(m) for m in out] == [(2.0, 0.0)]
    assert all(hmac_sandbox.member("email", e) is None for e in emails)
    assert counts(hmac_sandbox).get("401", 0) == 0 and counts(hmac_sandbox)[STATUS] >= 2
