"""Console-script entry point: ``destination-crowdtwist spec|check|discover|write|replay-rejects``."""

from __future__ import annotations

import argparse
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

    DestinationCrowdtwist().run(args)


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
