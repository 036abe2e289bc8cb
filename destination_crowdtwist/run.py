"""Console-script entry point: ``destination-crowdtwist spec|check|discover|write|replay-rejects``."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import pkgutil
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.rejects.replay import ReplayRefused, plan_replay, record_messages
from destination_crowdtwist.sync.termination import Termination

REPLAY_COMMAND = "replay-rejects"
#: Exit status when the reader of standard output went away (e.g. ``| head``): what a shell reports for
#: a command ended by SIGPIPE (128 + 13), without a message.
EXIT_PIPE_CLOSED = 141


#: ConnectorSpecification's fields in the order the CDK prints them, and the defaults it fills in.
#: ``spec`` prints them without importing the CDK (about 2.3 s of CPU, nearly all of a ``spec``);
#: unit_tests/test_spec_fast_path.py pins the bytes to the CDK's own output.
_SPEC_FIELDS = ("connectionSpecification", "documentationUrl", "supportsIncremental", "supportsNormalization",
                "supportsDBT", "supported_destination_sync_modes")
_SPEC_DEFAULTS = {"supportsNormalization": False, "supportsDBT": False}


def spec_line() -> bytes | None:
    """The SPEC message ``spec`` prints, from the package's spec.json.

    None when spec.json has a field this fast path does not know (then the CDK prints it).
    """
    raw = pkgutil.get_data("destination_crowdtwist", "spec.json")
    spec = json.loads(raw) if raw is not None else None
    if not isinstance(spec, dict) or not set(spec) <= set(_SPEC_FIELDS):
        return None
    merged = {**_SPEC_DEFAULTS, **spec}
    ordered = {name: merged[name] for name in _SPEC_FIELDS if name in merged}
    message = {"type": "SPEC", "spec": ordered}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def run() -> None:
    """Run the destination with the process arguments."""
    args = sys.argv[1:]
    if args[:1] == [REPLAY_COMMAND]:
        sys.exit(replay_rejects(args[1:]))
    line = spec_line() if args == ["spec"] else None
    if line is not None:
        # Without the CDK: the same bytes, about 45 times less CPU. A SIGTERM once they are written
        # exits 0 (sync/termination.py), also during the interpreter's shutdown.
        import signal

        termination = Termination(restore_default=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        signal.signal(signal.SIGTERM, termination.on_sigterm)
        with termination.answering():
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        _ignore_sigterm()
        return
    from destination_crowdtwist.destination import DestinationCrowdtwist

    try:
        DestinationCrowdtwist().run(args)
    except (SystemExit, KeyboardInterrupt):
        raise  # --help, and Ctrl-C with its usual traceback
    except BaseException as exc:  # noqa: BLE001 - every error leaves as the CDK's TRACE message
        # What Python would do with an uncaught exception (the CDK's hook prints the TRACE), but here,
        # so that the exit below is ours.
        sys.excepthook(type(exc), exc, exc.__traceback__)
        orderly_exit(1)
    orderly_exit(0)


def orderly_exit(code: int) -> None:
    """End the process with ``code`` once everything written is flushed, never with SIGABRT.

    Interpreter finalization aborts the process ("Fatal Python error: _enter_buffered_busy ...",
    exit -6) when a thread that outlived the sync holds the lock of a standard stream: a worker still
    logging when SIGTERM's grace ran out, for one. Every part of the sync stops its threads (the
    pipeline joins its workers after cutting their requests; the input is read without a buffered
    reader), but a thread a library started, or a worker stuck past the join, must not turn an
    orderly error into a crash the platform may lose the message of. So when other threads are still
    alive, stdout and stderr are flushed here and the process ends with ``os._exit``, skipping
    finalization; otherwise it exits normally.
    """
    import os
    import threading

    _flush_output()
    if code == 0:
        _ignore_sigterm()
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
    if others:
        os._exit(code)
    sys.exit(code)


def _ignore_sigterm() -> None:
    """The command is done and its output flushed: a SIGTERM now (PyAirbyte sends one as soon as it has
    read the answer) must not turn success into a kill. Python puts its own handlers back to the
    default while the interpreter shuts down, where a SIGTERM would end the process with -15; an
    ignored signal it leaves alone (issue 18 §3).
    """
    import signal

    with contextlib.suppress(ValueError):  # not the main thread: signals are not ours to set
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _flush_output() -> None:
    # Imported here: spec's fast path never loads the CDK (the adapter writes through its log buffer).
    from destination_crowdtwist.cdk_adapter import flush_output

    flush_output()


def replay_rejects(argv: list[str]) -> int:
    """Print the stored rejected rows as RECORD messages for ``write`` (docs/crowdtwist.md, "Replaying
    rejected rows"); a summary goes to standard error. Exit status 2 when the rows cannot be replayed,
    with one line naming the file and line (never a traceback); 141, quietly, when the reader of
    standard output closed it.
    """
    parser = argparse.ArgumentParser(
        prog=f"destination-crowdtwist {REPLAY_COMMAND}",
        description="Print rejected rows (rejected_records_path, or object-storage JSONL) as RECORD messages "
                    "for `destination-crowdtwist write`.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="rejected-rows files (JSONL, optionally .gz)")
    parser.add_argument("--reason", action="append", choices=[str(r) for r in Reason],
                        help="replay only rows rejected for this reason class (repeatable; default: all)")
    parser.add_argument("--stream", help="replay only rows of this stream (rejected_records_path lines)")
    parser.add_argument("--as-stream", help="the stream of object-storage lines (they do not name it)")
    args = parser.parse_args(argv)
    files = _RejectFiles(args.files)
    try:
        # Planned in full before anything is printed: a refused file prints no half of its rows.
        plan = plan_replay(
            files, reasons=frozenset(args.reason) if args.reason else None, stream=args.stream,
            as_stream=args.as_stream,
        )
    except ReplayRefused as exc:
        print(f"{REPLAY_COMMAND}: {files.where()}{exc}", file=sys.stderr)
        return 2
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        print(f"{REPLAY_COMMAND}: {files.where(reading=True)}{_read_problem(exc)}", file=sys.stderr)
        return 2
    try:
        for message in record_messages(plan.rows, emitted_at=int(time.time() * 1000)):
            sys.stdout.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader is gone: nothing more can be delivered, and nothing is wrong with the files.
        # Standard output is pointed at /dev/null so the interpreter's last flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(plan.skipped.items())) or "none"
    print(f"{REPLAY_COMMAND}: {len(plan.rows)} rows to replay; left out: {skipped}", file=sys.stderr)
    return 0


class _RejectFiles:
    """The lines of the reject files in order (``.gz`` decompressed), remembering the file and line
    being read, so that an error names them.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.path: Path | None = None
        self.opened = False
        self.line = 0  # lines of ``path`` read whole so far

    def __iter__(self) -> Iterator[str]:
        for path in self.paths:
            self.path, self.line, self.opened = path, 0, False
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as fh:
                self.opened = True
                for text in fh:
                    self.line += 1
                    yield text
        self.path = None

    def where(self, *, reading: bool = False) -> str:
        """``"FILE, line N: "`` of the line that failed (being read, or the last one read), or ``""``
        once every file was read (the error is about the whole selection).
        """
        if self.path is None:
            return ""
        if reading and not self.opened:
            return f"{self.path}: "
        return f"{self.path}, line {self.line + 1 if reading else self.line}: "


def _read_problem(exc: BaseException) -> str:
    """What went wrong reading a reject file, in one line (no stored text is quoted)."""
    if isinstance(exc, EOFError):
        return "the compressed file is truncated (it ends before the end of its gzip stream); copy it again"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"the compressed file is corrupted ({exc}); copy it again"
    if isinstance(exc, UnicodeDecodeError):
        return "the line is not UTF-8 text: is this a rejected-rows file (JSONL)?"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot be read ({exc.strerror})"
    return f"cannot be read ({exc})"
