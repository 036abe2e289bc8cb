"""The pipeline: per-member order, bounds, exact states, fatal errors, the pool's size and the progress line."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.sync.checkpoint import ReleasedState
from destination_crowdtwist.sync.member_queues import MemberQueues, Task, prepare_again
from destination_crowdtwist.sync.pipeline import Flow, Pipeline
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Prepared, Row, StreamContext

REJECTED, UPDATED, UNCHANGED = OutcomeKind.REJECTED, OutcomeKind.UPDATED, OutcomeKind.UNCHANGED

STREAM = StreamContext(namespace=None, name="users", sync_mode="append_dedup")


class RecordingWriter:
    """Writer double: records the order rows ran in and how many ran at once per member."""

    def __init__(self, delay: float = 0.002, fail_on: int | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.order: dict[str, list[int]] = {}
        self.active: dict[str, int] = {}
        self.max_active_per_member = 0
        self.max_active = 0
        self.running = 0
        self.asked: list[int] = []  # rows settle_at_once was asked about

    def prepare(self, row: Row) -> Prepared[None] | Outcome:
        if row.data.get("unparseable"):
            return Outcome.rejected("?", Rejection(Reason.VALIDATION, "cannot parse"))
        return Prepared(row, row.data["user_id"], row.data["user_id"], None)

    def settle_at_once(self, prepared: Prepared[None]) -> Outcome | None:
        """Rows marked ``same`` need no request (as the member index decides in the real writer)."""
        with self.lock:
            self.asked.append(prepared.row.data["n"])
        return Outcome(kind=UNCHANGED, member=prepared.member) if prepared.row.data.get("same") else None

    def apply(self, prepared: Prepared[None]) -> Outcome:
        row = prepared.row
        member = row.data["user_id"]
        with self.lock:
            self.active[member] = self.active.get(member, 0) + 1
            self.running += 1
            self.max_active_per_member = max(self.max_active_per_member, self.active[member])
            self.max_active = max(self.max_active, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.active[member] -= 1
            self.running -= 1
            self.order.setdefault(member, []).append(row.data["n"])
        if self.fail_on is not None and row.data["n"] == self.fail_on:
            raise ConfigError("credentials revoked")
        if row.data.get("bad"):
            return Outcome.rejected(member, Rejection(Reason.VALIDATION, "bad row"))
        return Outcome(kind=UPDATED, member=member)

    def start(self) -> None: ...

    def checkpoint(self) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def _run(
    writer: RecordingWriter,
    rows: Iterable[Mapping[str, Any]],
    *,
    concurrency: int = 8,
    max_pending: int | None = None,
    states_every: int | None = None,
    report: SyncReport | None = None,
) -> tuple[Pipeline, SyncReport, list[ReleasedState[Any]]]:
    report = report or SyncReport()
    p = Pipeline(report, concurrency=concurrency, max_pending=max_pending, progress_interval=0)
    p.start()
    released: list[ReleasedState[Any]] = []
    try:
        for i, data in enumerate(rows):
            p.submit(Row(stream=STREAM, data=data, seq=i), writer)
            if states_every and (i + 1) % states_every == 0:
                p.add_state(f"s{i + 1}", STREAM.key)
            released += p.release()
        p.wait_settled()
        released += p.release()
    finally:
        p.shutdown()
    return p, report, released


def test_a_row_settled_at_once_never_reaches_a_worker_unless_its_member_has_a_row_inside() -> None:
    # m0's first row is in flight (slow) when its unchanged second row arrives: the writer is not asked
    # about it (the first row may change what it knows of m0), and it runs after the first on a worker.
    # m1's unchanged row arrives while m1 has nothing inside: settled at once, never applied.
    writer = RecordingWriter(delay=0.3)
    rows = [{"user_id": "m0", "n": 0}, {"user_id": "m0", "n": 1, "same": True},
            {"user_id": "m1", "n": 2, "same": True}, {"user_id": "m2", "n": 3}]
    _, report, released = _run(writer, rows, states_every=4)
    assert writer.asked == [0, 2, 3]  # never row 1: m0 was busy
    assert writer.order == {"m0": [0, 1], "m2": [3]}  # row 2 (m1) never reached a worker
    assert report.by_kind[UNCHANGED] == 1 and report.by_kind[UPDATED] == 3
    assert [(s.state, s.record_count) for s in released] == [("s4", 4)]


def test_rows_settled_at_once_count_in_the_state_after_them_even_while_earlier_rows_are_in_flight() -> None:
    # 50 slow rows of m0..m4, then 200 unchanged rows of other members: those settle at once, without
    # room in the bounded queue (max_pending 8), and the state after all of them waits for the slow rows.
    writer = RecordingWriter(delay=0.01)
    rows = [{"user_id": f"m{i % 5}", "n": i} for i in range(50)]
    rows += [{"user_id": f"k{i}", "n": 50 + i, "same": True} for i in range(200)]
    p, report, released = _run(writer, rows, max_pending=8, concurrency=2, states_every=250)
    assert report.by_kind[UNCHANGED] == 200 and sum(len(v) for v in writer.order.values()) == 50
    assert [(s.state, s.record_count) for s in released] == [("s250", 250)]
    assert p.peak_pending <= 8


def test_rows_of_one_member_run_in_input_order_and_never_concurrently() -> None:
    rows = [{"user_id": f"m{i % 5}", "n": i} for i in range(200)]
    writer = RecordingWriter()
    _run(writer, rows, concurrency=8)
    assert writer.max_active_per_member == 1
    for member, order in writer.order.items():
        assert order == sorted(order), member
    assert sum(len(v) for v in writer.order.values()) == 200
    assert writer.max_active > 1  # different members did run in parallel


def test_pending_rows_are_bounded() -> None:
    rows = [{"user_id": "same", "n": i} for i in range(100)]  # one member: strictly serial
    writer = RecordingWriter(delay=0.0005)
    p, _, _ = _run(writer, rows, concurrency=4, max_pending=10)
    assert p.peak_pending <= 10
    assert writer.order["same"] == list(range(100))


def test_states_released_with_exact_counts_under_concurrency() -> None:
    rows = [{"user_id": f"m{i % 7}", "n": i, "bad": i % 10 == 0} for i in range(100)]
    writer = RecordingWriter(delay=0.001)
    _, report, released = _run(writer, rows, concurrency=8, states_every=25)
    assert [s.state for s in released] == ["s25", "s50", "s75", "s100"]
    assert [(s.record_count, s.rejected_count) for s in released] == [(22, 3), (23, 2), (22, 3), (23, 2)]
    assert report.by_kind[REJECTED] == 10


def test_fatal_error_stops_new_rows_and_is_raised() -> None:
    rows = [{"user_id": f"m{i}", "n": i} for i in range(50)]
    writer = RecordingWriter(delay=0.002, fail_on=5)
    with pytest.raises(ConfigError):
        _run(writer, rows, concurrency=2, max_pending=4)
    ran = sum(len(v) for v in writer.order.values())
    assert ran < 50


def test_rows_rejected_in_prepare_settle_at_once_and_count_in_their_state() -> None:
    rows = [{"user_id": f"m{i}", "n": i, "unparseable": i % 4 == 0} for i in range(20)]
    writer = RecordingWriter(delay=0.0)
    _, _, released = _run(writer, rows, concurrency=2, states_every=10)
    assert [(s.record_count, s.rejected_count) for s in released] == [(7, 3), (8, 2)]
    assert sum(len(v) for v in writer.order.values()) == 15  # rejected rows never reach apply()


class FailingReport(SyncReport):
    """A report whose rejected-records sink fails (like a file on a full disk)."""

    def record(self, row: Row, outcome: Outcome) -> None:
        if not outcome.accepted:
            raise OSError(28, "No space left on device")
        super().record(row, outcome)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("field", ["bad", "unparseable"])
def test_a_row_whose_outcome_cannot_be_recorded_stops_the_sync_instead_of_hanging(field: str) -> None:
    # Watchdog: before the fix, the worker thread died in report.record, the row never settled and
    # wait_settled() blocked for ever. Now the failure is the sync's fatal error.
    rows = [{"user_id": f"m{i}", "n": i, field: i == 3} for i in range(10)]
    with pytest.raises(OSError, match="No space left"):
        _run(RecordingWriter(delay=0.0), rows, concurrency=2, states_every=5, report=FailingReport())


@pytest.mark.timeout(20)
def test_an_unexpected_error_in_a_writer_stops_the_sync_instead_of_hanging() -> None:
    class Broken(RecordingWriter):
        def apply(self, prepared: Prepared[None]) -> Outcome:
            if prepared.row.data["n"] == 2:
                raise RecursionError("maximum recursion depth exceeded")
            return super().apply(prepared)

    with pytest.raises(RecursionError):
        _run(Broken(delay=0.0), [{"user_id": f"m{i}", "n": i} for i in range(6)], concurrency=2)


class StubFlow:
    """The flow control as the pipeline sees it (sync.pipeline.Flow): fixed answers."""

    def __init__(self, *, wanted: Callable[[], int] = lambda: 1, totals: tuple[int, int] = (0, 0),
                 line: str = "") -> None:
        self._wanted, self._totals, self._line = wanted, totals, line

    def workers_wanted(self) -> int:
        return self._wanted()

    def status_line(self) -> str:
        return self._line

    def request_totals(self) -> tuple[int, int]:
        return self._totals


def test_the_flow_control_is_what_the_pipeline_asks() -> None:
    # The client's FlowControl is handed to the pipeline as is (destination.py): it has what Flow asks.
    from destination_crowdtwist.api.flow import FlowControl

    flow: Flow = FlowControl()
    assert (flow.workers_wanted(), flow.status_line(), flow.request_totals()) == (1, "", (0, 0))
    stub: Flow = StubFlow()
    assert stub.request_totals() == (0, 0)


def test_progress_line_shows_the_flow_control_state() -> None:
    report = SyncReport()
    now = [100.0]
    p = Pipeline(report, concurrency=4, progress_interval=0,
                 flow=StubFlow(totals=(50, 2), line="up to 23 requests at once (max_concurrency 128), round trip 100 ms"),
                 clock=lambda: now[0])
    now[0] = 110.0
    line = p.progress_line()
    # Rows (done, rejected, read and not done yet) and requests (sent, throttled, at once) apart, in words.
    assert line == ("Progress: 0 rows done in 10 s (0.0 rows/s), 0 of them rejected; 50 requests sent (5.0/s, "
                    "0.00 per row done), 2 answered HTTP 429 (throttled); 0 rows read and not done yet; "
                    "up to 23 requests at once (max_concurrency 128), round trip 100 ms")
    bare = Pipeline(report, concurrency=4, progress_interval=0)
    assert bare.progress_line().endswith("0 rows read and not done yet")


def test_workers_grow_with_the_wanted_number_and_never_beyond_the_ceiling() -> None:
    wanted = [3]
    writer = RecordingWriter(delay=0.002)
    report = SyncReport()
    p = Pipeline(report, concurrency=12, progress_interval=0, flow=StubFlow(wanted=lambda: wanted[0]))
    p.start()
    try:
        assert p.workers == 3  # as many as wanted, not 12 at once
        for i in range(40):
            p.submit(Row(stream=STREAM, data={"user_id": f"m{i}", "n": i}, seq=i), writer)
        p.wait_settled()
        assert p.workers == 3 and writer.max_active <= 3
        wanted[0] = 50  # the in-flight target rose (longer round trips): the pool follows, up to the ceiling
        for i in range(40, 80):
            p.submit(Row(stream=STREAM, data={"user_id": f"m{i}", "n": i}, seq=i), writer)
        p.wait_settled()
        assert p.workers == 12
        wanted[0] = 2  # answers got fast again: threads beyond the wanted 2 leave between rows
        for i in range(80, 120):
            p.submit(Row(stream=STREAM, data={"user_id": f"m{i}", "n": i}, seq=i), writer)
        p.wait_settled()
        # (a thread that took no row since then has not looked yet)
        assert 2 <= p.workers < 12
    finally:
        p.shutdown()
    assert sum(len(v) for v in writer.order.values()) == 120
    assert p.workers == 0


class WaitingWriter(RecordingWriter):
    """Row n=0 fails the sync; n=1 waits out a minute-long Retry-After; n=2 is on the wire until cut."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = threading.Event()  # what the client's stop() sets
        self.cut = threading.Event()  # what the client's abort() sets
        self.stop_calls = 0
        self.waiting = threading.Event()

    def on_stop(self) -> None:
        self.stop_calls += 1
        self.stopped.set()

    def abort(self) -> None:
        self.stopped.set()
        self.cut.set()

    def apply(self, prepared: Prepared[None]) -> Outcome:
        n = prepared.row.data["n"]
        if n == 0:
            assert self.waiting.wait(5)
            raise ConfigError("credentials revoked")
        self.waiting.set()
        if self.stopped.wait(60) if n == 1 else self.cut.wait(60):
            raise TransientError("the sync is stopping")
        return Outcome(kind=UPDATED, member=prepared.member)


