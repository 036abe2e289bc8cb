"""Measure the sync state (issue 17) at scale: object sizes, times and peak RSS, against moto's S3 server.

    .venv/bin/python scripts/state_bench.py                     # 1,000,000 members and ledger keys, 2% changed
    .venv/bin/python scripts/state_bench.py --members 20000 --json out.json

What it does, as the platform would (each sync in a fresh directory):

1. **first sync**: a store opens an empty bucket; the member index gets N members and the ledger N
   keys (inserted with SQL into the writers' own tables, so the journal triggers fire as they do
   for the writers); ``close()`` uploads them as deltas and compacts them into bases.
2. **re-sync**: a store in a new directory ``open()``s (downloads the bases, imports them into
   new SQLite files), the sync changes ``--changed`` of the members and credits as many new keys,
   ``flush()`` uploads them as deltas, ``close()``.
3. **compaction**: a third store opens (base + deltas) and compacts them into new bases.

Peak RSS is this process's (``ru_maxrss``: moto runs in a subprocess and keeps the objects there).
Only the state's own work is timed (wall time, and this process's CPU time, which a busy machine
inflates less); filling the tables is not.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "integration_tests"))

from destination_crowdtwist.state import SyncStateStore  # noqa: E402
from destination_crowdtwist.state.bucket import Bucket, Downloaded  # noqa: E402
from destination_crowdtwist.state.codec import ObjectWriter, read_header, read_records  # noqa: E402
from destination_crowdtwist.writers.ledger import ledger_scope  # noqa: E402

PROGRAM = "https://api.crowdtwist.com"


def rss_mb() -> float:
    """Peak RSS of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, results: dict[str, Any], action: Callable[[], object]) -> None:
    """Wall time and this process's CPU time (the fairer figure on a shared machine) of one step."""
    started, cpu = time.perf_counter(), time.process_time()
    action()
    results[label] = round(time.perf_counter() - started, 2)
    results[label + " (cpu)"] = round(time.process_time() - cpu, 2)
    print(f"  {label:<34} {results[label]:>8.2f} s wall {results[label + ' (cpu)']:>8.2f} s cpu   "
          f"(peak RSS so far {rss_mb():.0f} MB)", flush=True)


def fill_members(path: str, count: int, now: int, *, start: int = 0) -> None:
    """``count`` members (email) with random digests and fingerprints, as accepted writes would leave them."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT OR IGNORE INTO member_scopes (program, id_type) VALUES (?, 'email')", (PROGRAM,))
    scope = db.execute("SELECT id FROM member_scopes WHERE program = ? AND id_type = 'email'", (PROGRAM,)).fetchone()[0]
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT OR REPLACE INTO members (scope, member, crowdtwist_id, fingerprint, updated_at) "
        "SELECT ?, randomblob(16), CAST(100000000 + i AS TEXT), randomblob(16), ? - (i % 86400) FROM n",
        (start, start + count - 1, scope, now),
    )
    db.execute("COMMIT")
    db.close()


def change_members(path: str, share: float, now: int) -> int:
    """Give ``share`` of the members new fingerprints (accepted updates), as a re-sync would."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    changed = db.execute(
        "UPDATE members SET fingerprint = randomblob(16), updated_at = ? WHERE abs(random()) % 10000 < ?",
        (now, int(share * 10000)),
    ).rowcount
    db.execute("COMMIT")
    db.close()
    return changed


