"""The award-queue wait before a replay read, only where an earlier request may still be queued (issue 20).

``writers/ledger.py`` records which session sent a pending key and when that session closed with no
credit request on the way; ``writers/activities.py`` (point 7) then reads a pending key's history
without waiting once that close is ``award_queue_delay_seconds`` old. Against the scripted CrowdTwist
(tests_support/fake_api.py): a fake clock, so every wait shows in ``api.waits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from destination_crowdtwist.api.errors import TransientError, UncertainOutcome
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD, ActivityCreditWriter
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row, StreamContext
from destination_crowdtwist.writers.ledger import DONE, PENDING, CreditLedger, event_key, ledger_scope
from tests_support.fake_api import FakeApi, Reply

BASE_URL = "https://api123.crowdtwist.com"
SCOPE = ledger_scope(BASE_URL)
STREAM = StreamContext(namespace=None, name="credits", sync_mode="append", object_name="activity_credit")
AWARDED = Reply(200, {"awarded": True})
DELAY = 2.0
ANN = "ann@example.com"


def key(event: str, user: str = ANN) -> str:
    return event_key("email", user, "1001", event)


def history(*events: str) -> Reply:
    return Reply(200, [{"activity_id": "1001", "extra_data": {DEDUPE_KEY_FIELD: e}} for e in events])


def uncertain() -> UncertainOutcome:
    return UncertainOutcome("connection dropped", request_line="POST /v2/users/a***/activities")


class Clock:
    """A settable clock for a ledger used outside a writer."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def writer(api: FakeApi, path: str, **extra: Any) -> ActivityCreditWriter:
    api.activities = [{"id": "1001", "num_points": 10}]
    raw = {"api_base_url": BASE_URL, "credentials": {"api_key": "k"}, "object_type": "activity_credit",
           "award_queue_delay_seconds": DELAY, "ledger_path": path, **extra}
    w = ActivityCreditWriter(parse_config(raw), api, clock=api.clock, sleep=api.wait)
    w.start()
    return w


def settle(w: ActivityCreditWriter, event: str, seq: int = 0, user: str = ANN) -> Outcome:
    result = w.prepare(Row(stream=STREAM, data={"user_id": user, "activity_id": "1001", "event_id": event},
                           seq=seq, verify=True))
    return result if isinstance(result, Outcome) else w.apply(result)


def seed(path: str, clock: Clock, *, pending: dict[str, str | None], quiet: dict[str, float] | None = None) -> None:
    """A ledger with a done key (so it is trusted), pending keys by session, and sessions closed quietly."""
    ledger = CreditLedger(path, scope=SCOPE, clock=clock)
    ledger.mark_done(key("old"), OutcomeKind.CREDITED)
    for k, session in pending.items():
        ledger.mark_pending(k, session=session)
    for session, at in (quiet or {}).items():
        clock.now = at
        ledger.close_session(session, quiet=True)
    ledger.close()


# -- the ledger's record --------------------------------------------------------------------------------


def test_a_pending_key_is_quiet_since_its_sessions_quiet_close(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    ledger = CreditLedger(str(tmp_path / "l.sqlite"), scope=SCOPE, clock=clock)
    ledger.mark_pending("a", session="s1")
    ledger.mark_pending("b", session="s2")
    ledger.mark_pending("c")  # a writer that records no session (an older version)
    clock.now = 1005.0
    ledger.close_session("s1", quiet=True)
    ledger.close_session("s2", quiet=False)  # a request was on the way at the close
    assert ledger.quiet_since("a") == 1005.0
    assert ledger.quiet_since("b") is None
    assert ledger.quiet_since("c") is None
    assert ledger.quiet_since("absent") is None
    # Marked again later (by a session that never closes quietly, e.g. killed): unknown again.
    clock.now = 1010.0
    ledger.mark_pending("a", session="s3")
    assert ledger.quiet_since("a") is None
    # The same key marked by an older version after s1's quiet close: its mark is newer, so unknown.
    ledger.mark_pending("d", session="s1")
    clock.now = 1011.0
    ledger.close_session("s1", quiet=True)
    assert ledger.quiet_since("d") == 1011.0
    clock.now = 1012.0
    ledger.mark_pending("d")
    assert ledger.quiet_since("d") is None
    ledger.close()


def test_done_and_forgotten_keys_drop_their_session_and_unused_sessions_go(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    path = str(tmp_path / "l.sqlite")
    ledger = CreditLedger(path, scope=SCOPE, clock=clock)
    ledger.mark_pending("a", session="s1")
    ledger.mark_pending("b", session="s1")
    ledger.mark_done("a", OutcomeKind.CREDITED)
    ledger.forget("b")
    ledger.close_session("s1", quiet=True)
    assert ledger.status("a") == DONE and ledger.quiet_since("a") is None
    ledger.close()
    import sqlite3

    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM credit_sent_by").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM credit_sessions").fetchone() == (0,)  # no pending key names s1
    db.close()


# -- the writer --------------------------------------------------------------------------------------------


def test_a_pending_key_of_a_session_that_closed_quietly_long_ago_is_read_without_waiting(
    api: FakeApi, tmp_path: Path
) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={key("p"): "s1"}, quiet={"s1": api.now - 50})
    api.always("activity_history", history("p")).always("credit_activity", AWARDED)
    w = writer(api, path)
    assert settle(w, "p").kind is OutcomeKind.DUPLICATE
    assert len(api.to("activity_history")) == 1
    assert api.waits == []
    w.close()


