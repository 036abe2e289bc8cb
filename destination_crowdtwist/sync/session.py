"""The main loop of ``write``: one sync, from the first input line to the summary.

Wiring builds the parts (client, report, writers, pipeline, replay policy); :class:`WriteSession`
drives them. The input is read ahead on its own thread, so states can be echoed while the source
is quiet. On the main thread each record becomes a :class:`Row` for the pipeline, each STATE is
registered (and, under a barrier, waited on: ``sync/replay_policy.py``), a stream-status trace may
end a member stream (``sync/deferral.py``), and every state whose rows all settled goes out, in
order, once the reject sinks and the writers' local stores are durable (and, where a
:class:`StateGate` says so, the sync state in the bucket).

A sync-stopping error, a broken input or SIGTERM stops the workers taking rows; the rows already
running finish (SIGTERM: for :data:`TERMINATION_GRACE_SECONDS`), the states they complete are still
echoed, and then the error leaves as a traced exception.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from airbyte_cdk.models import AirbyteMessage, AirbyteRecordMessage, AirbyteStateType, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_crowdtwist.api.client import CrowdTwistClient
from destination_crowdtwist.api.errors import CrowdTwistError, TransientError, is_server_error
from destination_crowdtwist.sync.checkpoint import ReleasedState, StreamKey
from destination_crowdtwist.sync.inbox import Inbox
from destination_crowdtwist.sync.pipeline import Pipeline
from destination_crowdtwist.sync.protocol import BadInput, traced
from destination_crowdtwist.sync.replay_policy import ReplayPolicy
from destination_crowdtwist.sync.report import SyncReport, Traffic
from destination_crowdtwist.sync.termination import Terminated
from destination_crowdtwist.writers.base import Row, StreamContext, Writer

logger = logging.getLogger("airbyte")

#: How long a terminating sync lets the requests in flight finish before it echoes what is safe.
TERMINATION_GRACE_SECONDS = 5.0

_END = object()
_IDLE = object()  # no input for a while (see _incoming)

# Where a rejected input line that names no configured stream is counted: in GLOBAL states (which
# count every stream), never in a STREAM state of a stream it may not belong to.
_UNUSABLE_INPUT = StreamContext(namespace=None, name="(unusable input)", sync_mode="append")


class Closeable(Protocol):
    """A part the session closes after the writers closed their files (the sync state in the bucket)."""

    def close(self) -> None:
        """Save what is left and let go."""


@dataclass(frozen=True)
class StateGate:
    """What must hold before a state is echoed, checked after the writers' checkpoint.

    ``saved`` returns False when it does not (``what`` says what was not saved): the states are then
    not echoed and the sync stops with a transient error, so the next attempt replays from the last
    state echoed (``wiring.state_gate``: the sync state's flush under replay_window and none).
    """

    saved: Callable[[], bool]
    what: str


class _ReaderFailed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


@dataclass(kw_only=True)
class WriteSession:
    """One run of ``write``: drives the pipeline with the input, echoes states, then closes every part.

    Built by ``wiring.open_session``. ``state_message`` turns a released state into the message to
    echo (``cdk_adapter.state_message``: the platform's id kept, exact ``destinationStats``); in a dry
    run no state is echoed.
    """

    streams: Mapping[StreamKey, StreamContext]
    client: CrowdTwistClient
    report: SyncReport
    writers: Mapping[str, Writer]
    pipeline: Pipeline
    replay: ReplayPolicy
    state_message: Callable[[ReleasedState[Any]], AirbyteMessage]
    dry_run: bool
    sync_state: Closeable | None = None  # closed after the writers (their files are its copies)
    state_gate: StateGate | None = None
    skipped_streams: set[StreamKey] = field(default_factory=set)  # streams not in the catalog, warned once

    def run(self, input_messages: Iterable[AirbyteMessage | BadInput]) -> Iterator[AirbyteMessage]:
        """Write the input; yield each state once everything before it has settled."""
        writers, pipeline, report = self.writers, self.pipeline, self.report
        if self.dry_run:
            logger.warning(
                "Dry run: nothing is written to CrowdTwist and no state is echoed, so the next real sync "
                "sends these rows again."
            )
        completed = False
        try:
            try:
                for writer in writers.values():
                    writer.start()
            except CrowdTwistError as exc:
                raise traced(exc) from None
            pipeline.start()
            yield from self._drive(input_messages)
            completed = True
            for writer in writers.values():
                writer.finish()  # reporting only (e.g. erase status), after the last state
        finally:
            pipeline.shutdown()
            try:
                for writer in writers.values():
                    writer.close()
            finally:
                if self.sync_state is not None:
                    self.sync_state.close()  # after the writers: their last entries are committed then
            self.client.close()
            try:
                # Closing the sinks stores the rejected rows after the last state.
                report.close()
            except CrowdTwistError as exc:
                if completed:
                    raise traced(exc) from None
                # The sync is already failing: its first error is the one to report.
                logger.error(f"Closing the reject sinks also failed: {exc.message}")  # noqa: TRY400 - no trace: PII
            finally:
                self._log_summary()

    def _log_summary(self) -> None:
        snap = self.client.stats.snapshot()
        traffic = Traffic(
            seconds=self.pipeline.elapsed_seconds(),
            requests=snap.requests,
            retries=snap.retries,
            throttled=snap.throttled,
            server_errors=sum(n for status, n in snap.statuses.items() if is_server_error(status)),
        )
        for line in self.report.summary_lines(traffic):
            logger.info(line)
        logger.info(self.pipeline.progress_line())

    def _drive(self, input_messages: Iterable[AirbyteMessage | BadInput]) -> Iterator[AirbyteMessage]:
        pipeline = self.pipeline
        # The main thread takes everything queued at once: up to twice this many messages are read ahead.
        inbox: Inbox[Any] = Inbox(maxsize=500)
        stop = threading.Event()
        reader = threading.Thread(
            target=_read_ahead, args=(input_messages, inbox, stop), name="crowdtwist-reader", daemon=True
        )
        reader.start()
        seq = 0
        try:
            for msg in _incoming(inbox):
                if msg is _IDLE:
                    # Input is idle: release states whose records settled meanwhile.
                    yield from self._released()
                    continue
                if msg is _END:
                    break
                if isinstance(msg, _ReaderFailed):
                    # The input broke: rows already started finish, and the states they complete
                    # are echoed, so the next attempt resumes as late as is safe.
                    pipeline.stop(msg.exc)
                    yield from self._after_fatal()
                    raise msg.exc
                if isinstance(msg, BadInput):
                    stream = self.streams.get((msg.namespace, msg.stream)) if msg.stream else None
                    pipeline.reject(Row(stream=stream or _UNUSABLE_INPUT, data=msg.data, seq=seq), msg.rejection)
                    seq += 1
                elif msg.type == Type.RECORD and msg.record is not None:
                    seq += self._on_record(msg.record, seq)
                else:
                    self._on_control(msg)
                yield from self._released()
            yield from self._drain()
        except Terminated as exc:
            # The platform (or a person) stops the sync: stop reading, give the requests in flight a
            # few seconds, echo the states that are safe, and exit non-zero with a trace.
            pipeline.stop(exc)
            yield from self._after_fatal(timeout=TERMINATION_GRACE_SECONDS)
            raise traced(TransientError(
                "The sync was stopped by a termination signal (SIGTERM); the states that were safe to echo were "
                "echoed, and the next attempt resumes from the last of them."
            )) from None
        except CrowdTwistError as exc:
            yield from self._after_fatal()
            raise traced(exc) from None
        except AirbyteTracedException:
            yield from self._after_fatal()
            raise
        finally:
            stop.set()

    def _drain(self) -> Iterator[AirbyteMessage]:
        """End of input: echo states as their rows settle (so a kill now loses less), then the rest."""
        self.pipeline.stream_ended(None)  # rows still waiting for their member are tried a last time
        while not self.pipeline.wait_settled(timeout=0.2):
            yield from self._released()
        yield from self._released()

    def _on_record(self, record: AirbyteRecordMessage, seq: int) -> int:
        """Hand one record to its stream's writer; returns how many rows it used (0 when skipped)."""
        key = (record.namespace, record.stream)
        stream = self.streams.get(key)
        if stream is None:
            if key not in self.skipped_streams:
                self.skipped_streams.add(key)
                logger.warning(f"Skipping records of stream {record.stream!r}: it is not in the configured catalog.")
            return 0
        row = Row(stream=stream, data=record.data, seq=seq, verify=self.replay.verify(stream),
                  emitted_at=record.emitted_at)
        self.pipeline.submit(row, self.writers[stream.object_name])
        return 1

    def _on_control(self, msg: AirbyteMessage) -> None:
        """A message that is not a record: a STATE is registered; a stream status may end a member stream."""
        if msg.type == Type.STATE and msg.state is not None:
            stream = _state_stream(msg)
            self.pipeline.add_state(msg, stream)
            self.replay.note_state(stream)
            if self.replay.barrier_at_state():
                # No row starts past a state that is not echoed yet (sync/replay_policy.py).
                self.pipeline.wait_settled()
        elif msg.type == Type.TRACE:
            ended = _ended_stream(msg)
            if ended is not None:
                self.pipeline.stream_ended(ended)

    def _after_fatal(self, timeout: float | None = None) -> Iterator[AirbyteMessage]:
        # Rows already in flight finish; states whose records all settled are still safe to echo.
        self.pipeline.wait_idle_after_fatal(timeout)
        try:
            yield from self._released(raise_fatal=False)
        except CrowdTwistError:
            # A reject sink that failed keeps failing: echo nothing more and report the first error.
            return

    def _released(self, *, raise_fatal: bool = True) -> Iterator[AirbyteMessage]:
        fatal = self.pipeline.fatal if raise_fatal else None
        released = self.pipeline.release()
        if released:
            self.report.flush()  # rejected rows are durable before their state is echoed
            for writer in self.writers.values():
                writer.checkpoint()  # and so are the writers' local records (e.g. the member index)
            gate = self.state_gate
            if gate is not None and not gate.saved():
                error = TransientError(
                    f"The sync stopped: {gate.what}, so the states after the last one echoed were not echoed (a "
                    "replay of their rows could otherwise credit twice). The next attempt resumes from the last "
                    "state echoed."
                )
                self.pipeline.stop(error)
                raise error
        for item in released:
            if not self.dry_run:
                yield self.state_message(item)
        if fatal is not None:
            raise fatal


def _incoming(inbox: Inbox[Any]) -> Iterator[Any]:
    """The reader's messages one at a time (taken from the inbox in batches), and ``_IDLE`` after 0.2 s
    without input.
    """
    while True:
        yield from inbox.take(timeout=0.2) or (_IDLE,)


def _read_ahead(messages: Iterable[Any], inbox: Inbox[Any], stop: threading.Event) -> None:
    """Read input on its own thread so states can be echoed while the source is quiet."""

    def put(item: Any) -> bool:
        while not stop.is_set():
            if inbox.put(item, timeout=0.5):
                return True
        return False

    try:
        for msg in messages:
            if not put(msg):
                return
        put(_END)
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
        put(_ReaderFailed(exc))


def _state_stream(msg: AirbyteMessage) -> StreamKey | None:
    state = msg.state
    assert state is not None
    if state.type == AirbyteStateType.STREAM and state.stream is not None:
        desc = state.stream.stream_descriptor
        return (desc.namespace, desc.name)
    return None  # GLOBAL and LEGACY states cover every stream


def _ended_stream(msg: AirbyteMessage) -> StreamKey | None:
    """The stream a STREAM_STATUS trace says has ended (COMPLETE or INCOMPLETE), else None."""
    trace = msg.trace
    if trace is None or trace.stream_status is None or str(getattr(trace.type, "value", trace.type)) != "STREAM_STATUS":
        return None
    status = trace.stream_status
    if str(getattr(status.status, "value", status.status)) not in ("COMPLETE", "INCOMPLETE"):
        return None
    desc = status.stream_descriptor
    return (desc.namespace, desc.name)