def fill_credits(path: str, count: int, now: float, *, start: int = 0) -> None:
    """``count`` done ledger keys shaped like the writer's (id type, member, activity, dedupe key)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO credits (scope, dedupe_key, status, outcome, updated_at) "
        "SELECT ?, 'email:member' || (i % 1000000) || '@example.com|1001|' || hex(randomblob(16)), 'done', "
        "'credited', ? FROM n",
        (start, start + count - 1, ledger_scope(PROGRAM), now),
    )
    db.execute("COMMIT")
    db.close()


def object_sizes(client: Any, bucket: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            sizes[item["Key"].split("crowdtwist-sync-state/")[1].split("/", 1)[1]] = int(item["Size"])
    return sizes


def codec_only(client: Any, work: Path, results: dict[str, Any]) -> None:
    """Decode the member index base, then encode its records again: the codec alone, no SQLite, no S3."""
    key = next(k for k in (item["Key"] for item in client.list_objects_v2(Bucket="state-bench")["Contents"])
               if k.endswith("member_index/email/base.ctss"))
    copy = Bucket(client, "state-bench", work / "codec").download(key)  # streamed, as the store reads
    assert isinstance(copy, Downloaded)
    path = copy.path
    holder: list[Any] = []

    def decode() -> None:
        with path.open("rb") as stream:
            holder[:] = [read_header(stream), sum(1 for _ in read_records(stream, kind="member_index"))]

    def encode() -> None:
        with path.open("rb") as stream, (work / "codec-copy.ctss").open("wb") as out:
            header = read_header(stream)
            writer = ObjectWriter(out, header)
            writer.add_all(read_records(stream, kind="member_index"))
            writer.finish()

    timed("codec: decode the member base", results, decode)
    timed("codec: decode + encode it again", results, encode)
    results["codec_records"] = holder[1]
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--credits", type=int, default=None, help="ledger keys (default: as many as members)")
    parser.add_argument("--changed", type=float, default=0.02, help="share of members changed by the re-sync")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    credits = args.members if args.credits is None else args.credits
    from moto_s3 import MotoS3

    results: dict[str, Any] = {"members": args.members, "credits": credits, "changed": args.changed}
    work = Path(tempfile.mkdtemp(prefix="state-bench-"))
    server = MotoS3().start()
    try:
        server.create_bucket("state-bench")
        client = server.client()
        now = int(time.time())
        print(f"sync state bench: {args.members:,} members, {credits:,} ledger keys, {args.changed:.0%} changed")
        results["rss_after_imports_mb"] = round(rss_mb(), 1)

        first = SyncStateStore(client, "state-bench", PROGRAM, work / "first", compact_after=1)
        first.open()
        fill_members(first.member_index_path, args.members, now)
        fill_credits(first.ledger_path, credits, float(now))
        timed("first sync: upload + compaction", results, first.close)
        results["after_first_sync"] = object_sizes(client, "state-bench")
        codec_only(client, work, results)

        resync = SyncStateStore(client, "state-bench", PROGRAM, work / "resync")
        timed("re-sync: open (download + import)", results, resync.open)
        results["resync_read_mb"] = round(resync.stats.read_bytes / 1e6, 1)
        results["resync_download_s"] = round(resync.stats.download_seconds, 2)
        print(f"    of which download {results['resync_download_s']:.2f} s, import "
              f"{results['re-sync: open (download + import)'] - results['resync_download_s']:.2f} s", flush=True)
        changed = change_members(resync.member_index_path, args.changed, now + 86400)
        fill_credits(resync.ledger_path, int(credits * args.changed), float(now + 86400), start=credits)
        results["resync_changed_members"] = changed
        timed("re-sync: flush (delta upload)", results, lambda: resync.flush(600))
        timed("re-sync: close", results, resync.close)
        results["after_resync"] = object_sizes(client, "state-bench")

        third = SyncStateStore(client, "state-bench", PROGRAM, work / "third", compact_after=1)
        timed("next sync: open (base + delta)", results, third.open)
        timed("next sync: close (compaction)", results, third.close)
        results["after_compaction"] = object_sizes(client, "state-bench")
        results["peak_rss_mb"] = round(rss_mb(), 1)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\npeak RSS {results['peak_rss_mb']} MB (after imports {results['rss_after_imports_mb']} MB)")
    for stage in ("after_first_sync", "after_resync", "after_compaction"):
        print(f"objects {stage.replace('_', ' ')}:")
        for key, size in sorted(results[stage].items()):
            print(f"  {key:<60} {size / 1e6:>8.2f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