def test_a_quiet_close_less_than_the_delay_ago_waits_only_for_the_rest(api: FakeApi, tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 10), pending={key("p"): "s1"}, quiet={"s1": api.now - 0.5})
    api.always("activity_history", history()).always("credit_activity", AWARDED)
    w = writer(api, path)
    assert settle(w, "p").kind is OutcomeKind.CREDITED
    assert api.waits == [pytest.approx(DELAY - 0.5)]
    w.close()


@pytest.mark.parametrize("session", ["killed", None])
def test_a_pending_key_of_a_killed_session_or_an_older_version_waits_for_the_queue(
    api: FakeApi, tmp_path: Path, session: str | None
) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={key("p"): session})  # no quiet close: kill -9, or no session
    api.always("activity_history", history()).always("credit_activity", AWARDED)
    w = writer(api, path)
    assert settle(w, "p").kind is OutcomeKind.CREDITED
    assert api.waits == [pytest.approx(DELAY)]
    w.close()


def test_a_ledger_from_the_bucket_never_spares_the_wait(api: FakeApi, tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={key("p"): "s1"}, quiet={"s1": api.now - 50})
    api.activities = [{"id": "1001", "num_points": 10}]
    api.always("activity_history", history()).always("credit_activity", AWARDED)
    raw = {"api_base_url": BASE_URL, "credentials": {"api_key": "k"}, "object_type": "activity_credit",
           "award_queue_delay_seconds": DELAY, "ledger_path": path}
    w = ActivityCreditWriter(parse_config(raw), api, clock=api.clock, sleep=api.wait, ledger_proves_absence=False)
    w.start()
    assert settle(w, "p").kind is OutcomeKind.CREDITED
    assert api.waits == [pytest.approx(DELAY)]
    w.close()


def test_a_trusted_ledger_whose_keys_are_all_done_reads_and_waits_for_nothing(api: FakeApi, tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={})
    api.always("credit_activity", AWARDED)
    w = writer(api, path)
    assert [settle(w, e, i).kind for i, e in enumerate(["old", "new"])] == ["duplicate", "credited"]
    assert api.to("activity_history") == [] and api.waits == []
    w.close()


def test_a_session_that_gave_up_closes_quietly_and_the_next_reads_its_key_without_waiting(
    api: FakeApi, tmp_path: Path
) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={})
    api.expect("credit_activity", *[uncertain() for _ in range(4)])  # max_retries 3: the sync stops
    api.always("activity_history", history())
    first = writer(api, path)
    with pytest.raises(TransientError):
        settle(first, "lost")
    first.close()  # no request on the way: a quiet close
    api.now += 60
    api.waits.clear()
    api.always("credit_activity", AWARDED)
    second = writer(api, path)
    assert settle(second, "lost").kind is OutcomeKind.CREDITED  # the history proves it never landed
    assert api.waits == []
    second.close()
    ledger = CreditLedger(path, scope=SCOPE)
    assert ledger.status(key("lost")) == DONE
    ledger.close()


def test_a_close_with_a_credit_on_the_way_is_not_quiet_and_nothing_is_sent_after_it(
    api: FakeApi, tmp_path: Path
) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={})
    api.always("activity_history", history())
    w = writer(api, path)
    late = w.prepare(Row(stream=STREAM, data={"user_id": ANN, "activity_id": "1001", "event_id": "late"}, seq=1))
    assert not isinstance(late, Outcome)

    def close_while_on_the_way(_call: Any) -> Reply:
        w.close()  # shutdown gave up on this worker: the writer closes while its request is out
        raise uncertain()

    api.always("credit_activity", close_while_on_the_way)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the closed ledger refuses the follow-up
        settle(w, "racing")
    ledger = CreditLedger(path, scope=SCOPE)
    assert ledger.status(key("racing")) == PENDING
    assert ledger.quiet_since(key("racing")) is None  # the close was not quiet: the next sync waits
    ledger.close()
    with pytest.raises(TransientError, match="stopping"):
        w._send(late.payload, late.label)  # a straggling worker after the close sends nothing
    assert len(api.to("credit_activity")) == 1


def test_a_cached_read_taken_before_the_wait_is_not_trusted_for_a_replayed_key(api: FakeApi, tmp_path: Path) -> None:
    # k1 is new (absent from a trusted ledger): sent, its answer lost, and the history polled at once (the
    # earlier attempt's k2 is still queued). k2 is pending from a killed attempt: its replay read must not
    # reuse that early read, which may predate k2's award.
    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 1), pending={key("k2"): None})
    api.expect("credit_activity", uncertain())
    api.expect("activity_history", history("k1"), history("k1", "k2"))
    w = writer(api, path)
    assert settle(w, "k1").kind is OutcomeKind.CREDITED  # found by the poll: not sent again
    assert settle(w, "k2", seq=1).kind is OutcomeKind.DUPLICATE  # read again after the wait, and found
    assert len(api.to("credit_activity")) == 1
    assert api.waits == [pytest.approx(DELAY)]
    w.close()


def test_a_ledger_that_cannot_record_the_end_costs_only_the_next_wait(
    api: FakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    path = str(tmp_path / "ledger.sqlite")
    seed(path, Clock(api.now - 100), pending={})
    w = writer(api, path)
    ledger = w._ledger
    assert ledger is not None

    def broken(*_: Any, **__: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    ledger.close_session = broken  # type: ignore[method-assign]
    w.close()  # no exception: the sync's outcome does not depend on it
    assert any("could not record this sync's end" in r.getMessage() for r in caplog.records)
    with pytest.raises(sqlite3.ProgrammingError):
        ledger.size()  # closed all the same
