"""Exactly-once activity credits, proven on the sandbox's state (its credits and member points).

The failure modes: answers lost after the credit was applied (dropped connections, 5xx after apply),
5xx before apply, a sync interrupted mid-way and replayed from its last echoed state (what the
platform does), and full re-runs outside the platform with a ledger. ``credit_verification: none``
is run through the same replay to show the double credit that verification prevents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from airbyte_cdk.models import AirbyteMessage, FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import (
    StopInput,
    catalog,
    credit_config,
    interrupted,
    record,
    run_write,
    run_write_until_error,
    state,
    state_id,
    state_ids,
    wait_until,
)

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist.destination import DestinationCrowdtwist
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD
from destination_crowdtwist.writers.ledger import DONE, PENDING, CreditLedger, event_key, ledger_scope

CREDIT = "POST /v2/users/{id}/activities"
HISTORY = "GET /v2.1/users/{id}/activity_history"
SEGMENT = 4  # rows between two states
MEMBERS = [f"m{i}@example.com" for i in range(3 * SEGMENT)]


def rows(segments: int = 3, members: int = SEGMENT) -> list[dict[str, Any]]:
    """``segments * 4`` rows over the first ``members`` members (row i for member i mod members).

    With the default, each segment has one row per member. Odd rows carry an event_id, even ones
    get the hash key.
    """
    out = []
    for i in range(segments * SEGMENT):
        row: dict[str, Any] = {"user_id": MEMBERS[i % members], "activity_id": "1001", "num_points": i + 1}
        if i % 2:
            row["event_id"] = f"evt-{i}"
        out.append(row)
    return out


def messages(data: list[dict[str, Any]], first_state: int = 1) -> list[AirbyteMessage]:
    """Records with a state after every segment (state ids count from ``first_state``)."""
    out: list[AirbyteMessage] = []
    for i, row in enumerate(data):
        out.append(record(row))
        if (i + 1) % SEGMENT == 0:
            out.append(state(first_state + i // SEGMENT))
    return out


def after_state(all_messages: list[AirbyteMessage], state_id: int | None) -> list[AirbyteMessage]:
    """What the platform re-sends on a new attempt: everything after the last echoed state."""
    if state_id is None:
        return list(all_messages)
    for index, message in enumerate(all_messages):
        if message.state is not None and getattr(message.state, "id", None) == state_id:
            return list(all_messages[index + 1 :])
    raise AssertionError(f"state {state_id} not in the input")


def seeded(sandbox: Sandbox) -> Sandbox:
    for email in MEMBERS:
        sandbox.add_member(email_address=email)
    return sandbox


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    return seeded(sandbox)


def assert_exactly_once(sandbox: Sandbox, data: list[dict[str, Any]]) -> None:
    """Every row credited exactly once (one awarded credit per distinct row) and points add up."""
    # Points move when the award queue has processed the credit.
    wait_until(lambda: all(c["visible_at"] <= sandbox.options.clock() for c in sandbox.credits()))
    awarded = [c for c in sandbox.credits() if c["awarded"]]
    per_points = Counter(c["num_points"] for c in awarded)
    expected = Counter(row["num_points"] for row in data)
    assert per_points == expected, "some rows were credited twice or not at all"
    keys = Counter(c["extra_data"][DEDUPE_KEY_FIELD] for c in awarded)
    assert set(keys.values()) == {1}
    for email in {row["user_id"] for row in data}:
        member = sandbox.member("email", email)
        assert member is not None
        want = sum(row["num_points"] for row in data if row["user_id"] == email)
        assert member["total_points"] == want


def last_state_id(echoed: list[AirbyteMessage]) -> int | None:
    ids = state_ids(echoed)
    return ids[-1] if ids else None


def requests_since(sandbox: Sandbox, before: dict[str, int]) -> dict[str, int]:
    now = sandbox.request_counts()
    return {key: now.get(key, 0) - before.get(key, 0) for key in (CREDIT, HISTORY, "total")}


# -- (a) lost answers: dropped connections and 5xx after apply ----------------------------------------


@pytest.mark.parametrize(
    ("drop_rate", "seed", "concurrency"),
    [(0.1, 7, 1), (0.3, 1, 1), (0.3, 42, 4), (0.3, 2024, 8)],
)
def test_dropped_connections_after_apply_credit_each_row_once(
    sandbox_factory: Any, drop_rate: float, seed: int, concurrency: int
) -> None:
    sb = seeded(sandbox_factory(drop_rate=drop_rate, drop_credits_only=True, seed=seed, queue_delay_ms=60))
    data = rows(segments=5)
    cfg = credit_config(sb, award_queue_delay_seconds=0.1, max_retries=10, max_concurrency=concurrency)

    out = run_write(cfg, catalog("append"), messages(data))

    assert state_ids(out) == [1, 2, 3, 4, 5]
    counts = sb.request_counts()
    assert counts["dropped"] >= 1  # the trap was actually sprung
    # Every lost answer was followed by history reads, and only credits that never landed were re-sent.
    assert counts[CREDIT] == len(data)
    assert_exactly_once(sb, data)


def test_server_errors_after_apply_are_verified_not_retried(sandbox_factory: Any) -> None:
    sb = seeded(sandbox_factory(error_rate=0.25, error_after_apply=True, seed=5, queue_delay_ms=40))
    data = rows(segments=2)
    cfg = credit_config(sb, award_queue_delay_seconds=0.08, max_retries=10, max_concurrency=1)

    out = run_write(cfg, catalog("append"), messages(data))

    assert state_ids(out) == [1, 2]
    assert sb.request_counts()["500"] >= 1
    assert_exactly_once(sb, data)


def test_server_errors_before_apply_are_resent_after_verification(sandbox_factory: Any) -> None:
    # The 500 comes before the credit is applied: the history shows nothing, so the row is sent again.
    sb = seeded(sandbox_factory(error_rate=0.25, error_after_apply=False, seed=11))
    data = rows(segments=2)
    cfg = credit_config(sb, award_queue_delay_seconds=0.05, max_retries=10, max_concurrency=1)

    out = run_write(cfg, catalog("append"), messages(data))

    assert state_ids(out) == [1, 2]
    counts = sb.request_counts()
    assert counts["500"] >= 1
    assert counts[CREDIT] > len(data)  # re-sent after confirming absence
    assert_exactly_once(sb, data)


def test_unreadable_history_after_an_uncertain_outcome_stops_the_sync(sandbox_factory: Any) -> None:
    """Never guess: when the history cannot be read to settle an uncertain credit, the sync stops."""
    sb = seeded(sandbox_factory())
    data = rows(segments=1)

    def input_messages() -> Iterator[AirbyteMessage]:
        yield from messages(data[:1])
        sb.set_options(error_rate=1.0)  # from now on every request fails with 500 (credits: before applying)
        yield from messages(data[1:])

    cfg = credit_config(sb, award_queue_delay_seconds=0.02, max_retries=1, credit_verification="none")
    cfg["max_concurrency"] = 1
    out, error = run_write_until_error(cfg, catalog("append"), input_messages())

    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type == FailureType.transient_error and error.message is not None
    assert "server error" in error.message
    assert state_ids(out) == []
    assert sb.credits() == []
    counts = sb.request_counts()
    assert counts[CREDIT] == 1  # the uncertain credit was not re-sent blindly
    assert counts[HISTORY] == 2  # one read and its one retry


# -- (b) interrupted sync replayed from its last echoed state -----------------------------------------


def interrupted_attempt(sandbox: Sandbox, cfg: dict[str, Any], all_messages: list[AirbyteMessage]) -> int | None:
    """Attempt 1 dies just before state 2, once segment 2 was read and credited; returns its last state id.

    Segment 2 landed although state 2 was never echoed: exactly what a replay must not credit again.
    """
    cut = next(i for i, m in enumerate(all_messages) if state_id(m) == 2)
    before = len(sandbox.credits())
    landed = sum(1 for m in all_messages[:cut] if m.record is not None)

    def segment_two_sent() -> None:
        wait_until(lambda: len(sandbox.credits()) - before == landed)

    out, error = run_write_until_error(cfg, catalog("append"), interrupted(all_messages, cut, segment_two_sent))
    assert isinstance(error, StopInput)
    assert state_ids(out) == [1]
    return last_state_id(out)


@pytest.mark.parametrize(("policy", "auth"), [("replay_window", "api_key"), ("every_row", "api_key"), ("replay_window", "hmac")])
def test_replay_after_interrupted_input_credits_each_row_once(sandbox_factory: Any, policy: str, auth: str) -> None:
    from sandboxes import HMAC_PRIVATE_KEY, HMAC_PUBLIC_KEY

    keys = {"hmac_public_key": HMAC_PUBLIC_KEY, "hmac_private_key": HMAC_PRIVATE_KEY} if auth == "hmac" else {}
    sb = seeded(sandbox_factory(**keys))
    data = rows(segments=3)
    all_messages = messages(data)
    cfg = credit_config(sb, hmac=auth == "hmac", credit_verification=policy)
    resume_from = interrupted_attempt(sb, cfg, all_messages)

    out = run_write(cfg, catalog("append"), after_state(all_messages, resume_from))

    assert state_ids(out) == [2, 3]
    assert_exactly_once(sb, data)


def test_every_row_replay_is_exactly_once_when_the_attempt_credited_past_its_next_state(sb: Sandbox) -> None:
    """every_row has no barrier at states: an attempt may die having credited rows beyond its next
    state (here segments 2 and 3, with only state 1 echoed). The replay verifies every row, so it
    credits none of them again."""
    data = rows(segments=3)
    all_messages = messages(data)
    cfg = credit_config(sb, credit_verification="every_row")
    never_echoed = [m for m in all_messages if m.state is None or state_id(m) == 1]

    def everything_sent() -> None:
        wait_until(lambda: len(sb.credits()) == len(data))

    # (the input dies, after every credit landed, where state 3 would come)
    attempt = interrupted([*never_echoed, all_messages[-1]], len(never_echoed), everything_sent)
    out, error = run_write_until_error(cfg, catalog("append"), attempt)
    assert isinstance(error, StopInput)
    assert state_ids(out) == [1]
    before = sb.request_counts()

    out = run_write(cfg, catalog("append"), after_state(all_messages, 1))

    assert state_ids(out) == [2, 3]
    assert requests_since(sb, before)[CREDIT] == 0  # all 8 replayed rows were found in history
    assert_exactly_once(sb, data)


@pytest.mark.parametrize("policy", ["replay_window", "none"])
def test_with_a_barrier_no_credit_starts_past_a_state_before_it_is_echoed(sandbox_factory: Any, policy: str) -> None:
    """What replay_window's promise rests on: when state k reaches the platform, exactly the rows
    before it are credited (none past it has started)."""
    sb = seeded(sandbox_factory(latency_ms=10))
    data = rows(segments=3, members=len(MEMBERS))
    cfg = credit_config(sb, credit_verification=policy, max_concurrency=8)
    landed_at_echo = []
    for message in DestinationCrowdtwist().write(cfg, catalog("append"), iter(messages(data))):
        if message.state is not None:
            landed_at_echo.append((state_id(message), len(sb.credits())))
    assert landed_at_echo == [(1, SEGMENT), (2, 2 * SEGMENT), (3, 3 * SEGMENT)]
    assert_exactly_once(sb, data)


def test_replay_after_key_revoked_mid_segment_credits_each_row_once(sb: Sandbox) -> None:
    data = rows(segments=3)
    all_messages = messages(data)
    cfg = credit_config(sb, max_concurrency=1)
    api_key = sb.options.api_key

    def attempt_one() -> Iterator[AirbyteMessage]:
        # Segment 1, state 1, then half of segment 2 lands before the key is revoked.
        yield from all_messages[: SEGMENT + 1 + 2]
        wait_until(lambda: len(sb.credits()) == SEGMENT + 2)
        sb.set_options(api_key="revoked")
        yield from all_messages[SEGMENT + 1 + 2 :]

    out, error = run_write_until_error(cfg, catalog("append"), attempt_one())
    assert isinstance(error, AirbyteTracedException)
    assert error.failure_type == FailureType.config_error
    assert state_ids(out) == [1]
    assert len(sb.credits()) == SEGMENT + 2

    sb.set_options(api_key=api_key)  # the user fixed the key; the platform replays from state 1
    out = run_write(cfg, catalog("append"), after_state(all_messages, last_state_id(out)))

    assert state_ids(out) == [2, 3]
    assert_exactly_once(sb, data)


def test_replay_with_verification_none_double_credits(sb: Sandbox) -> None:
    """The control experiment: without verification the same replay credits segment 2 twice."""
    data = rows(segments=3)
    all_messages = messages(data)
    cfg = credit_config(sb, credit_verification="none")
    resume_from = interrupted_attempt(sb, cfg, all_messages)

    out = run_write(cfg, catalog("append"), after_state(all_messages, resume_from))

    assert state_ids(out) == [2, 3]
    keys = Counter(c["extra_data"][DEDUPE_KEY_FIELD] for c in sb.credits())
    doubled = sorted(key for key, n in keys.items() if n == 2)
    assert len(doubled) == SEGMENT  # exactly segment 2, the rows before the replay's first state
    assert set(keys.values()) == {1, 2}
    segment_two = data[SEGMENT : 2 * SEGMENT]
    total = sum(m["total_points"] for m in sb.members())
    assert total == sum(r["num_points"] for r in data) + sum(r["num_points"] for r in segment_two)


def test_replay_verification_waits_for_the_award_queue(sandbox_factory: Any) -> None:
    # Credits of attempt 1 only show in history after the queue delay; the replay must wait for it.
    sb = seeded(sandbox_factory(queue_delay_ms=150))
    data = rows(segments=2)
    all_messages = messages(data)
    cfg = credit_config(sb, award_queue_delay_seconds=0.2)
    resume_from = interrupted_attempt(sb, cfg, all_messages)

    run_write(cfg, catalog("append"), after_state(all_messages, resume_from))

    assert_exactly_once(sb, data)


# -- (e) the ledger -----------------------------------------------------------------------------------


def test_ledger_full_rerun_credits_nothing_twice_and_reads_no_history(sb: Sandbox, tmp_path: Any) -> None:
    data = rows(segments=3)
    cfg = credit_config(sb, ledger_path=str(tmp_path / "ledger.sqlite"))
    run_write(cfg, catalog("append"), messages(data))
    assert_exactly_once(sb, data)

    before = sb.request_counts()
    out = run_write(cfg, catalog("append"), messages(data, first_state=10))  # outside the platform: all again

    assert state_ids(out) == [10, 11, 12]
    assert requests_since(sb, before) == {CREDIT: 0, HISTORY: 0, "total": 1}  # the activity list only
    assert_exactly_once(sb, data)


def test_ledger_pending_key_is_verified_and_absent_key_is_sent_without_lookup(sb: Sandbox, tmp_path: Any) -> None:
    path = str(tmp_path / "ledger.sqlite")
    landed = {"user_id": MEMBERS[0], "activity_id": "1001", "num_points": 5, "event_id": "crashed-after-send"}
    fresh = {"user_id": MEMBERS[1], "activity_id": "1001", "num_points": 6, "event_id": "never-sent"}
    # A crash after sending: the credit is in CrowdTwist, the ledger says only "pending".
    run_write(credit_config(sb), catalog("append"), [record(landed), state(1)])
    ledger = CreditLedger(path, scope=ledger_scope(sb.base_url))
    ledger.mark_pending(event_key("email", MEMBERS[0], "1001", "crashed-after-send"))
    ledger.close()

    before = sb.request_counts()
    # Both rows come after the first state: only the ledger decides what is verified.
    run_write(credit_config(sb, ledger_path=path, credit_verification="replay_window"), catalog("append"),
              [state(2), record(landed), record(fresh), state(3)])

    assert requests_since(sb, before) == {CREDIT: 1, HISTORY: 1, "total": 3}
    assert_exactly_once(sb, [landed, fresh])
    ledger = CreditLedger(path, scope=ledger_scope(sb.base_url))
    assert ledger.status(event_key("email", MEMBERS[0], "1001", "crashed-after-send")) == DONE
    assert ledger.status(event_key("email", MEMBERS[1], "1001", "never-sent")) == DONE
    ledger.close()


def test_fresh_ledger_on_replay_still_verifies(sb: Sandbox, tmp_path: Any) -> None:
    """A replayed attempt in a new container starts with an empty ledger: it must not skip verification."""
    data = rows(segments=3)
    all_messages = messages(data)
    resume_from = interrupted_attempt(sb, credit_config(sb, ledger_path=str(tmp_path / "attempt1.sqlite")), all_messages)

    cfg = credit_config(sb, ledger_path=str(tmp_path / "attempt2.sqlite"))
    run_write(cfg, catalog("append"), after_state(all_messages, resume_from))

    assert_exactly_once(sb, data)


def test_ledger_is_scoped_by_program(sandbox_factory: Any, tmp_path: Any) -> None:
    """A ledger first used against one program (e.g. the sandbox) never hides credits of another."""
    path = str(tmp_path / "ledger.sqlite")
    data = rows(segments=1)
    first, second = seeded(sandbox_factory()), seeded(sandbox_factory())
    run_write(credit_config(first, ledger_path=path), catalog("append"), messages(data))
    run_write(credit_config(second, ledger_path=path), catalog("append"), messages(data))

    assert_exactly_once(first, data)
    assert_exactly_once(second, data)
    ledger = CreditLedger(path, scope=ledger_scope(second.base_url))
    assert ledger.size() == len(data)
    assert {ledger.status(event_key("email", MEMBERS[i], "1001", f"evt-{i}")) for i in (1, 3)} == {DONE}
    assert ledger.status("unknown") is None
    assert PENDING not in {ledger.status(f"evt-{i}") for i in (1, 3)}
    ledger.close()


# -- cost of each policy (requests per row, from the sandbox's counters) ----------------------------


def _measure(sandbox: Sandbox, policy: str, members: int, tmp_path: Any) -> dict[str, dict[str, int]]:
    data = rows(segments=3, members=members)
    all_messages = messages(data)
    extra: dict[str, Any] = {"credit_verification": policy}
    if policy == "ledger":
        extra = {"credit_verification": "replay_window", "ledger_path": str(tmp_path / "ledger.sqlite")}
    cfg = credit_config(sandbox, **extra)
    result: dict[str, dict[str, int]] = {}
    sandbox.reset()
    seeded(sandbox)

    before = sandbox.request_counts()
    run_write(cfg, catalog("append"), all_messages)
    result["clean"] = requests_since(sandbox, before)

    sandbox.reset()
    seeded(sandbox)
    if policy == "ledger":
        (tmp_path / "ledger.sqlite").unlink()
    resume_from = interrupted_attempt(sandbox, cfg, all_messages)
    before = sandbox.request_counts()
    run_write(cfg, catalog("append"), after_state(all_messages, resume_from))
    result["replay"] = requests_since(sandbox, before)
    if policy == "ledger":
        before = sandbox.request_counts()
        run_write(cfg, catalog("append"), all_messages)
        result["rerun"] = requests_since(sandbox, before)
    return result


def _history(runs: dict[str, dict[str, int]], run: str) -> int:
    assert runs[run]["total"] == runs[run][CREDIT] + runs[run][HISTORY] + 1  # + the activity list
    return runs[run][HISTORY]


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        # 12 rows of 4 members (each member in every segment): history reads are cached per member.
        (4, {"replay_window": (4, 4), "every_row": (4, 4), "none": (0, 0), "ledger": (4, 0)}),
        # 12 rows of 12 members (a member per row): every_row reads once per row, replay_window only for
        # the 4 rows before the first state.
        (12, {"replay_window": (4, 4), "every_row": (12, 8), "none": (0, 0), "ledger": (4, 0)}),
    ],
)
def test_extra_requests_per_policy(
    sb: Sandbox, tmp_path: Any, capsys: pytest.CaptureFixture[str], members: int, expected: dict[str, tuple[int, int]]
) -> None:
    """History reads (clean run, replay) per policy; 12 rows in 3 segments, the replay re-sends segments 2-3."""
    measured = {policy: _measure(sb, policy, members, tmp_path) for policy in expected}

    assert {policy: (_history(r, "clean"), _history(r, "replay")) for policy, r in measured.items()} == expected
    # Credits sent: 12 on a clean run; on the replay the 4 rows of segment 3, plus, without verification,
    # the 4 rows of segment 2 again (the double credits).
    assert {policy: (r["clean"][CREDIT], r["replay"][CREDIT]) for policy, r in measured.items()} == {
        "replay_window": (12, 4), "every_row": (12, 4), "none": (12, 8), "ledger": (12, 4)
    }
    assert measured["ledger"]["rerun"] == {CREDIT: 0, HISTORY: 0, "total": 1}  # the activity list only
    with capsys.disabled():
        for policy, runs in measured.items():
            print(f"\n{members} members, {policy}: {runs}", end="")


def test_per_stream_states_replay_a_stream_without_state_from_its_start(sb: Sandbox) -> None:
    """Attempt 1: A1, state(A), B1, B2, then dies before B's first state. The platform resumes A from
    its state and B from scratch, so B1 and B2 come *after* a state in the replay and must still be
    verified: the replay window is per stream (or global), not "before the first state of any stream"."""
    a1 = {"user_id": MEMBERS[0], "activity_id": "1001", "num_points": 1, "event_id": "a1"}
    a2 = {"user_id": MEMBERS[1], "activity_id": "1001", "num_points": 2, "event_id": "a2"}
    b1 = {"user_id": MEMBERS[2], "activity_id": "1001", "num_points": 3, "event_id": "b1"}
    b2 = {"user_id": MEMBERS[3], "activity_id": "1001", "num_points": 4, "event_id": "b2"}
    cat = catalog("append", "a", extra_streams=("b",))
    cfg = credit_config(sb)
    first = [record(a1, "a"), state(1, "a"), record(b1, "b"), record(b2, "b")]
    out = run_write(cfg, cat, first)  # input ends before B's state: B1 and B2 are credited, unconfirmed
    assert state_ids(out) == [1]
    wait_until(lambda: len(sb.credits()) == 3)

    replay = [record(a2, "a"), state(2, "a"), record(b1, "b"), record(b2, "b"), state(3, "b")]
    out = run_write(cfg, cat, replay)

    assert state_ids(out) == [2, 3]
    assert_exactly_once(sb, [a1, a2, b1, b2])


# -- the default policy (every_row): safe wherever the states of a replay fall --------------------------


def _purchases(n: int) -> list[dict[str, Any]]:
    return [
        {"user_id": MEMBERS[i % len(MEMBERS)], "activity_id": "1001", "num_points": 1 + i % 9, "event_id": f"o-{i}"}
        for i in range(n)
    ]


def _with_states(data: list[dict[str, Any]], every: int, first_id: int) -> list[AirbyteMessage]:
    out: list[AirbyteMessage] = []
    for i, row in enumerate(data):
        out.append(record(row))
        if (i + 1) % every == 0:
            out.append(state(first_id + i // every))
    return out


@pytest.mark.parametrize("policy", ["default", "replay_window"])
def test_a_replay_whose_states_fall_elsewhere_never_doubles_a_credit_by_default(sandbox: Sandbox, policy: str) -> None:
    # Attempt 1 sends 60 rows as one segment and dies before its state; the replay sends the same rows
    # with a state every 6 rows (sources do not promise the same state positions).
    seeded(sandbox)
    extra: dict[str, Any] = {} if policy == "default" else {"credit_verification": "replay_window"}
    cfg = credit_config(sandbox, max_concurrency=4, **extra)
    data = _purchases(60)
    attempt_1 = [*(record(r) for r in data), state(1)]
    wait_for_all = lambda: wait_until(lambda: len(sandbox.credits()) == 60, timeout=20)  # noqa: E731
    run_write_until_error(cfg, catalog("append"), interrupted(attempt_1, 60, before_raise=wait_for_all))
    assert len(sandbox.credits()) == 60

    run_write(cfg, catalog("append"), _with_states(data, 6, first_id=10))

    doubled = len(sandbox.credits()) - 60
    if policy == "default":
        assert doubled == 0
    else:
        # Documented limit of replay_window: only rows before the replay's first state are verified.
        assert doubled == 54


def test_a_full_refresh_re_sending_history_credits_nothing_twice_by_default(sandbox: Sandbox) -> None:
    seeded(sandbox)
    cfg = credit_config(sandbox, max_concurrency=4)
    data = _purchases(40)
    run_write(cfg, catalog("append"), _with_states(data, 10, first_id=1))
    assert len(sandbox.credits()) == 40
    # The next sync re-sends all history (full refresh / reset / manual re-run) plus 5 new events.
    out = run_write(cfg, catalog("append"), _with_states([*data, *_purchases(45)[40:]], 15, first_id=100))
    assert len(sandbox.credits()) == 45
    assert sandbox.request_counts()[HISTORY] <= 2 * len(MEMBERS)  # one read per distinct member per sync
    assert state_ids(out) == [100, 101, 102]


def test_the_same_event_id_for_two_members_or_two_activities_is_two_events(sb: Sandbox, tmp_path: Any) -> None:
    """event_id is scoped by member and activity: in one sync, across streams, and in the ledger."""
    path = str(tmp_path / "ledger.sqlite")
    data = [
        {"user_id": MEMBERS[0], "activity_id": "1001", "event_id": "1"},
        {"user_id": MEMBERS[1], "activity_id": "1001", "event_id": "1"},
        {"user_id": MEMBERS[0], "activity_id": "1002", "event_id": "1"},
    ]
    cat = catalog("append", "purchases", extra_streams=["surveys"])
    msgs = [record(data[0], "purchases"), record(data[1], "surveys"), record(data[2], "surveys"), state(1, None)]
    run_write(credit_config(sb, ledger_path=path), cat, msgs)
    assert len(sb.credits()) == 3
    run_write(credit_config(sb, ledger_path=path), cat, msgs)  # a re-run: all three are known events
    assert len(sb.credits()) == 3
