"""Events before members: rows whose member a later stream of the same sync creates wait for it.

The platform does not promise stream order. A first sync that sends its credit stream before its
member stream must still credit every event once the members exist (issue 18 §2), with exact states
and the fail-fast rule (``reject_stop_share``) counting final rejections only.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import record, run_write, state, state_ids, stats, wait_until
from test_data_activation import CREDITS, PROFILES, config, credit, da_catalog, profile

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist import DestinationCrowdtwist
from destination_crowdtwist.cdk_adapter import load_message

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

CREDITS_FIRST = (
    (CREDITS, "activity_credit", "append", [["third_party_id"]]),
    (PROFILES, "user_profile", "append_dedup", [["third_party_id"]]),
)


def catalog_json(*streams: tuple[str, str, str, list[list[str]] | None]) -> dict[str, Any]:
    return {"streams": [{
        "stream": {"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": mode, "destination_object_name": obj,
        "primary_key": key,
    } for name, obj, mode, key in streams]}


def line_record(data: dict[str, Any], stream: str) -> str:
    return json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 0, "data": data}})


def line_state(state_id: int, stream: str) -> str:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": state_id, "stream": {
        "stream_descriptor": {"name": stream}, "stream_state": {"cursor": state_id}}}})


def line_status(stream: str, status: str) -> str:
    return json.dumps({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1.0, "stream_status": {
        "stream_descriptor": {"name": stream}, "status": status}}})


def status(stream: str, value: str) -> Any:
    return load_message(json.loads(line_status(stream, value)))


def test_a_first_sync_with_the_credit_stream_first_credits_every_member(sandbox: Sandbox, tmp_path: Path) -> None:
    """The reported case, through the real entry point: 150 credits, then their 150 members.

    Before the fix the early stop fired on the credits' not_found: 0 of 150 members, 0 of 150 credits.
    """
    n = 150
    lines = [line_status(CREDITS, "STARTED")]
    lines += [line_record(credit(f"tp-{i}", f"ev-{i}", points=i % 7 + 1), CREDITS) for i in range(n)]
    lines += [line_record(credit("tp-nobody", "ev-x"), CREDITS)]  # never created: rejected in the end
    lines += [line_state(1, CREDITS), line_status(CREDITS, "COMPLETE"), line_status(PROFILES, "STARTED")]
    lines += [line_record(profile(f"tp-{i}"), PROFILES) for i in range(n)]
    lines += [line_state(2, PROFILES), line_status(PROFILES, "COMPLETE")]
    cfg_path, cat_path = tmp_path / "config.json", tmp_path / "catalog.json"
    # The defaults of the fail-fast rule (reject_stop_sample / reject_stop_share) stay on.
    cfg = config(sandbox, max_concurrency=8)
    cfg_path.write_text(json.dumps(cfg))
    cat_path.write_text(json.dumps(catalog_json(*CREDITS_FIRST)))
    out = subprocess.run(
        [*MAIN, "write", "--config", str(cfg_path), "--catalog", str(cat_path)],
        input="\n".join(lines) + "\n", capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    messages = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    states = [m["state"] for m in messages if m["type"] == "STATE"]
    assert [s["id"] for s in states] == [1, 2]
    counts = [(s["destinationStats"]["recordCount"], s["destinationStats"]["rejectedRecordCount"]) for s in states]
    assert counts == [(n, 1), (n, 0)]  # exact: the credits' state waited until they were settled
    members = {m["third_party_id"]: m for m in sandbox.members()}
    assert len([tp for tp in members if tp.startswith("tp-")]) == n
    credited = sorted((c["user_id"], c["num_points"]) for c in sandbox.credits())
    assert credited == sorted((members[f"tp-{i}"]["id"], i % 7 + 1) for i in range(n))  # each once
    logs = [m["log"]["message"] for m in messages if m["type"] == "LOG"]
    assert any(f"{n + 1} rows arrived before their member" in m and f"{n} were then written, 1 rejected" in m
               for m in logs), logs[-10:]
    assert any(m.strip() == "not_found: 1 (e.g. third_party_id:***)" or m.strip().startswith("not_found: 1 ")
               for m in logs), logs[-15:]


def test_the_member_streams_status_complete_ends_the_wait_before_the_input_ends(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A COMPLETE stream status of the member stream settles the waiting rows while the input is still open."""
    input_may_end = threading.Event()

    def source() -> Iterator[Any]:
        yield record(credit("tp-ghost", "a"), CREDITS)  # waits: the member stream has not ended
        wait_until(lambda: any("waits and is tried again" in r.getMessage() for r in caplog.records), timeout=20)
        yield record(profile("tp-real"), PROFILES)
        yield state(1, CREDITS)
        yield status(PROFILES, "COMPLETE")
        input_may_end.wait(timeout=30)  # the source is quiet; the sync must not need the end of input
        yield state(2, CREDITS)

    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = DestinationCrowdtwist().write(config(sandbox), da_catalog(*CREDITS_FIRST), source())
        first = next(iter(out))  # echoed while the source is still open
        ended_early = not input_may_end.is_set()
        input_may_end.set()
        rest = list(out)
    assert ended_early
    assert state_ids([first, *rest]) == [1, 2]
    assert stats(first) == (0.0, 1.0)  # the ghost's credit: waited, then rejected not_found
    assert sandbox.credits() == []
    logged = [r.getMessage() for r in caplog.records]
    assert "1 rows arrived before their member and waited for the member streams: 0 were then written, 1 " \
           "rejected as not found." in logged


