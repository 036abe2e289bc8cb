"""``sync_state: {"storage": "bucket"}`` through the real entry point (``main.py write`` as a subprocess, as the
platform runs it), the sandbox and moto's S3 server; each sync has a fresh ``TMPDIR`` of its own, as a fresh
container: a kill -9 between CrowdTwist's answer and the state's upload, and two syncs at once on one program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pytest
from helpers import wait_until
from moto_s3 import MotoS3

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist.state import SyncStateStore
from destination_crowdtwist.writers.member_index import MemberIndex

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
BUCKET_PATH = "airbyte"
DEDUPE_KEY = "airbyte_dedupe_key"


class Sync:
    """One ``write`` subprocess in a folder of its own (its TMPDIR holds the state's local copies)."""

    def __init__(self, folder: Path, config: dict[str, Any], stream: str, mode: str) -> None:
        self.folder = folder
        tmp = folder / "tmp"
        tmp.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "catalog.json").write_text(json.dumps({"streams": [{
            "stream": {"name": stream, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh", "destination_sync_mode": mode,
        }]}))
        self.stream = stream
        self.stdout = (folder / "stdout.jsonl").open("wb")
        self.stderr = (folder / "stderr.txt").open("wb")
        self.proc = subprocess.Popen(
            [*MAIN, "write", "--config", str(folder / "config.json"), "--catalog", str(folder / "catalog.json")],
            stdin=subprocess.PIPE, stdout=self.stdout, stderr=self.stderr, cwd=folder,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)},
        )

    def send(self, rows: list[dict[str, Any]], state_id: int | None = None) -> None:
        """Write the rows (and a state) to the connector's stdin; it stays open."""
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        lines = [{"type": "RECORD", "record": {"stream": self.stream, "emitted_at": 0, "data": row}} for row in rows]
        if state_id is not None:
            lines.append({"type": "STATE", "state": {"type": "STREAM", "id": state_id, "stream": {
                "stream_descriptor": {"name": self.stream}, "stream_state": {"cursor": state_id}}}})
        stdin.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        stdin.flush()

    def finish(self, timeout: float = 60) -> list[int]:
        """Close stdin, wait for exit 0; returns the ids of the states echoed."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        self._close()
        assert code == 0, (self.folder / "stderr.txt").read_text()[-3000:]
        assert list((self.folder / "tmp").iterdir()) == []  # the store's local copies went with the sync
        return [m["state"]["id"] for m in self.messages() if m["type"] == "STATE"]

    def kill(self) -> None:
        """kill -9, as a container that disappears."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._close()

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.folder / "stdout.jsonl").read_text().splitlines() if line.strip()]

    def _close(self) -> None:
        self.stdout.close()
        self.stderr.close()


def base_config(sb: Sandbox, moto: MotoS3, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "api_base_url": sb.base_url,
        "credentials": {"auth_type": "api_key", "api_key": sb.options.api_key},
        "user_identifier_type": "email",
        "progress_interval_seconds": 0,
        "sync_state": {"storage": "bucket"},
        "object_storage_config": moto.storage_config(bucket, bucket_path=BUCKET_PATH),
        **extra,
    }


def state_objects(moto: MotoS3, bucket: str, channel: str) -> list[str]:
    """Keys of the state's objects of one channel (``ledger`` or ``member_index``)."""
    return [key for key in moto.objects(bucket, f"{BUCKET_PATH}/crowdtwist-sync-state/") if f"/{channel}/" in key]


def credit(i: int) -> dict[str, Any]:
    return {"user_id": f"member{i % 5}@example.com", "activity_id": "1001", "event_id": f"e{i}", "num_points": 1}


def credited_keys(sb: Sandbox) -> Counter[str]:
    return Counter(c["extra_data"][DEDUPE_KEY] for c in sb.credits())


