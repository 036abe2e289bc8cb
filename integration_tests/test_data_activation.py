"""Data activation `write`: streams routed by destination_object_name, members found by matching keys.

One sync carries a profile stream (``crm_members`` -> ``user_profile``, upsert, matching key
``third_party_id``) and a credit stream (``point_events`` -> ``activity_credit``, matching key
``third_party_id``), while the config's ``user_identifier_type`` is ``email``: the stream's matching
key decides. Counts follow the platform rule (recordCount + rejectedRecordCount = the records of the
state's segment) for STREAM and GLOBAL states.
"""

from __future__ import annotations

from typing import Any

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import credit_config, record, run_write, run_write_until_error, state, state_ids, stats

from crowdtwist_sandbox import Sandbox

PROFILES, CREDITS = "crm_members", "point_events"


def da_catalog(*streams: tuple[str, str, str, list[list[str]] | None]) -> Any:
    """A configured catalog in data-activation shape: (stream, object, sync mode, matching key)."""
    configured = []
    for name, object_name, mode, key in streams:
        item: dict[str, Any] = {
            "stream": {"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": mode,
            "destination_object_name": object_name,
        }
        if key is not None:
            item["primary_key"] = key
        configured.append(item)
    return ConfiguredAirbyteCatalogSerializer.load({"streams": configured})


def config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    # object_type says activity_credit and the identifier type says email: both must be overridden by
    # the streams' own object and matching key.
    return credit_config(sandbox, object_type="activity_credit", user_identifier_type="email", **extra)


def profile(tp: str, first: str = "Ann", **extra: Any) -> dict[str, Any]:
    return {"third_party_id": tp, "first_name": first, "last_name": "Lee",
            "email_address": f"{tp}@example.com", "postal_code": "10001", **extra}


def credit(tp: str, event: str, points: int = 5) -> dict[str, Any]:
    return {"third_party_id": tp, "activity_id": "1001", "num_points": points, "event_id": event}


CATALOG = (
    (PROFILES, "user_profile", "append_dedup", [["third_party_id"]]),
    (CREDITS, "activity_credit", "append", [["third_party_id"]]),
)


def test_two_streams_two_objects_with_stream_states(sandbox: Sandbox) -> None:
    sandbox.add_member(third_party_id="tp-old", email_address="old@example.com", first_name="Old", last_name="One",
                       postal_code="10001")
    messages = [
        record(profile("tp-new"), PROFILES),  # created (unknown third_party_id)
        record(profile("tp-old", first="Renamed"), PROFILES),  # updated by third_party_id
        record(credit("tp-new", "e1"), CREDITS),  # credited to the member created just before
        record({"first_name": "NoKey"}, PROFILES),  # rejected: no matching key value
        state(1, PROFILES),
        record(credit("tp-old", "e2", 7), CREDITS),
        record(credit("tp-nobody", "e3"), CREDITS),  # rejected: not_found
        state(2, CREDITS),
        record(credit("tp-new", "e1"), CREDITS),  # same event again: duplicate, accepted
        state(3, CREDITS),
    ]
    out = run_write(config(sandbox), da_catalog(*CATALOG), messages)

    assert state_ids(out) == [1, 2, 3]
    # STREAM states: each counts its own stream's records since that stream's previous state.
    assert [stats(m) for m in out] == [(2.0, 1.0), (2.0, 1.0), (1.0, 0.0)]
    new = sandbox.member("third_party_id", "tp-new")
    old = sandbox.member("third_party_id", "tp-old")
    assert new is not None and old is not None
    assert old["first_name"] == "Renamed"
    credited = sorted((c["user_id"], c["num_points"]) for c in sandbox.credits())
    assert credited == sorted([(new["id"], 5), (old["id"], 7)])  # e1 once, despite the repeat


def test_global_states_count_every_stream(sandbox: Sandbox) -> None:
    messages = [
        record(profile("tp-a"), PROFILES),
        record(credit("tp-a", "g1"), CREDITS),
        record({"third_party_id": "tp-a"}, CREDITS),  # rejected: activity_id missing
        state(10, None),
        record(profile("tp-b"), PROFILES),
        record(profile("", first="Blank"), PROFILES),  # rejected: blank matching key
        state(11, None),
    ]
    out = run_write(config(sandbox), da_catalog(*CATALOG), messages)
    assert state_ids(out) == [10, 11]
    assert [stats(m) for m in out] == [(2.0, 1.0), (1.0, 1.0)]
    assert sandbox.member("third_party_id", "tp-b") is not None


def test_a_credit_never_races_the_create_of_its_member_in_another_stream(sandbox: Sandbox) -> None:
    # 30 members, each created in the profile stream and credited in the credit stream right after:
    # with member ordering across streams every credit finds its member.
    messages = []
    for i in range(30):
        messages.append(record(profile(f"tp-{i}"), PROFILES))
        messages.append(record(credit(f"tp-{i}", f"ev-{i}"), CREDITS))
    messages.append(state(1, None))
    out = run_write(config(sandbox, max_concurrency=8), da_catalog(*CATALOG), messages)
    assert [stats(m) for m in out] == [(60.0, 0.0)]
    assert len(sandbox.credits()) == 30


def test_classic_streams_still_follow_object_type_beside_routed_ones(sandbox: Sandbox) -> None:
    sandbox.add_member(email_address="c@example.com", first_name="C", last_name="D", postal_code="10001")
    classic = {"stream": {"name": "legacy", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
               "sync_mode": "full_refresh", "destination_sync_mode": "append"}
    catalog = ConfiguredAirbyteCatalogSerializer.load({"streams": [
        classic,
        {"stream": {"name": PROFILES, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
         "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
         "destination_object_name": "user_profile", "primary_key": [["third_party_id"]]},
    ]})
    messages = [
        record({"user_id": "c@example.com", "activity_id": "1001", "num_points": 3}, "legacy"),
        record(profile("tp-x"), PROFILES),
        state(1, None),
    ]
    out = run_write(config(sandbox), catalog, messages)
    assert [stats(m) for m in out] == [(2.0, 0.0)]
    assert len(sandbox.credits()) == 1
    assert sandbox.member("third_party_id", "tp-x") is not None


@pytest.mark.parametrize(
    ("stream", "needle"),
    [
        ((PROFILES, "loyalty_points", "append", None), "unknown CrowdTwist object 'loyalty_points'"),
        ((PROFILES, "user_profile", "append_dedup", [["first_name"], ["last_name"]]), "one field"),
        ((PROFILES, "user_profile", "append_dedup", [["first_name"]]), "'first_name', which is not a matching key"),
        ((PROFILES, "user_profile", "append", [["id"]]), "'id', which is not a matching key"),
        ((CREDITS, "activity_credit", "update", None), "sync mode 'update', which object 'activity_credit'"),
        ((CREDITS, "activity_credit", "overwrite", None), "does not support"),
    ],
)
def test_routing_errors_are_config_errors_naming_the_stream(sandbox: Sandbox, stream: Any, needle: str) -> None:
    out, error = run_write_until_error(config(sandbox), da_catalog(stream), [record(profile("tp"), stream[0])])
    assert out == []
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type.value == "config_error" and error.message is not None
    assert needle in error.message
    assert repr(stream[0]) in error.message
    assert sandbox.request_counts().get("total", 0) == 0  # refused before any request
