"""Where rejected rows are kept so a data team can fix and re-send them: the reject sinks.

A sink receives every rejected row as it settles and must make what it holds durable in
:meth:`RejectSink.flush`, which the destination calls before it echoes the states that cover those
rows (the checkpoint contract: a state is echoed only when its rejected rows are stored). A sink
that cannot store raises from ``flush``; the sync then stops without echoing those states.

Sinks get the row unmasked; each decides what it may keep (the local file masks PII unless asked
not to; the user's bucket keeps the data as received, because fixing rows needs it).
"""

from __future__ import annotations

import json
from typing import IO, Protocol

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.masking import mask_key_path, mask_record
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.writers.base import Outcome, Row


class RejectSink(Protocol):
    """The contract between the report and a place that stores rejected rows."""

    def add(self, row: Row, outcome: Outcome) -> None:
        """Take one rejected row (called under the report's lock, in settle order)."""

    def add_change(self, row: Row, outcome: Outcome) -> None:
        """Take one dry-run row with the fields it would change (sinks that keep only rejects ignore it)."""

    def flush(self) -> None:
        """Make every row added so far durable; raise if that is impossible."""

    def close(self) -> None:
        """Flush what is left and release resources (end of the sync)."""


class LocalFileSink:
    """``rejected_records_path``: one JSON line per rejected row, appended to a local file.

    Appends: a replayed attempt adds to, and never erases, an earlier attempt's rejects. PII is
    masked unless ``include_pii`` (the file lives on the machine that runs the sync, often shared).
    """

    def __init__(self, path: str, *, include_pii: bool) -> None:
        self.path = path
        self._include_pii = include_pii
        self._file: IO[str] | None
        self._failed_once = False
        try:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(
                f"rejected_records_path cannot be opened for writing ({exc.strerror}); choose a writable file path"
            ) from exc

    def add(self, row: Row, outcome: Outcome) -> None:
        """Write the row's line (buffered until :meth:`flush`)."""
        if self._file is None:
            return
        pii = self._include_pii
        line = {
            "stream": row.stream.label,
            "row": row.seq,
            "user": outcome.member,
            "reason_class": str(outcome.reason or Reason.REJECTED_BY_API),
            # Masked: the row's values and keys, and what came from the row or CrowdTwist's message
            # (which may echo the input) in the message; the connector's guidance stays readable.
            "message": outcome.text(masked=not pii),
            "http_status": outcome.status,
            "record": row.data if pii else mask_record(row.data),
            # What `destination-crowdtwist replay-rejects` needs: the stream as the catalog names it,
            # and whether "record" is the row as received (a masked one must never be sent again).
            "namespace": row.stream.namespace,
            "name": row.stream.name,
            "pii": pii,
        }
        self._write(line)

    def add_change(self, row: Row, outcome: Outcome) -> None:
        """Dry run: one line with the fields the row would change (values are not written)."""
        if self._file is None:
            return
        self._write({
            "stream": row.stream.label,
            "row": row.seq,
            "user": outcome.member,
            "dry_run": str(outcome.kind),
            # Field names can be the row's keys (custom_data.<name>): masked unless include_pii.
            "changes": [name if self._include_pii else mask_key_path(name) for name in outcome.changes],
        })

    def _write(self, line: dict[str, object]) -> None:
        assert self._file is not None
        try:
            self._file.write(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        """Hand the buffered lines to the operating system."""
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> ConfigError:
        self._failed_once = True
        # The file keeps the only copy of these rows: without it, echoing their state would lose them.
        return ConfigError(
            f"Rejected rows could not be written to rejected_records_path {self.path} ({exc.strerror}); the sync "
            "stops without echoing the states that cover them. Free space or choose another path."
        )

    def close(self) -> None:
        """Flush and close the file (once a write failed, the failure was raised already: just let go)."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as exc:
            if not self._failed_once:
                raise self._failed(exc) from None