@pytest.mark.parametrize("policy", ["every_row", "replay_window"])
def test_a_kill_between_the_answer_and_the_upload_sends_again_what_it_must_and_doubles_nothing(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, tmp_path: Path, policy: str
) -> None:
    for i in range(5):
        sandbox.add_member(email_address=f"member{i}@example.com", first_name="Seed", last_name="Seed")
    cfg = base_config(sandbox, moto_s3, s3_bucket, object_type="activity_credit", credit_verification=policy,
                      award_queue_delay_seconds=0.2, max_concurrency=4)
    killed = Sync(tmp_path / "attempt-1", cfg, "credits", "append")
    try:
        killed.send([credit(i) for i in range(20)])  # no state: nothing asks for an upload before the interval
        wait_until(lambda: sum(credited_keys(sandbox).values()) == 20, timeout=30)
        time.sleep(0.2)  # the answers reach the connector, which marks the keys done in its local ledger
    finally:
        killed.kill()
    # CrowdTwist credited all 20; the ledger that says so died with the container.
    assert state_objects(moto_s3, s3_bucket, "ledger") == []

    # The platform's next attempt replays from the last state echoed (none): the same 20 rows and 10 new ones.
    replay = Sync(tmp_path / "attempt-2", cfg, "credits", "append")
    replay.send([credit(i) for i in range(30)], state_id=1)
    assert replay.finish() == [1]
    keys = credited_keys(sandbox)
    assert keys == Counter({f"e{i}": 1 for i in range(30)})  # the 10 new ones sent, none of the 20 doubled
    assert state_objects(moto_s3, s3_bucket, "ledger") != []

    # A third sync in another fresh folder: every key is `done` in the bucket's ledger, nothing is sent.
    before = sandbox.request_counts()
    third = Sync(tmp_path / "attempt-3", cfg, "credits", "append")
    third.send([credit(i) for i in range(30)], state_id=2)
    assert third.finish() == [2]
    after = sandbox.request_counts()
    assert after.get("POST /v2/users/{id}/activities", 0) == before.get("POST /v2/users/{id}/activities", 0)
    assert credited_keys(sandbox) == keys


def profile(i: int, last: str = "Lee") -> dict[str, Any]:
    return {"user_id": f"member{i}@example.com", "first_name": "Ann", "last_name": f"{last}{i}",
            "postal_code": "10010"}


def bucket_index(moto: MotoS3, bucket: str, program: str, folder: Path, users: list[str]) -> dict[str, bool]:
    """Which members the member index read from the bucket knows (with a fingerprint)."""
    store = SyncStateStore(moto.client(), bucket, program, folder, prefix=BUCKET_PATH)
    store.open()
    try:
        index = MemberIndex(store.member_index_path, program)
        known = {}
        for user in users:
            entry = index.lookup("email", user)
            known[user] = entry is not None and entry.fingerprint is not None
        index.close()
    finally:
        store.close()
    return known


def test_two_syncs_at_once_keep_both_states_and_the_next_sync_skips_nothing_it_must_send(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    cfg = base_config(sandbox, moto_s3, s3_bucket, object_type="user_profile", max_concurrency=8)
    first, second = range(0, 120), range(60, 180)  # 60 members in both, with the same fields
    syncs = [Sync(tmp_path / "a", cfg, "users", "append_dedup"), Sync(tmp_path / "b", cfg, "users", "append_dedup")]
    for sync, members in zip(syncs, (first, second), strict=True):
        sync.send([profile(i) for i in members], state_id=1)
    assert [sync.finish() for sync in syncs] == [[1], [1]]

    users = [f"member{i}@example.com" for i in range(180)]
    known = bucket_index(moto_s3, s3_bucket, sandbox.base_url, tmp_path / "reader", users)
    assert [user for user, ok in known.items() if not ok] == []  # both syncs' entries: no lost update

    # A third sync (another fresh folder): one member in six changed since; every change must be sent.
    rows = [profile(i, "Changed" if i % 6 == 0 else "Lee") for i in range(180)]
    before = sandbox.request_counts()
    third = Sync(tmp_path / "c", cfg, "users", "append_dedup")
    third.send(rows, state_id=2)
    assert third.finish() == [2]
    for row in rows:
        member = sandbox.member("email", row["user_id"])
        assert member is not None
        assert (member["first_name"], member["last_name"]) == (row["first_name"], row["last_name"]), row
    spent = sandbox.request_counts().get("total", 0) - before.get("total", 0)
    assert spent == 30, spent  # one update per changed row, none for the 150 unchanged
