"""``sync_state: {"storage": "bucket"}`` through ``DestinationCrowdtwist`` against the sandbox and moto's S3 server:
two syncs in two fresh working directories (as two containers on the platform) share the member index and
the ledger through the bucket; the per-policy rule before a state is echoed; ``check`` names a bucket that
refuses the state's prefix.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.models import AirbyteMessage, Status
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import catalog, credit_config, record, run_write, run_write_until_error, state, state_ids
from moto_s3 import MotoS3

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist import DestinationCrowdtwist

pytestmark = pytest.mark.timeout(120)

HISTORY = "GET /v2.1/users/{id}/activity_history"
STATE_PREFIX = "crowdtwist-sync-state/"


@pytest.fixture
def fresh_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Path]:
    """Point the temporary folder at a new empty directory, as a new container would have."""
    count = iter(range(100))

    def fresh() -> Path:
        folder = tmp_path / f"container-{next(count)}"
        folder.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(folder))
        return folder

    return fresh


def bucket_config(sb: Sandbox, moto: MotoS3, bucket: str, **extra: Any) -> dict[str, Any]:
    return credit_config(sb, sync_state={"storage": "bucket"},
                         object_storage_config=moto.storage_config(bucket, bucket_path="airbyte"), **extra)


def requests(sb: Sandbox) -> dict[str, int]:
    return dict(sb.request_counts())


def spent(before: dict[str, int], sb: Sandbox, key: str = "total") -> int:
    return sb.request_counts().get(key, 0) - before.get(key, 0)


def profile(i: int) -> dict[str, Any]:
    return {"user_id": f"member{i}@example.com", "first_name": "Ann", "last_name": f"Lee{i}", "postal_code": "10010"}


def test_a_resync_in_a_fresh_directory_skips_unchanged_members_through_the_bucket(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, fresh_tmp: Any
) -> None:
    n = 300
    cfg = bucket_config(sandbox, moto_s3, s3_bucket, object_type="user_profile")
    messages = [*(record(profile(i), stream="users") for i in range(n)), state(1, "users")]
    first_dir = fresh_tmp()
    out = run_write(cfg, catalog("append_dedup", "users"), messages)
    assert state_ids(out) == [1]
    assert list(first_dir.iterdir()) == []  # the local copies went with the sync
    assert any(key.startswith(f"airbyte/{STATE_PREFIX}") for key in moto_s3.objects(s3_bucket))

    fresh_tmp()  # the next sync: another container, nothing on its disk
    before = requests(sandbox)
    out = run_write(cfg, catalog("append_dedup", "users"), messages)
    assert state_ids(out) == [1]
    per_row = spent(before, sandbox) / n
    print(f"second sync: {per_row:.4f} requests/row")
    assert per_row <= 0.03, per_row
    assert sandbox.member("email", "member7@example.com") is not None


def credits(n: int) -> list[AirbyteMessage]:
    rows = [record({"user_id": f"member{i % 10}@example.com", "activity_id": "1001", "event_id": f"e{i}"})
            for i in range(n)]
    return [*rows, state(1)]


def seed_members(sb: Sandbox, count: int = 10) -> None:
    for i in range(count):
        sb.add_member(email_address=f"member{i}@example.com", first_name="Seed", last_name="Seed")


@pytest.mark.parametrize("policy", ["every_row", "replay_window", "none"])
def test_credits_already_in_the_bucket_ledger_cost_no_request_in_a_fresh_directory(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, fresh_tmp: Any, policy: str
) -> None:
    seed_members(sandbox)
    cfg = bucket_config(sandbox, moto_s3, s3_bucket, credit_verification=policy)
    fresh_tmp()
    assert state_ids(run_write(cfg, catalog("append"), credits(60))) == [1]
    assert len(sandbox.credits()) == 60

    fresh_tmp()
    before = requests(sandbox)
    assert state_ids(run_write(cfg, catalog("append"), credits(60))) == [1]
    # Every credit is `done` in the ledger read from the bucket: a duplicate with no request and no history read.
    assert spent(before, sandbox, HISTORY) == 0
    assert spent(before, sandbox, "POST /v2/users/{id}/activities") == 0
    assert spent(before, sandbox) == 1  # the activity list
    assert len(sandbox.credits()) == 60


def break_bucket_after(messages: list[AirbyteMessage], moto: MotoS3, bucket: str) -> Iterator[AirbyteMessage]:
    """The rows, then the bucket disappears (its objects with it), then the state."""
    *rows, last = messages
    yield from rows
    moto.delete_bucket(bucket)
    yield last


@pytest.mark.parametrize("policy", ["replay_window", "none"])
def test_under_replay_window_and_none_a_state_is_echoed_only_once_the_ledger_is_in_the_bucket(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, fresh_tmp: Any, policy: str
) -> None:
    seed_members(sandbox)
    cfg = bucket_config(sandbox, moto_s3, s3_bucket, credit_verification=policy)
    folder = fresh_tmp()
    out, error = run_write_until_error(cfg, catalog("append"), break_bucket_after(credits(20), moto_s3, s3_bucket))
    assert state_ids(out) == []  # the ledger's entries never reached the bucket: the state is not echoed
    assert list(folder.iterdir()) == []  # the store was closed on the way out, its files removed
    assert isinstance(error, AirbyteTracedException)
    assert "the credit ledger could not be saved to the bucket" in str(error.message)
    assert error.failure_type is not None and str(getattr(error.failure_type, "value", error.failure_type)) \
        == "transient_error"
    if policy == "replay_window":
        # The platform's next attempt (the bucket back, empty) replays from the last state echoed: its rows
        # come before its first state, so they are verified in history, and nothing is credited twice.
        moto_s3.create_bucket(s3_bucket)
        fresh_tmp()
        assert state_ids(run_write(cfg, catalog("append"), credits(20))) == [1]
        assert len(sandbox.credits()) == 20


def test_under_every_row_a_state_is_echoed_even_if_the_ledger_never_reaches_the_bucket(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, fresh_tmp: Any
) -> None:
    # Every replayed credit is verified in history: a ledger upload lost costs history reads, never a credit.
    seed_members(sandbox)
    cfg = bucket_config(sandbox, moto_s3, s3_bucket)
    fresh_tmp()
    out = run_write(cfg, catalog("append"), break_bucket_after(credits(20), moto_s3, s3_bucket))
    assert state_ids(out) == [1]


def test_check_names_the_bucket_that_refuses_the_sync_states_prefix(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str
) -> None:
    # Keys that may write rejected rows anywhere but under the sync state's prefix.
    iam = moto_s3.client("iam")
    user = f"rejects-only-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="rejects", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": f"arn:aws:s3:::{s3_bucket}/airbyte/{STATE_PREFIX}*"},
        ],
    }))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    keys = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    cfg = credit_config(sandbox, sync_state={"storage": "bucket"},
                        object_storage_config=moto_s3.storage_config(s3_bucket, keys=keys, bucket_path="airbyte"))
    status = DestinationCrowdtwist().check(None, cfg)
    assert status.status == Status.FAILED, status.message
    assert status.message.startswith(f"sync_state: The sync state in s3://{s3_bucket}/airbyte/{STATE_PREFIX}")
    assert "access denied" in status.message
    assert key["SecretAccessKey"] not in status.message

    ok = DestinationCrowdtwist().check(None, bucket_config(sandbox, moto_s3, s3_bucket))
    assert ok.status == Status.SUCCEEDED, ok.message
    assert "sync state" in (ok.message or "")
    assert not [k for k in moto_s3.objects(s3_bucket) if STATE_PREFIX in k]  # check leaves nothing behind
