"""A real Airbyte source into our destination: ``source-faker read | destination-crowdtwist write``.

source-faker (PyPI ``airbyte-source-faker``, its own venv, see faker_source.py) generates 200 users
with a fixed seed; the platform-like pipe adds state ids; the destination writes them to the local
CrowdTwist sandbox as User Profiles. Two configurations of the same sync:

- ``classic``: config ``object_type: user_profile``, ``user_identifier_type: email``, faker's ``email``
  mapped to ``user_id``; the catalog has no ``destination_object_name``.
- ``data_activation``: the catalog names the object (``destination_object_name: user_profile``)
  and the matching key (``primary_key: [["email_address"]]``); faker's ``email`` is mapped to
  ``email_address``, CrowdTwist's own field, and the config names no object type.

What faker 7.2.1 emits for a user (checked with ``source-faker read``): ``id``, ``created_at``,
``updated_at``, ``name`` (a single given name, no surname), ``title``, ``age``, ``email`` (unique:
``word1234+<id>@domain``), ``telephone``, ``gender``, ``language``, ``academic_degree``,
``nationality``, ``occupation``, ``height``, ``blood_type``, ``weight``, and ``address`` {
``street_number``, ``street_name``, ``city``, ``state``, ``province``, ``postal_code`` (always 5
digits), ``country_code`` (any ISO country, independent of the postal code) }.

Mapping chosen (see docs/crowdtwist.md for the fields): ``name`` -> ``first_name`` and also
``last_name`` (CrowdTwist requires both on create and faker has no surname),
``address.postal_code`` -> ``postal_code``, ``address.country_code`` -> ``country_code``,
``address.city`` -> ``city_name``; everything else dropped (``unmapped_fields: drop``: custom
attributes are not set up in the sandbox). Outside the US that is "country plus city", which
CrowdTwist accepts. Rows whose country is ``US`` are rejected with reason ``location``: the
connector drops the redundant ``country_code: US`` next to a US ZIP, but CrowdTwist refuses a city
next to a US ZIP ("for domestic addresses ONLY postal_code can be provided"); ``CA`` rows would be
rejected too (a Canadian postal code is ``A1A 1A1``, faker's are 5 digits). With seed 42 that is
one row of 200 (faker id 5, US).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from faker_source import (
    InstallReport,
    configured_users_catalog,
    discover,
    iter_jsonl,
    location_rejected_ids,
    pipe_source_into,
)

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions
from destination_crowdtwist.records.rejection import Reason

USERS = 200
SEED = 42
RECORDS_PER_SLICE = 50  # faker then emits 4 states for 200 users (100, 50, 50, 0 records)
DESTINATION = Path(sys.executable).parent / "destination-crowdtwist"

COMMON_MAPPING = [
    {"source": "name", "destination": "first_name"},
    {"source": "name", "destination": "last_name"},
    {"source": "address.postal_code", "destination": "postal_code"},
    {"source": "address.country_code", "destination": "country_code"},
    {"source": "address.city", "destination": "city_name"},
]
# The only reason class this data can earn with this mapping (see the module docstring).
EXPECTED_REASONS = {Reason.LOCATION.value}


def _faker_files(tmp_path: Path, exe: Path, mode: str) -> tuple[Path, Path]:
    config = tmp_path / "faker.json"
    config.write_text(json.dumps({
        "count": USERS, "seed": SEED, "records_per_slice": RECORDS_PER_SLICE,
        "parallelism": 1, "always_updated": False,
    }))
    discovered = discover(exe, config)
    if mode == "classic":
        catalog = configured_users_catalog(discovered, primary_key=[["id"]])
    else:
        catalog = configured_users_catalog(
            discovered, destination_object_name="user_profile", primary_key=[["email_address"]]
        )
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    return config, catalog_path


def _destination_config(sb: Sandbox, mode: str, rejects: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "api_base_url": sb.base_url,
        "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY},
        "unmapped_fields": "drop",
        "rejected_records_path": str(rejects),
        "rejected_records_include_pii": True,  # a temp file; the test matches rows by faker id
        "progress_interval_seconds": 0,
    }
    if mode == "classic":
        config.update(
            object_type="user_profile",
            user_identifier_type="email",
            field_mapping=[{"source": "email", "destination": "user_id"}, *COMMON_MAPPING],
        )
    else:
        config["field_mapping"] = [{"source": "email", "destination": "email_address"}, *COMMON_MAPPING]
    return config


@pytest.mark.slow
@pytest.mark.tools
@pytest.mark.timeout(600)  # the first run installs source-faker inside this test's setup
@pytest.mark.parametrize("mode", ["classic", "data_activation"])
def test_source_faker_users_piped_into_write_become_members(tmp_path: Path, source_faker: InstallReport, mode: str) -> None:
    exe = source_faker.executable
    faker_config, catalog = _faker_files(tmp_path, exe, mode)
    rejects = tmp_path / "rejected.jsonl"
    with Sandbox(SandboxOptions(api_key=DEFAULT_API_KEY)) as sb:
        dest_config = tmp_path / "destination.json"
        dest_config.write_text(json.dumps(_destination_config(sb, mode, rejects)))
        pipe = pipe_source_into(
            [str(exe), "read", "--config", str(faker_config), "--catalog", str(catalog)],
            [str(DESTINATION), "write", "--config", str(dest_config), "--catalog", str(catalog)],
        )
        members = sb.members()
    print(f"{mode}: pipe ran {pipe.seconds:.1f} s")
    assert pipe.source_returncode == 0, pipe.source_stderr[-2000:]
    assert pipe.destination_returncode == 0, pipe.destination_stderr[-3000:]

    users = [m["record"]["data"] for m in pipe.source_of_type("RECORD")]
    source_states = [m["state"] for m in pipe.source_of_type("STATE")]
    assert len(users) == USERS and len({u["email"].lower() for u in users}) == USERS
    assert len(source_states) >= 2  # several checkpoints, so per-state counts are really tested

    # Every source state echoed once, in order, with its own payload and exact per-segment counts.
    echoed = pipe.echoed_states()
    assert [s["id"] for s in echoed] == [s["id"] for s in source_states]
    assert [s["stream"]["stream_state"] for s in echoed] == [s["stream"]["stream_state"] for s in source_states]
    segments = pipe.segments()
    for state, segment in zip(echoed, segments, strict=True):
        stats = state["destinationStats"]
        assert stats["recordCount"] + stats["rejectedRecordCount"] == len(segment), state["id"]
    accepted = sum(s["destinationStats"]["recordCount"] for s in echoed)
    rejected = sum(s["destinationStats"]["rejectedRecordCount"] for s in echoed)

    # Rejections: exactly the rows CrowdTwist's location rule refuses, each with a valid reason class.
    rejected_rows = list(iter_jsonl(rejects))
    valid_reasons = {reason.value for reason in Reason}
    assert {row["reason_class"] for row in rejected_rows} <= valid_reasons
    assert {row["reason_class"] for row in rejected_rows} <= EXPECTED_REASONS, rejected_rows[:3]
    expected_rejected = location_rejected_ids(users)
    assert {row["record"]["id"] for row in rejected_rows} == expected_rejected
    assert rejected == len(rejected_rows) == len(expected_rejected)

    # Members: one per accepted row, carrying the mapped fields.
    assert accepted == USERS - len(expected_rejected)
    assert len(members) == accepted
    accepted_users = [u for u in users if u["id"] not in expected_rejected]
    assert {m["email_address"] for m in members} == {u["email"].lower() for u in accepted_users}
    by_email = {m["email_address"]: m for m in members}
    for user in accepted_users[:20]:
        member = by_email[user["email"].lower()]
        assert (member["first_name"], member["last_name"]) == (user["name"], user["name"])
        assert member["postal_code"] == user["address"]["postal_code"]
        assert member["country_code"] == user["address"]["country_code"]
        assert member["city"] == user["address"]["city"]
    assert DEFAULT_API_KEY not in pipe.destination_stderr
    assert DEFAULT_API_KEY not in json.dumps(pipe.destination_messages)
