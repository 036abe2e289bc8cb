"""The local reject file (``rejected_records_path``): what it may be, and that opening it never blocks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.rejects.local_file import LocalFileSink

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (os.mkfifo) are POSIX only")


def _open_in_time(path: Path, seconds: float = 5.0) -> BaseException | LocalFileSink:
    """Open the sink on another thread: a blocking open must fail the test, not hang it."""
    result: list[BaseException | LocalFileSink] = []

    def run() -> None:
        try:
            result.append(LocalFileSink(str(path), include_pii=False))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        # Unblock the open (a reader appears) so the thread ends, then fail.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(5)
        os.close(fd)
        pytest.fail(f"opening {path.name} blocked for {seconds:g} s")
    return result[0]


def test_a_fifo_that_nothing_reads_is_a_config_error_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "rejects.jsonl"
    os.mkfifo(fifo)
    error = _open_in_time(fifo)
    assert isinstance(error, ConfigError)
    assert error.failure_type == "config_error"
    assert "is a named pipe (FIFO) that nothing reads" in error.message
    assert "Choose a file path" in error.message


def test_a_fifo_with_a_reader_is_refused_too(tmp_path: Path) -> None:
    # A reader now says nothing about later: a slow or vanished reader would stall or fail the sync.
    fifo = tmp_path / "rejects.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        error = _open_in_time(fifo)
    finally:
        os.close(reader)
    assert isinstance(error, ConfigError)
    assert "is a named pipe (FIFO): rejected rows must go to a regular file" in error.message


def test_a_regular_file_is_created_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    path.write_text("earlier attempt\n")
    sink = _open_in_time(path)
    assert isinstance(sink, LocalFileSink)
    sink.close()
    assert path.read_text() == "earlier attempt\n"
    new = _open_in_time(tmp_path / "new.jsonl")
    assert isinstance(new, LocalFileSink)
    new.close()
    assert (tmp_path / "new.jsonl").exists()


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    error = _open_in_time(tmp_path)
    assert isinstance(error, ConfigError)
    assert "cannot be opened for writing" in error.message