def test_without_a_member_stream_nothing_waits_and_the_early_stop_still_fires(sandbox: Sandbox) -> None:
    from helpers import run_write_until_error

    messages = [record(credit(f"tp-none-{i}", f"e{i}"), CREDITS) for i in range(60)]
    out, error = run_write_until_error(
        config(sandbox, reject_stop_sample=20, reject_stop_share=0.9),
        da_catalog((CREDITS, "activity_credit", "append", [["third_party_id"]])), messages,
    )
    assert out == []
    assert error is not None and "Stopping early" in str(error)


def test_an_update_of_a_member_created_later_in_the_sync_is_applied_after_the_create(sandbox: Sandbox) -> None:
    catalog = da_catalog(
        ("corrections", "user_profile", "update", [["third_party_id"]]),
        (PROFILES, "user_profile", "append_dedup", [["third_party_id"]]),
    )
    messages = [
        record({"third_party_id": "tp-u", "first_name": "Corrected"}, "corrections"),  # member not created yet
        record({"third_party_id": "tp-missing", "first_name": "Nobody"}, "corrections"),  # never created
        state(1, "corrections"),
        record(profile("tp-u", first="Ann"), PROFILES),
        state(2, PROFILES),
    ]
    out = run_write(config(sandbox), catalog, messages)
    assert state_ids(out) == [1, 2]
    assert [stats(m) for m in out] == [(1.0, 1.0), (1.0, 0.0)]
    member = sandbox.member("third_party_id", "tp-u")
    assert member is not None and member["first_name"] == "Corrected"  # the update ran after the create
    assert sandbox.member("third_party_id", "tp-missing") is None


def test_a_barrier_policy_does_not_wait_and_says_so(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    """replay_window puts a barrier at every state: a waiting credit would hold it, so nothing waits."""
    messages = [record(credit("tp-b", "x"), CREDITS), state(1, CREDITS), record(profile("tp-b"), PROFILES),
                state(2, PROFILES)]
    with caplog.at_level(logging.INFO, logger="airbyte"):
        out = run_write(config(sandbox, credit_verification="replay_window"), da_catalog(*CREDITS_FIRST), messages)
    assert [stats(m) for m in out] == [(0.0, 1.0), (1.0, 0.0)]
    assert sandbox.credits() == []
    assert any("cannot wait for the member stream" in r.getMessage() for r in caplog.records)
