"""Per-row accounting: outcome counts, rejected-row logs and file, the end-of-sync summary.

Shared by both writers. Thread-safe: workers record outcomes concurrently.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import IO, Any

from destination_crowdtwist.records.masking import mask_record, mask_text
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row

logger = logging.getLogger("airbyte")

MAX_EXAMPLES = 3
#: Rejected rows logged one by one per reason class; after that only a count (at the end of the
#: sync), so that 100,000 bad rows do not make 100,000 log lines.
LOGGED_PER_REASON = 20


class SyncReport:
    """Counts every row's outcome and reports rejected rows (masked)."""

    def __init__(
        self,
        *,
        rejected_records_path: str | None = None,
        include_pii: bool = False,
        log_pii: bool = False,
        dry_run: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self.by_kind: Counter[str] = Counter()
        self.by_reason: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.by_stream: dict[str, Counter[str]] = defaultdict(Counter)
        self.dry_run = dry_run
        self._include_pii = include_pii
        self._log_pii = log_pii
        self._file: IO[str] | None = None
        self._path = rejected_records_path
        if rejected_records_path:
            try:
                # Append: a replayed attempt adds to, and never erases, an earlier attempt's rejects.
                self._file = open(rejected_records_path, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                from destination_crowdtwist.api.errors import ConfigError

                raise ConfigError(
                    f"rejected_records_path cannot be opened for writing ({exc.strerror}); choose a writable file path"
                ) from exc

    def record(self, row: Row, outcome: Outcome) -> None:
        """Count one row's outcome; log and file it when rejected."""
        with self._lock:
            self.by_kind[outcome.kind] += 1
            self.by_stream[row.stream.label][outcome.kind] += 1
            if outcome.kind is not OutcomeKind.REJECTED:
                return
            reason = outcome.reason or Reason.REJECTED_BY_API
            self.by_reason[reason] += 1
            if len(self.examples[reason]) < MAX_EXAMPLES and outcome.member not in self.examples[reason]:
                self.examples[reason].append(outcome.member)
            message = outcome.message or ""
            if not self._log_pii:
                message = mask_text(message)
            status = f" (HTTP {outcome.status})" if outcome.status else ""
            n = self.by_reason[reason]
            if n <= LOGGED_PER_REASON:
                more = " (further rows of this reason are counted, not logged)" if n == LOGGED_PER_REASON else ""
                logger.warning(
                    f"Rejected row {row.seq} of stream {row.stream.label} for {outcome.member}: "
                    f"[{reason}]{status} {message}{more}"
                )
            if self._file is not None:
                data: Mapping[str, Any] = row.data if self._include_pii else mask_record(row.data)
                line = {
                    "stream": row.stream.label,
                    "row": row.seq,
                    "user": outcome.member,
                    "reason_class": reason,
                    "message": outcome.message if self._include_pii else mask_text(outcome.message or ""),
                    "http_status": outcome.status,
                    "record": data,
                }
                self._file.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Make the rejected-records file durable (called before each state is echoed)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Flush and close the rejected-records file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @property
    def rejected(self) -> int:
        """Rows rejected."""
        with self._lock:
            return self.by_kind[OutcomeKind.REJECTED]

    def summary_lines(self) -> list[str]:
        """The end-of-sync summary: rows by outcome and by reason class, with masked examples."""
        with self._lock:
            total = sum(self.by_kind.values())
            head = "Dry run summary (nothing was written)" if self.dry_run else "Sync summary"
            lines = [f"{head}: {total} rows"]
            for kind, n in sorted(self.by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {kind}: {n}")
            if self.by_reason:
                lines.append("Rejected rows by reason:")
                for reason, n in sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
                    examples = ", ".join(self.examples.get(reason, []))
                    lines.append(f"  {reason}: {n} (e.g. {examples})")
            if self._path:
                lines.append(f"Rejected rows were written to {self._path}")
            return lines

