"""Per-row accounting: outcome counts, rejected-row logs and file, the end-of-sync summary.

Shared by both writers. Thread-safe: workers record outcomes concurrently.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.masking import mask_key_path
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.rejects.sink import RejectSink
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row

logger = logging.getLogger("airbyte")

MAX_EXAMPLES = 3
#: Rejected rows logged one by one per reason class; after that only a count (at the end of the
#: sync), so that 100,000 bad rows do not make 100,000 log lines.
LOGGED_PER_REASON = 20
#: Dry-run rows whose field-level changes are logged one by one (the summary counts them all).
LOGGED_DRY_RUN_ROWS = 50
#: Outcomes whose summary line names a few (masked) members: what a dry run would remove.
EXAMPLE_KINDS = frozenset({OutcomeKind.WOULD_DEACTIVATE, OutcomeKind.WOULD_ERASE})


@dataclass(frozen=True)
class Traffic:
    """What the sync cost on the wire, for the summary (the client's counters and the sync's duration)."""

    seconds: float
    requests: int = 0
    retries: int = 0  # attempts sent again (after a 429, a 5xx, a lost connection)
    throttled: int = 0  # answers HTTP 429
    server_errors: int = 0  # answers HTTP 5xx


class SyncReport:
    """Counts every row's outcome, logs rejected rows (masked) and hands them to the reject sinks."""

    def __init__(
        self,
        *,
        sinks: Sequence[RejectSink] = (),
        log_pii: bool = False,
        dry_run: bool = False,
        sink_names: Sequence[str] = (),
        stop_sample: int = 0,
        stop_share: float = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        self.by_kind: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.by_stream: dict[str, Counter[str]] = defaultdict(Counter)
        self.dry_run = dry_run
        self._log_pii = log_pii
        self._sinks = list(sinks)
        self._sink_names = list(sink_names)
        # Fail fast: when the first `stop_sample` rows are rejected at `stop_share` or more, the
        # mapping (not the data) is wrong, and every further row would spend a request to learn it.
        self._stop_sample = stop_sample
        self._stop_share = stop_share
        self._stop_checked = stop_sample <= 0 or stop_share <= 0
        self._first_messages: dict[str, str] = {}
        self.changed_fields: Counter[str] = Counter()
        self._dry_run_logged = 0

    def record(self, row: Row, outcome: Outcome) -> None:
        """Count one row's outcome; log it and give it to the sinks when rejected."""
        with self._lock:
            self.by_kind[outcome.kind] += 1
            self.by_stream[row.stream.label][outcome.kind] += 1
            if outcome.kind in (OutcomeKind.WOULD_UPDATE, OutcomeKind.WOULD_CREATE):
                self._record_dry_run(row, outcome)
                return
            if outcome.kind in EXAMPLE_KINDS:
                # Masked unless log_pii (outcome.member is the writer's label).
                shown = self.examples[outcome.kind]
                if len(shown) < MAX_EXAMPLES and outcome.member not in shown:
                    shown.append(outcome.member)
                return
            if outcome.kind is not OutcomeKind.REJECTED:
                return
            reason = outcome.reason or Reason.REJECTED_BY_API
            self.by_reason[reason] += 1
            # Kept masked: it may end up in the sync-stopping error, which the platform stores.
            self._first_messages.setdefault(reason, outcome.text(masked=True))
            if len(self.examples[reason]) < MAX_EXAMPLES and outcome.member not in self.examples[reason]:
                self.examples[reason].append(outcome.member)
            # Masked unless log_pii: what came from the row or from CrowdTwist's message (which may
            # echo the input) is masked, the connector's own guidance stays readable.
            message = outcome.text(masked=not self._log_pii)
            status = f" (HTTP {outcome.status})" if outcome.status else ""
            n = self.by_reason[reason]
            if n <= LOGGED_PER_REASON:
                more = " (further rows of this reason are counted, not logged)" if n == LOGGED_PER_REASON else ""
                logger.warning(
                    f"Rejected row {row.seq} of stream {row.stream.label} for {outcome.member}: "
                    f"[{reason}]{status} {message}{more}"
                )
            for sink in self._sinks:
                sink.add(row, outcome)

    def _record_dry_run(self, row: Row, outcome: Outcome) -> None:
        """Field-level changes of a dry run: logged (capped, member masked), counted, and filed."""
        # Field names can be the row's keys (custom_data.<name>): masked unless log_pii.
        changes = outcome.changes if self._log_pii else tuple(mask_key_path(name) for name in outcome.changes)
        self.changed_fields.update(changes)
        verb = "update" if outcome.kind is OutcomeKind.WOULD_UPDATE else "create with"
        if self._dry_run_logged < LOGGED_DRY_RUN_ROWS:
            self._dry_run_logged += 1
            fields = ", ".join(changes) or "no field"
            where = f"row {row.seq} of stream {row.stream.label} for {outcome.member}"
            logger.info(f"Dry run: {where}: would {verb} {fields}")
        for sink in self._sinks:
            sink.add_change(row, outcome)

    def systematic_rejection(self) -> ConfigError | None:
        """The error that stops the sync when the first rows were (almost) all rejected, else None.

        Checked once, when ``stop_sample`` rows have settled. The message names the dominant reason,
        a masked example and the fix (the rejection's own actionable message).
        """
        if self._stop_checked:
            # Asked after every settled row; once checked, the answer is None for good (the flag is only
            # ever set, under the lock), so the lock is not needed to give it.
            return None
        with self._lock:
            total = sum(self.by_kind.values())
            if self._stop_checked or total < self._stop_sample:
                return None
            self._stop_checked = True
            rejected = self.by_kind[OutcomeKind.REJECTED]
            if rejected < self._stop_share * total:
                return None
            reason, count = max(self.by_reason.items(), key=lambda kv: kv[1])
            example = ", ".join(self.examples.get(reason, [])[:1]) or "-"
            message = self._first_messages.get(reason, "")
        return ConfigError(
            f"Stopping early: {rejected} of the first {total} rows were rejected, {count} of them for [{reason}] "
            f"(e.g. {example}): {message} This looks like a mapping or program setting to fix, not bad rows; fix it "
            "and run the sync again (reject_stop_share = 0 turns this check off)."
        )

    def wait_for_room(self) -> None:
        """Wait while a sink holds more rejected rows than its memory bound (its uploads are behind).

        Called by the thread that settled a row, after the settle and outside every lock (rows are
        recorded under the pipeline's settle lock, where no sink may wait).
        """
        for sink in self._sinks:
            sink.wait_for_room()

    def flush(self) -> None:
        """Make the rejected rows durable in every sink (called before each state is echoed).

        Not under the report's lock: an upload takes a while, and workers keep recording rows meanwhile
        (each sink guards its own buffer; rows recorded during the flush are left for the next one).
        """
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            sink.flush()

    def close(self) -> None:
        """Flush and close every sink."""
        with self._lock:
            sinks, self._sinks = self._sinks, []
        for sink in sinks:
            sink.close()

    @property
    def rejected(self) -> int:
        """Rows rejected."""
        with self._lock:
            return self.by_kind[OutcomeKind.REJECTED]

    def summary_lines(self, traffic: Traffic | None = None) -> list[str]:
        """The end-of-sync summary: rows by outcome, the duration and requests (retries, 429s, 5xx)
        when ``traffic`` is given, rows by stream, rows by reason class, with masked examples.
        """
        with self._lock:
            total = sum(self.by_kind.values())
            head = "Dry run summary (nothing was written)" if self.dry_run else "Sync summary"
            took = f" in {_duration(traffic.seconds)}" if traffic is not None else ""
            lines = [f"{head}: {total} rows{took}"]
            for kind, n in sorted(self.by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
                examples = ", ".join(self.examples.get(kind, [])) if kind in EXAMPLE_KINDS else ""
                lines.append(f"  {kind}: {n} (e.g. {examples})" if examples else f"  {kind}: {n}")
            if traffic is not None:
                lines.append(
                    f"Requests to CrowdTwist: {traffic.requests:,} sent, {traffic.retries:,} of them retries; "
                    f"{traffic.throttled:,} answered HTTP 429 (throttled), {traffic.server_errors:,} answered "
                    "HTTP 5xx (server error)"
                )
            if self.by_stream:
                lines.append("Rows by stream:")
                for stream, kinds in sorted(self.by_stream.items()):
                    ranked = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
                    split = ", ".join(f"{kind} {n}" for kind, n in ranked)
                    lines.append(f"  {stream}: {sum(kinds.values())} rows ({split})")
            if self.changed_fields:
                lines.append("Fields that would change (rows):")
                for name, n in self.changed_fields.most_common(20):
                    lines.append(f"  {name}: {n}")
            if self.by_reason:
                lines.append("Rejected rows by reason:")
                for reason, n in sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
                    examples = ", ".join(self.examples.get(reason, []))
                    lines.append(f"  {reason}: {n} (e.g. {examples})")
            for name in self._sink_names:
                lines.append(f"Rejected rows were written to {name}")
            return lines


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: a sync's duration as a person reads it."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
