from __future__ import annotations

import random

import pytest

from destination_crowdtwist.sync.checkpoint import CheckpointTracker

A = (None, "a")
B = (None, "b")


def test_state_waits_for_every_earlier_record() -> None:
    t: CheckpointTracker[str] = CheckpointTracker()
    r1 = t.add_record()
    r2 = t.add_record()
    t.add_state("s1", A)
    assert t.release() == []
    t.settle(r2, A, accepted=True)
    assert t.release() == []  # r1 still outstanding
    t.settle(r1, A, accepted=False)
    [released] = t.release()
    assert (released.state, released.record_count, released.rejected_count) == ("s1", 1, 1)


def test_states_released_in_order_even_when_later_segment_settles_first() -> None:
    t: CheckpointTracker[str] = CheckpointTracker()
    r1 = t.add_record()
    t.add_state("s1", A)
    r2 = t.add_record()
    t.add_state("s2", A)
    t.settle(r2, A, accepted=True)
    assert t.release() == []
    t.settle(r1, A, accepted=True)
    assert [(s.state, s.record_count) for s in t.release()] == [("s1", 1), ("s2", 1)]


def test_stream_states_count_their_own_stream_since_their_previous_state() -> None:
    t: CheckpointTracker[str] = CheckpointTracker()
    tickets = [(t.add_record(), A), (t.add_record(), B), (t.add_record(), A)]
    t.add_state("a1", A)
    tickets.append((t.add_record(), B))
    t.add_state("b1", B)
    for ticket, stream in tickets:
        t.settle(ticket, stream, accepted=True)
    released = t.release()
    assert [(s.state, s.record_count) for s in released] == [("a1", 2), ("b1", 2)]


def test_global_state_counts_all_streams() -> None:
    t: CheckpointTracker[str] = CheckpointTracker()
    ra, rb = t.add_record(), t.add_record()
    t.add_state("g1", None)
    t.settle(ra, A, accepted=True)
    t.settle(rb, B, accepted=False)
    [g] = t.release()
    assert (g.record_count, g.rejected_count) == (1, 1)


def test_state_with_no_records_is_released_at_once_with_zero_counts() -> None:
    t: CheckpointTracker[str] = CheckpointTracker()
    t.add_state("s0", A)
    [s] = t.release()
    assert (s.record_count, s.rejected_count) == (0, 0)


def test_double_settle_is_a_bug() -> None:
    t: CheckpointTracker[str] = CheckpointTracker()
    r = t.add_record()
    t.settle(r, A, accepted=True)
    with pytest.raises(RuntimeError):
        t.settle(r, A, accepted=True)


@pytest.mark.parametrize("seed", range(5))
def test_random_interleaving_counts_are_exact(seed: int) -> None:
    rng = random.Random(seed)
    t: CheckpointTracker[int] = CheckpointTracker()
    streams = [A, B]
    outstanding = []
    expected = []  # (state, stream, accepted, rejected)
    since = {A: [0, 0], B: [0, 0]}
    released = []
    for i in range(400):
        if rng.random() < 0.1:
            stream = rng.choice(streams)
            t.add_state(i, stream)
            expected.append((i, since[stream][0], since[stream][1]))
            since[stream] = [0, 0]
        else:
            stream = rng.choice(streams)
            accepted = rng.random() < 0.8
            outstanding.append((t.add_record(), stream, accepted))
            since[stream][0 if accepted else 1] += 1
        if outstanding and rng.random() < 0.5:
            ticket, stream, accepted = outstanding.pop(rng.randrange(len(outstanding)))
            t.settle(ticket, stream, accepted=accepted)
        released += t.release()
    for ticket, stream, accepted in outstanding:
        t.settle(ticket, stream, accepted=accepted)
    released += t.release()
    assert [(r.state, r.record_count, r.rejected_count) for r in released] == expected
