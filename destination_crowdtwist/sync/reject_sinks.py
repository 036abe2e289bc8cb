"""Where rejected rows are kept so a data team can fix and re-send them: the reject sinks.

A sink receives every rejected row as it settles and must make what it holds durable in
:meth:`RejectSink.flush`, which the destination calls before it echoes the states that cover those
rows (the checkpoint contract: a state is echoed only when its rejected rows are stored). A sink
that cannot store raises from ``flush``; the sync then stops without echoing those states.

Sinks get the row unmasked; each decides what it may keep (the local file masks PII unless asked
not to; the user's bucket keeps the data as received, because fixing rows needs it).
"""

from __future__ import annotations

import errno
import json
import os
import stat
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
        self._file = _open_for_append(path)

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


def _open_for_append(path: str) -> IO[str]:
    """``path`` opened for appending, never blocking: a regular file (created if missing) or a device.

    Opened with O_NONBLOCK, so a FIFO (named pipe) that nothing reads fails at once (ENXIO) instead of
    blocking the sync before its first row. FIFOs and sockets are refused even with a reader: a
    write blocks whenever the reader is slow and fails once it is gone, so the rows would not be
    kept. Character devices are accepted (``/dev/null`` discards the rows, as asked).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _not_a_file(path, "a named pipe (FIFO) that nothing reads") from None
        raise ConfigError(
            f"rejected_records_path cannot be opened for writing ({exc.strerror}); choose a writable file path"
        ) from exc
    kind = _unusable_kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise _not_a_file(path, kind)
    try:
        os.set_blocking(fd, True)  # blocking writes from here on, as for any file
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def _unusable_kind(mode: int) -> str | None:
    """What the file is when rejected rows cannot be kept in it (None: a regular file or a device)."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode):
        return None
    return "neither a regular file nor a device"


def _not_a_file(path: str, kind: str) -> ConfigError:
    return ConfigError(
        f"rejected_records_path {path} is {kind}: rejected rows must go to a regular file (a write to a pipe "
        "blocks while nothing reads it). Choose a file path."
    )