def test_a_fatal_error_ends_the_waits_of_rows_waiting_out_a_retry() -> None:
    writer = WaitingWriter()
    p = Pipeline(SyncReport(), concurrency=2, progress_interval=0, on_stop=writer.on_stop, abort=writer.abort)
    p.start()
    started = time.monotonic()
    try:
        p.submit(Row(stream=STREAM, data={"user_id": "a", "n": 1}, seq=0), writer)
        p.submit(Row(stream=STREAM, data={"user_id": "b", "n": 0}, seq=1), writer)
        with pytest.raises(ConfigError):
            p.wait_settled()
        p.wait_idle_after_fatal()  # no timeout: returns only once the waiting row gave up
    finally:
        p.shutdown()
    assert time.monotonic() - started < 5
    assert isinstance(p.fatal, ConfigError)  # the first error is the one reported
    assert writer.stop_calls == 1
    assert not writer.cut.is_set()  # nothing on the wire was cut: only the wait ended


def test_shutdown_cuts_the_requests_still_on_the_wire_and_joins_the_workers() -> None:
    writer = WaitingWriter()
    p = Pipeline(SyncReport(), concurrency=2, progress_interval=0, on_stop=writer.on_stop, abort=writer.abort)
    p.start()
    p.submit(Row(stream=STREAM, data={"user_id": "a", "n": 2}, seq=0), writer)
    assert writer.waiting.wait(5)
    p.stop(RuntimeError("SIGTERM"))
    p.wait_idle_after_fatal(timeout=0.2)  # the grace runs out with the row still on the wire
    started = time.monotonic()
    p.shutdown()
    assert time.monotonic() - started < 5
    assert writer.cut.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("crowdtwist-worker")]


