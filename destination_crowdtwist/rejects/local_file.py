"""``rejected_records_path``: the local JSONL file of rejected rows, a reject sink (``rejects/sink.py``).

Lines are written as ``rejects/schema.py`` lays them out (``local_line``, ``change_line``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from typing import IO

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.rejects.schema import ChangeLine, LocalLine, change_line, local_line
from destination_crowdtwist.writers.base import Outcome, Row


class LocalFileSink:
    """``rejected_records_path``: one JSON line per rejected row, appended to a local file.

    Appends: a replayed attempt adds to, and never erases, an earlier attempt's rejects. PII is
    masked unless ``include_pii`` (the file lives on the machine that runs the sync, often shared).
    Thread-safe: rows are added by the workers while the main thread flushes.
    """

    def __init__(self, path: str, *, include_pii: bool) -> None:
        self.path = path
        self._include_pii = include_pii
        self._lock = threading.Lock()
        self._file: IO[str] | None
        self._failed_once = False
        self._file = _open_for_append(path)

    def add(self, row: Row, outcome: Outcome) -> None:
        """Write the row's line (buffered until :meth:`flush`)."""
        self._write(local_line(row, outcome, include_pii=self._include_pii))

    def add_change(self, row: Row, outcome: Outcome) -> None:
        """Dry run: one line with the fields the row would change (values are not written)."""
        self._write(change_line(row, outcome, include_pii=self._include_pii))

    def wait_for_room(self) -> None:
        """Never waits: the lines go to the operating system's file buffer, not to memory of ours."""

    def _write(self, line: LocalLine | ChangeLine) -> None:
        text = json.dumps(line, default=str, ensure_ascii=False) + "\n"
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(text)
            except OSError as exc:
                raise self._failed(exc) from None

    def flush(self) -> None:
        """Hand the buffered lines to the operating system."""
        with self._lock:
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
        with self._lock:
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
