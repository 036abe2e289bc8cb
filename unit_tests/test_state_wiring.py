"""How wiring turns the sync state on (``sync_state: bucket``): which writer gets what, and when a state
waits for the ledger's flush (the per-policy rule of docs/sync-state.md)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from destination_crowdtwist.config import ConnectorConfig, parse_config
from destination_crowdtwist.state.connector import BucketState
from destination_crowdtwist.wiring import client_from_config, make_writer, open_state, state_gate
from destination_crowdtwist.writers.activities import ActivityCreditWriter
from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT, USER_PROFILE
from destination_crowdtwist.writers.users import UserProfileWriter

STORAGE = {"storage_type": "S3", "s3_bucket_name": "state", "bucket_path": "airbyte", "s3_bucket_region": "us-east-1",
           "access_key_id": "AKIAEXAMPLE", "secret_access_key": "secret"}


def config(**extra: Any) -> ConnectorConfig:
    return parse_config({"api_base_url": "https://api123.crowdtwist.com",
                         "credentials": {"auth_type": "api_key", "api_key": "k" * 20}, **extra})


class FakeState:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> bool:
        self.flushes += 1
        return True

    def after_drop(self) -> None:
        self.flush()


def test_without_the_state_the_writers_keep_their_local_rules() -> None:
    cfg = config()
    client = client_from_config(cfg)
    users = make_writer(USER_PROFILE, cfg, client)
    credits = make_writer(ACTIVITY_CREDIT, cfg, client)
    assert isinstance(users, UserProfileWriter) and users._after_drop is None
    assert isinstance(credits, ActivityCreditWriter) and credits._ledger_proves_absence
    client.close()


def test_with_the_state_a_clear_is_flushed_and_the_ledger_never_proves_absence() -> None:
    cfg = config(sync_state={"storage": "bucket"}, object_storage_config=STORAGE)
    client = client_from_config(cfg)
    state = FakeState()
    users = make_writer(USER_PROFILE, cfg, client, state=cast(BucketState, state))
    credits = make_writer(ACTIVITY_CREDIT, cfg, client, state=cast(BucketState, state))
    assert isinstance(users, UserProfileWriter) and users._after_drop is not None
    users._after_drop()
    assert state.flushes == 1
    assert isinstance(credits, ActivityCreditWriter) and not credits._ledger_proves_absence
    client.close()


@pytest.mark.parametrize(("policy", "objects", "gated"), [
    ("every_row", [ACTIVITY_CREDIT, USER_PROFILE], False),  # every replayed credit is verified anyway
    ("replay_window", [ACTIVITY_CREDIT], True),
    ("none", [ACTIVITY_CREDIT, USER_PROFILE], True),
    ("none", [USER_PROFILE], False),  # no ledger in this sync
])
def test_a_state_waits_for_the_ledgers_flush_under_replay_window_and_none(
    policy: str, objects: list[str], gated: bool
) -> None:
    cfg = config(sync_state={"storage": "bucket"}, object_storage_config=STORAGE, credit_verification=policy)
    state = FakeState()
    gate = state_gate(cfg, cast(BucketState, state), objects)
    assert (gate is not None) == gated
    if gate is not None:
        assert gate.saved() and state.flushes == 1
        assert "s3://state/airbyte/" in gate.what
    assert state_gate(config(credit_verification=policy), None, objects) is None


def test_the_state_is_opened_only_when_asked_for_and_never_in_a_dry_run() -> None:
    assert open_state(config(), lambda: 0.0) is None
    assert open_state(config(sync_state={"storage": "bucket"}, object_storage_config=STORAGE, dry_run=True),
                      lambda: 0.0) is None
    assert isinstance(open_state(config(sync_state={"storage": "bucket"}, object_storage_config=STORAGE),
                                 lambda: 0.0), BucketState)
