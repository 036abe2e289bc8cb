"""writers/removal.py without a server: following the erase status (bounded, injected clock) and the
guardrail's count in input order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from destination_crowdtwist.api.errors import TransientError
from destination_crowdtwist.config import ConnectorConfig, parse_config
from destination_crowdtwist.writers.base import Outcome, Prepared, Row, StopBeforeRow, StreamContext
from destination_crowdtwist.writers.dry_run import DryRunWriter
from destination_crowdtwist.writers.removal import MemberRemoval
from destination_crowdtwist.writers.users import UserProfileWriter
from tests_support.fake_api import Call, FakeApi, Reply

STREAM = StreamContext(None, "gone", "soft_delete")


def cfg(**extra: Any) -> ConnectorConfig:
    return parse_config({"api_base_url": "https://api123.crowdtwist.com",
                         "credentials": {"auth_type": "api_key", "api_key": "k" * 20}, **extra})


def queued(call: Call) -> Reply:
    """CrowdTwist queues the erasure of member m<N>@example.com, whose CrowdTwist id is N."""
    return Reply(200, {"user_id": int(str(call.user_id).split("@")[0][1:]), "status": "Queued"})


def statuses(script: dict[str, list[Any]]) -> Callable[[Call], Reply]:
    """Deletion statuses per CrowdTwist id, one per read (the last one repeats); 404: not queued."""

    def answer(call: Call) -> Reply:
        steps = script[str(call.user_id)]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if step == 404:
            return Reply(404, {"error": "page_not_found", "message": "Member does not exist or not queued for deletion"})
        return Reply(200, {"user_id": int(str(call.user_id)), "status": step})

    return answer


def status_reads(api: FakeApi) -> list[str]:
    return [str(call.user_id) for call in api.to("deletion_status")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def erase_all(removal: MemberRemoval, ids: list[int]) -> None:
    for seq, crowdtwist_id in enumerate(ids):
        prepared = removal.prepare(Row(STREAM, {"user_id": f"m{crowdtwist_id}@example.com"}, seq),
                                   cfg().mapping_options())
        assert isinstance(prepared, Prepared)
        outcome = removal.apply(prepared.payload, prepared.label, None)
        assert outcome.kind == "erase_queued"


def test_the_status_is_followed_until_done_or_failed_and_no_longer_than_the_wait(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.always("delete_user", queued).always("deletion_status", statuses({
        "1": ["Deletion_initiated", "Deletion_in_progress", "Deletion_completed"],
        "2": [404],
        "3": ["Deletion_in_progress"],  # never done
        "4": ["Deletion_failed"],  # a status Oracle does not list
    }))
    clock = Clock()
    removal = MemberRemoval(cfg(delete_behaviour="erase", erase_status_wait_seconds=5), api,
                            clock=clock, sleep=clock.sleep)
    erase_all(removal, [1, 2, 3, 4])
    with caplog.at_level("INFO", logger="airbyte"):
        removal.finish()
    assert (removal.tally.queued, removal.tally.done, removal.tally.failed) == (4, 1, 2)
    assert clock.now <= 5 and sum(clock.sleeps) <= 5  # bounded by erase_status_wait_seconds
    assert status_reads(api).count("2") == 1 and status_reads(api).count("1") == 3  # a settled one is not read again
    assert "4 members queued for erasure" in caplog.text and "1 done, 1 still queued, 2 failed" in caplog.text


def test_a_failing_status_read_stops_following_but_never_fails_the_sync(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.always("delete_user", queued)
    removal = MemberRemoval(cfg(delete_behaviour="erase"), api)
    erase_all(removal, [1])
    api.expect("deletion_status", TransientError("CrowdTwist had a server error"))
    with caplog.at_level("INFO", logger="airbyte"):
        removal.finish()  # no exception
    assert "stopped following" in caplog.text and "0 done, 1 still queued, 0 failed" in caplog.text


def test_the_guardrail_counts_delete_rows_in_input_order_and_not_rejected_ones(api: FakeApi) -> None:
    removal = MemberRemoval(cfg(max_deletes_per_sync=2), api)
    options = cfg().mapping_options()
    assert isinstance(removal.prepare(Row(STREAM, {"user_id": "not an email"}, 0), options), Outcome)
    for seq in (1, 2):
        assert isinstance(removal.prepare(Row(STREAM, {"user_id": f"m{seq}@example.com"}, seq), options), Prepared)
    with pytest.raises(StopBeforeRow, match=r"max_deletes_per_sync = 2"):
        removal.prepare(Row(STREAM, {"user_id": "m3@example.com"}, 3), options)


def test_the_wired_erase_status_pauses_end_when_the_sync_stops() -> None:
    # Like the credit writer's award-queue waits, the pauses between erase-status reads use the client's
    # stoppable wait: a SIGTERM or fatal error (client.stop()) is not held up by up to a minute of pause.
    import time

    from destination_crowdtwist.wiring import client_from_config, make_writer
    from destination_crowdtwist.writers.objects import USER_PROFILE

    config = cfg(delete_behaviour="erase", erase_status_wait_seconds=3600)
    client = client_from_config(config)
    writer = make_writer(USER_PROFILE, config, client)
    assert isinstance(writer, UserProfileWriter)
    client.stop()
    started = time.monotonic()
    writer.removal._sleep(30)
    assert time.monotonic() - started < 1.0


def test_a_dry_run_goes_on_past_the_guardrail_and_says_where_a_real_sync_would_stop(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.always("get_user", Reply(200, {"id": 1, "is_active": True}))
    writer = DryRunWriter(UserProfileWriter(cfg(max_deletes_per_sync=2, dry_run=True), api))
    writer.start()
    kinds = []
    for seq in range(4):
        prepared = writer.prepare(Row(STREAM, {"user_id": f"m{seq}@example.com"}, seq))
        assert isinstance(prepared, Prepared)
        kinds.append(writer.apply(prepared).kind)
    assert kinds == ["would_deactivate"] * 4
    assert api.methods() == ["GET"] * 4  # reads only
    with caplog.at_level("INFO", logger="airbyte"):
        writer.finish()
    assert "Dry run: 4 delete rows exceed max_deletes_per_sync = 2; a real sync would stop before input row 2." in (
        caplog.text)


def test_a_dry_run_erase_says_which_member_crowdtwist_would_refuse(api: FakeApi) -> None:
    api.expect("get_user", Reply(200, {"id": 1, "is_active": False, "redeemable_points": 5}),
               Reply(200, {"id": 2, "is_active": True, "redeemable_points": 5}),
               Reply(404, {"error": "page_not_found", "message": "User does not exist."}))
    writer = DryRunWriter(UserProfileWriter(cfg(delete_behaviour="erase", dry_run=True), api))
    writer.start()
    outcomes = []
    for seq in range(3):
        prepared = writer.prepare(Row(STREAM, {"user_id": f"m{seq}@example.com"}, seq))
        assert isinstance(prepared, Prepared)
        outcomes.append(writer.apply(prepared))
    assert [(o.kind, o.reason) for o in outcomes] == [
        ("rejected", "cannot_erase"), ("would_erase", None), ("already_gone", None)]
