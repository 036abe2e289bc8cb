"""Exactly-once must not trust an activity history it cannot read (issue 21, item 1).

A full re-send of rows that were all credited already (a full refresh, a reset, a manual re-run)
is verified against each member's activity history. Against a sandbox whose history answer cannot
prove that a credit is absent (an unknown key, ``{}``, ``null``, 404 for a member that exists,
pages without end) the sync must stop with an error that says what to do, credit nothing twice,
and echo no state past an unverified row; once the answer is normal again the next attempt
finishes and credits nothing twice. A history longer than one page is read page by page.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from airbyte_cdk.models import AirbyteMessage, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import catalog, credit_config, record, run_write, run_write_until_error, state, state_ids, stats

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD
from destination_crowdtwist.writers.history import MAX_PAGES, PAGE_SIZE

HISTORY = "GET /v2.1/users/{id}/activity_history"
PROFILE = "GET /v2/users/{id}"
MEMBERS = ("h0@example.com", "h1@example.com")
ROWS = 30  # 15 credits per member


def rows() -> list[dict[str, Any]]:
    return [
        {"user_id": MEMBERS[i % 2], "activity_id": "1001", "num_points": 1 + i % 5, "event_id": f"ev-{i}"}
        for i in range(ROWS)
    ]


def messages(first_state: int, every: int = 5) -> list[AirbyteMessage]:
    out: list[AirbyteMessage] = []
    for i, row in enumerate(rows()):
        out.append(record(row))
        if (i + 1) % every == 0:
            out.append(state(first_state + i // every))
    return out


def credited_once(sandbox: Sandbox) -> None:
    keys = Counter((c["user_id"], c["extra_data"][DEDUPE_KEY_FIELD]) for c in sandbox.credits())
    assert len(keys) == ROWS, "a row was never credited"
    doubled = sum(n - 1 for n in keys.values())
    assert doubled == 0, f"{doubled} of {ROWS} rows credited twice"


def first_sync(sandbox_factory: Any, **knobs: Any) -> tuple[Sandbox, dict[str, Any]]:
    sb = sandbox_factory(**knobs)
    for email in MEMBERS:
        sb.add_member(email_address=email)
    cfg = credit_config(sb)
    assert state_ids(run_write(cfg, catalog("append"), messages(first_state=1))) == [1, 2, 3, 4, 5, 6]
    credited_once(sb)
    return sb, cfg


@pytest.mark.parametrize("shape", ["unknown_key", "empty_object", "null", "user_not_found"])
def test_a_history_answer_that_proves_nothing_stops_the_sync_and_doubles_nothing(
    sandbox_factory: Any, shape: str
) -> None:
    sb, cfg = first_sync(sandbox_factory)
    sb.set_options(history_answer_shape=shape)

    out, error = run_write_until_error(cfg, catalog("append"), messages(first_state=10))

    assert sb.request_counts()[f"history:{shape}"] >= 1  # the fault was served
    credited_once(sb)  # was: 30 of 30 credited twice
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type == FailureType.transient_error
    assert "cannot prove" in (error.message or "")
    assert state_ids(out) == []  # every row of the first segment was unverified
    if shape == "user_not_found":
        assert sb.request_counts()[PROFILE] >= 1  # the member's profile was looked up: it exists

    sb.set_options(history_answer_shape="paged")  # CrowdTwist answers normally again; the platform retries
    out = run_write(cfg, catalog("append"), messages(first_state=20))
    assert state_ids(out) == [20, 21, 22, 23, 24, 25]
    credited_once(sb)


def test_a_history_longer_than_one_page_is_read_to_its_last_page(sandbox_factory: Any) -> None:
    # Pages of at most 4 credits: each member's 15 credits span 4 pages, and the dedupe keys of
    # most rows are on pages 2 to 4.
    sb, cfg = first_sync(sandbox_factory, history_max_page_size=4)
    before = sb.request_counts()

    out = run_write(cfg, catalog("append"), messages(first_state=10))

    assert state_ids(out) == [10, 11, 12, 13, 14, 15]
    credited_once(sb)  # was: 22 of 30 credited twice (only page 1 was read)
    reads = sb.request_counts()[HISTORY] - before[HISTORY]
    assert reads == 2 * 4  # every page of both members, once per sync (counted as requests per row)
    assert sb.request_counts()["history_next_page"] - before.get("history_next_page", 0) == 2 * 3


def test_the_page_reads_are_bounded_and_running_past_the_bound_stops_the_sync(sandbox_factory: Any) -> None:
    sb, cfg = first_sync(sandbox_factory)
    sb.set_options(history_answer_shape="endless_pages")
    before = sb.request_counts()[HISTORY]

    out, error = run_write_until_error(cfg, catalog("append"), messages(first_state=10))

    credited_once(sb)
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type == FailureType.config_error
    assert "credit_history_days" in (error.message or "")
    assert state_ids(out) == []
    reads = sb.request_counts()[HISTORY] - before
    assert MAX_PAGES <= reads <= 2 * MAX_PAGES  # at most the bound per member (two members may be read at once)


def test_the_legacy_unpaged_array_is_still_read(sandbox_factory: Any) -> None:
    sb, cfg = first_sync(sandbox_factory, history_answer_shape="bare_array")
    out = run_write(cfg, catalog("append"), messages(first_state=10))
    assert state_ids(out) == [10, 11, 12, 13, 14, 15]
    credited_once(sb)
    assert PAGE_SIZE > ROWS // 2  # one array per member: shorter than a page, so complete


def test_a_member_that_does_not_exist_is_still_just_a_rejected_row(sandbox_factory: Any) -> None:
    """404 on the history is confirmed with the profile: a missing member's row is rejected, the sync goes on."""
    sb, cfg = first_sync(sandbox_factory)
    ghost = {"user_id": "nobody@example.com", "activity_id": "1001", "num_points": 3, "event_id": "ghost"}
    out = run_write(cfg, catalog("append"), [record(ghost), *messages(first_state=10)])
    assert state_ids(out) == [10, 11, 12, 13, 14, 15]
    assert stats(out[0]) == (5.0, 1.0)  # 5 duplicates accepted, the ghost's row rejected (not_found)
    credited_once(sb)
