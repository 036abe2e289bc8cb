"""The Activity Credit writer's per-sync memory (writers/credit_memory.py): exact answers, flat RSS."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.writers.credit_memory import CreditMemory
from tests_support.sqlite_steps import sqlite_steps

EVENT = ("email", "a@x.com", "1001", "evt-1")


def test_first_row_of_an_event_is_remembered() -> None:
    memory = CreditMemory()
    assert memory.first_row(EVENT, 3) == 3
    assert memory.first_row(EVENT, 9) == 3
    assert memory.first_row(("email", "a@x.com", "1002", "evt-1"), 10) == 10  # another activity
    assert memory.first_row(("email", "b@x.com", "1001", "evt-1"), 11) == 11  # another member
    # Parts are kept apart: ("a", "bc") is not ("ab", "c").
    assert memory.first_row(("email", "a@x.co", "m1001", "evt-1"), 12) == 12


def test_accepted_is_per_event() -> None:
    memory = CreditMemory()
    memory.first_row(EVENT, 0)
    assert not memory.accepted(EVENT)
    memory.mark_accepted(EVENT)
    assert memory.accepted(EVENT)
    assert not memory.accepted(("email", "a@x.com", "1001", "evt-2"))


def test_history_is_unknown_until_read_then_holds_the_read_keys_and_our_credits() -> None:
    memory = CreditMemory()
    member = ("email", "a@x.com")
    memory.remember(member, "k0")  # not read yet: nothing to add to
    assert memory.history_has(member, "k0") is None
    memory.set_history(member, ["k1", "k2", "k1"])
    assert memory.history_has(member, "k1") is True
    assert memory.history_has(member, "k0") is False
    memory.remember(member, "k3")
    assert memory.history_has(member, "k3") is True
    memory.set_history(member, ["k9"])  # a fresh read replaces the old one
    assert (memory.history_has(member, "k1"), memory.history_has(member, "k9")) == (False, True)
    memory.set_history(("email", "b@x.com"), [])  # read, empty
    assert memory.history_has(("email", "b@x.com"), "k9") is False


def test_a_closed_memory_stops_the_sync_rather_than_forgetting() -> None:
    memory = CreditMemory()
    memory.close()
    with pytest.raises(ConfigError, match="temporary"):
        memory.first_row(EVENT, 0)


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_thousands_of_events_of_many_members_keep_their_first_rows() -> None:
    """The functional half of the 100k measurement below, small enough for every test run."""
    memory = CreditMemory()
    for i in range(5_000):
        event = ("email", f"member{i % 1_000}@example.com", "1001", f"evt-{i}")
        assert memory.first_row(event, i) == i
        memory.mark_accepted(event)
    assert memory.first_row(("email", "member0@example.com", "1001", "evt-0"), 9_999) == 0
    assert memory.accepted(("email", "member7@example.com", "1001", "evt-7"))
    assert not memory.accepted(("email", "member7@example.com", "1001", "evt-8"))  # another member's
    memory.close()


def _filled(events: int) -> CreditMemory:
    memory = CreditMemory()
    for i in range(events):
        event = ("email", f"member{i % 1_000}@example.com", "1001", f"evt-{i}")
        memory.first_row(event, i)
        memory.mark_accepted(event)
    member = ("email", "member1@example.com")
    memory.set_history(member, [f"key-{i}" for i in range(min(events, 1_000))])
    return memory


def test_each_call_costs_the_same_sqlite_steps_however_much_is_remembered() -> None:
    """Each call is one primary-key search or insert, exactly and without a clock: the work of a call is
    the same with 10 events remembered as with 5,000 (a scan would grow with them), so a sync's time
    grows linearly with its rows."""
    seen, new, member = ("email", "member1@example.com", "1001", "evt-1"), ("email", "z@x.com", "1001", "e"), (
        "email", "member1@example.com")

    def work(memory: CreditMemory) -> list[int]:
        db = memory._db
        return [
            sqlite_steps(db, lambda: memory.first_row(seen, 99_999)),
            sqlite_steps(db, lambda: memory.first_row(new, 99_999)),
            sqlite_steps(db, lambda: memory.mark_accepted(new)),
            sqlite_steps(db, lambda: memory.accepted(seen)),
            sqlite_steps(db, lambda: memory.history_has(member, "key-1")),
            sqlite_steps(db, lambda: memory.history_has(member, "key-none")),
            sqlite_steps(db, lambda: memory.remember(member, "key-new")),
        ]

    small, large = _filled(10), _filled(5_000)
    assert work(small) == work(large)
    # The count has teeth: a statement that scans does work in proportion to the rows.
    scan = "SELECT count(*) FROM events WHERE seq >= 0"
    steps = [sqlite_steps(memory._db, partial(memory._db.execute, scan)) for memory in (small, large)]
    assert steps[1] > 100 * steps[0]
    small.close()
    large.close()


# A measurement (100,000 events, resident memory): marker perf, run by `make perf` and CI,
# not by `make test` (unit_tests/test_packaging.py checks the marker).
@pytest.mark.perf
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident memory is read from /proc (Linux)")
def test_memory_stays_flat_over_100k_events() -> None:
    # A dict and a set of the same events took about 580 bytes a row (58 MB here, 600 MB at 1M rows).
    memory = CreditMemory()
    before = _rss_mib()
    for i in range(100_000):
        event = ("email", f"member{i % 20_000}@example.com", "1001", f"evt-{i}")
        memory.first_row(event, i)
        memory.mark_accepted(event)
    grown = _rss_mib() - before
    assert grown < 16, f"RSS grew by {grown:.1f} MiB"
    assert memory.first_row(("email", "member0@example.com", "1001", "evt-0"), 200_000) == 0
    # No clock: that a call's work does not grow with the events is counted exactly above.
