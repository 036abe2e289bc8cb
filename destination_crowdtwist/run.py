"""Console-script entry point: ``destination-crowdtwist spec|check|discover|write|replay-rejects``."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.sync.reject_replay import ReplayRefused, plan_replay, record_messages

REPLAY_COMMAND = "replay-rejects"


def run() -> None:
    """Run the destination with the process arguments."""
    args = sys.argv[1:]
    if args[:1] == [REPLAY_COMMAND]:
        sys.exit(replay_rejects(args[1:]))
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
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive()]
    if others:
        os._exit(code)
    sys.exit(code)


def _flush_output() -> None:
    from airbyte_cdk.logger import PRINT_BUFFER

    # Under the PrintBuffer's lock (as emit() writes): log lines and protocol lines stay whole.
    with PRINT_BUFFER.lock:
        for flush in (PRINT_BUFFER.flush, sys.stdout.flush, sys.stderr.flush):
            # A closed pipe: the reader is gone, nothing more can be delivered.
            with contextlib.suppress(OSError, ValueError):
                flush()


def replay_rejects(argv: list[str]) -> int:
    """Print the stored rejected rows as RECORD messages for ``write`` (docs/crowdtwist.md, "Replaying
    rejected rows"); a summary goes to standard error. Exit status 2 when the rows cannot be replayed.
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
    try:
        # Planned in full before anything is printed: a refused file prints no half of its rows.
        plan = plan_replay(
            _lines(args.files), reasons=frozenset(args.reason) if args.reason else None, stream=args.stream,
            as_stream=args.as_stream,
        )
    except (ReplayRefused, OSError, UnicodeDecodeError) as exc:
        print(f"{REPLAY_COMMAND}: {exc}", file=sys.stderr)
        return 2
    for message in record_messages(plan.rows, emitted_at=int(time.time() * 1000)):
        sys.stdout.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(plan.skipped.items())) or "none"
    print(f"{REPLAY_COMMAND}: {len(plan.rows)} rows to replay; left out: {skipped}", file=sys.stderr)
    return 0


def _lines(files: list[Path]) -> Iterator[str]:
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            yield from fh
