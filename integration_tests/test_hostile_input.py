"""Hostile input against the sandbox: no hang, no crash, every row settled or the sync stopped cleanly."""

from __future__ import annotations

import os
from typing import Any

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import catalog, credit_config, record, run_write_until_error, state

from crowdtwist_sandbox import Sandbox


def profile_config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    return credit_config(sandbox, object_type="user_profile", **extra)


@pytest.mark.timeout(30)
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux) to simulate a full disk")
def test_a_reject_file_on_a_full_disk_stops_the_sync_with_a_config_error_and_echoes_nothing_after(
    sandbox: Sandbox,
) -> None:
    messages = [
        record({"user_id": "a@example.com", "first_name": "A", "last_name": "B", "postal_code": "10001"}, "users"),
        state(1, "users"),
        record({"first_name": "x" * 20_000}, "users"),  # no user_id: rejected, and its line cannot be stored
        state(2, "users"),
    ]
    out, error = run_write_until_error(
        profile_config(sandbox, rejected_records_path="/dev/full"), catalog("append_dedup", "users"), messages
    )
    # State 1 covers only the good row, so it may be echoed if it was released before the failing
    # write; state 2 covers the row that could not be stored and must never be echoed.
    assert [m.state.id for m in out if m.state is not None] in ([], [1])  # type: ignore[attr-defined]
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type.value == "config_error"
    assert "/dev/full" in error.message and "No space left" in error.message
