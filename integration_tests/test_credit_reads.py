"""Which credits need an activity history read under ``credit_verification: every_row`` (issue 20).

On the sandbox, through ``DestinationCrowdtwist.write``: a member this sync created holds no credit of
an earlier attempt, so its credits are sent without a history read (and without the award-queue wait);
a member that existed before is verified as before; a full re-send credits nothing twice. A pending
ledger key waits for the award queue only when its sending session may still have had a request queued.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from helpers import catalog, credit_config, record, run_write, state, wait_until
from test_data_activation import CATALOG, CREDITS, PROFILES, config, credit, da_catalog, profile

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD
from destination_crowdtwist.writers.ledger import CreditLedger, event_key, ledger_scope

HISTORY = "GET /v2.1/users/{id}/activity_history"
CREDIT = "POST /v2/users/{id}/activities"


def sync_messages(members: int) -> list[Any]:
    """Each member's profile, then two credits per member (events from both halves interleaved)."""
    out = [record(profile(f"tp-{i}"), PROFILES) for i in range(members)]
    out += [record(credit(f"tp-{i % members}", f"ev-{i}", points=i % 5 + 1), CREDITS) for i in range(2 * members)]
    out.append(state(1, None))
    return out


def awarded_once(sandbox: Sandbox, events: int) -> None:
    wait_until(lambda: all(c["visible_at"] <= sandbox.options.clock() for c in sandbox.credits()))
    keys = Counter(c["extra_data"][DEDUPE_KEY_FIELD] for c in sandbox.credits() if c["awarded"])
    assert len(keys) == events and set(keys.values()) == {1}


def test_credits_of_members_created_in_this_sync_read_no_history(sandbox: Sandbox) -> None:
    members = 20
    cfg = config(sandbox, max_concurrency=8, award_queue_delay_seconds=3)
    before = sandbox.request_counts()
    started = time.monotonic()
    run_write(cfg, da_catalog(*CATALOG), sync_messages(members))
    elapsed = time.monotonic() - started
    counts = sandbox.request_counts()
    assert counts.get(HISTORY, 0) - before.get(HISTORY, 0) == 0
    assert counts.get(CREDIT, 0) - before.get(CREDIT, 0) == 2 * members
    assert elapsed < 3  # no award-queue wait (3 s here) before the first credit
    awarded_once(sandbox, 2 * members)

    # The same sync again (a full re-send): the members exist now, so every credit is verified in history
    # (one read per member) and found: nothing is credited twice.
    before = sandbox.request_counts()
    run_write(cfg, da_catalog(*CATALOG), sync_messages(members))
    counts = sandbox.request_counts()
    assert counts.get(HISTORY, 0) - before.get(HISTORY, 0) == members
    assert counts.get(CREDIT, 0) - before.get(CREDIT, 0) == 0
    awarded_once(sandbox, 2 * members)


def test_a_member_that_existed_before_the_sync_is_verified(sandbox: Sandbox) -> None:
    sandbox.add_member(third_party_id="tp-0", email_address="tp-0@example.com", first_name="Ann", last_name="Lee",
                       postal_code="10001")
    cfg = config(sandbox, award_queue_delay_seconds=0.2)
    before = sandbox.request_counts()
    run_write(cfg, da_catalog(*CATALOG), sync_messages(2))  # tp-0 existed (updated), tp-1 is created
    counts = sandbox.request_counts()
    assert counts.get(HISTORY, 0) - before.get(HISTORY, 0) == 1  # tp-0's history only
    awarded_once(sandbox, 4)


@pytest.mark.parametrize("quiet", [True, False])
def test_a_pending_key_waits_for_the_award_queue_only_after_a_kill(sandbox: Sandbox, tmp_path: Any, quiet: bool) -> None:
    """A pending key left by a session that closed quietly long ago is read at once; one left by a kill
    (no quiet close) waits for ``award_queue_delay_seconds``. Either way the landed credit is not sent again.
    """
    sandbox.add_member(email_address="ann@example.com")
    landed = {"user_id": "ann@example.com", "activity_id": "1001", "num_points": 5, "event_id": "sent-before"}
    cfg = credit_config(sandbox)
    run_write(cfg, catalog("append"), [record(landed), state(1)])  # the credit is in CrowdTwist
    path = str(tmp_path / "ledger.sqlite")
    ledger = CreditLedger(path, scope=ledger_scope(sandbox.base_url), clock=lambda: time.time() - 60)
    ledger.mark_done(event_key("email", "ann@example.com", "1001", "other"), "credited")  # a trusted ledger
    ledger.mark_pending(event_key("email", "ann@example.com", "1001", "sent-before"), session="earlier")
    if quiet:
        ledger.close_session("earlier", quiet=True)  # a minute ago: its request was over by then
    ledger.close()

    before = sandbox.request_counts()
    started = time.monotonic()
    run_write(credit_config(sandbox, ledger_path=path, award_queue_delay_seconds=3), catalog("append"),
              [record(landed), state(2)])
    elapsed = time.monotonic() - started
    counts = sandbox.request_counts()
    assert counts.get(HISTORY, 0) - before.get(HISTORY, 0) == 1
    assert counts.get(CREDIT, 0) - before.get(CREDIT, 0) == 0  # found in history: not sent again
    assert (elapsed < 3) if quiet else (elapsed >= 3)
    awarded_once(sandbox, 1)