# -- the queues (sync/member_queues.py), pure ------------------------------------------------------------


def _task(member: str, n: int, size: int = 1) -> Task[None]:
    row = Row(stream=STREAM, data={"user_id": member, "n": n}, seq=n)
    return Task(Prepared(row, member, member, None), RecordingWriter(), ticket=0, size=size)


def test_the_queues_bound_rows_by_count_and_bytes_but_always_take_one_row() -> None:
    queues = MemberQueues(max_pending=2, max_pending_bytes=100)
    assert not queues.full(1_000)  # nothing pending: a row larger than the byte bound still fits
    queues.admit(_task("a", 0, size=1_000))
    assert queues.full(1) and queues.room == 1  # the bytes are spent, a row is left by count
    queues.leave(_task("a", 0, size=1_000))
    queues.admit(_task("a", 1, size=10))
    queues.admit(_task("b", 2, size=10))
    assert queues.full(1) and queues.room == 0 and queues.peak_pending == 2


def test_a_reader_that_waited_for_room_goes_on_once_a_batch_of_places_is_free() -> None:
    queues = MemberQueues(max_pending=16, max_pending_bytes=1_000)  # a batch: 16 // 8 = 2 places
    for i in range(16):
        queues.admit(_task(f"m{i}", i, size=10))
    assert queues.full(10) and not queues.reader_may_go_on(10)
    queues.leave(_task("m0", 0, size=10))
    assert not queues.full(10) and not queues.reader_may_go_on(10)  # one place: not yet
    queues.leave(_task("m1", 1, size=10))
    assert queues.reader_may_go_on(10) and queues.reader_may_go_on(0)
    # The byte bound still holds: a row that does not fit in the bytes left waits on.
    assert not queues.reader_may_go_on(1_000 - 140 + 1) and queues.reader_may_go_on(1_000 - 140)
    # A small bound's batch is one place (the old behaviour).
    small = MemberQueues(max_pending=4, max_pending_bytes=1_000)
    for i in range(4):
        small.admit(_task(f"m{i}", i, size=1))
    assert not small.reader_may_go_on(1)
    small.leave(_task("m0", 0, size=1))
    assert small.reader_may_go_on(1)


def test_the_reader_is_woken_once_per_batch_not_once_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"user_id": f"m{i}", "n": i} for i in range(400)]
    woken: list[int] = []
    real_wait = threading.Condition.wait

    def counting_wait(self: threading.Condition, timeout: float | None = None) -> bool:
        if threading.current_thread() is threading.main_thread():
            woken.append(1)
        return real_wait(self, timeout)

    monkeypatch.setattr(threading.Condition, "wait", counting_wait)
    writer = RecordingWriter(delay=0.0005)
    p, report, _ = _run(writer, rows, concurrency=4, max_pending=64)  # a batch of 8 places
    assert sum(report.by_kind.values()) == 400 and p.peak_pending <= 64
    # 400 rows through a 64-row bound: the reader waits about (400 - 64) / 8 = 42 times, not once for
    # each of the 336 rows beyond the bound (and a few more at the end, for the last rows to settle).
    assert 10 < len(woken) < 120


def test_a_members_rows_run_one_after_another_waiting_rows_first() -> None:
    queues = MemberQueues(max_pending=10, max_pending_bytes=100)
    first, later, other = _task("a", 0), _task("a", 1), _task("b", 2)
    assert queues.enqueue(first) and not queues.enqueue(later) and queues.enqueue(other)
    waited = _task("a", 3)
    queues.put_first("a", [waited])  # a row that waited for its member runs before the member's later rows
    assert [queues.next_of("a"), queues.next_of("a"), queues.next_of("a")] == [waited, later, None]
    assert queues.enqueue(_task("a", 4))  # the member's queue ended: its next row runs at once


def test_a_row_prepared_again_is_bound_to_its_writer_and_marked_as_retried() -> None:
    writer = RecordingWriter()
    row = Row(stream=STREAM, data={"user_id": "a", "n": 7}, seq=7)
    again = _task("a", 0).preparer()(row, 3, 42)
    assert isinstance(again, Task) and (again.ticket, again.size, again.retry, again.member) == (3, 42, True, "a")
    assert again.apply().kind is UPDATED
    unparseable = Row(stream=STREAM, data={"user_id": "a", "n": 8, "unparseable": True}, seq=8)
    settled = prepare_again(writer, unparseable, 3, 42)  # refused by its writer: settled without a request
    assert isinstance(settled, Outcome) and settled.kind is REJECTED
