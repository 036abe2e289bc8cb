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
4. **the re-sync's own work** (the denominator of the issue's 5%): in a child process,
   ``scripts/measure_memory.py``'s in-process ``write`` with an instant fake CrowdTwist (no request
   latency, so a lower bound of a real re-sync's time, which makes the ratio conservative) runs an
   upsert of ``--sample`` members with a local member index (unmeasured), then their re-sync with
   ``--changed`` of them changed (measured: wall and the child's CPU); per row, times the members.
   The state's share is (re-sync open + flush + close) / that re-sync's time, wall and CPU.

Peak RSS is this process's (``ru_maxrss``: moto runs in a subprocess and keeps the objects there).
Only the state's own work is timed (wall time, and this process's CPU time, which a busy machine
inflates less); filling the tables is not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
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
from destination_crowdtwist.state.table import check_table, table_records, unpack_table  # noqa: E402
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
    """The member index base alone, no S3 and no import: unpack and check it (format 2, a SQLite file), then
    the same records as a format-1 object (the stream of records older connectors wrote): encode, decode."""
    key = next(k for k in (item["Key"] for item in client.list_objects_v2(Bucket="state-bench")["Contents"])
               if k.endswith("member_index/email/base.ctss"))
    copy = Bucket(client, "state-bench", work / "codec").download(key)  # streamed, as the store reads
    assert isinstance(copy, Downloaded)
    path, table, old = copy.path, work / "codec-base.sqlite3", work / "codec-format1.ctss"
    holder: list[Any] = []

    def unpack() -> None:
        with path.open("rb") as stream:
            header = read_header(stream)
            count = unpack_table(stream, table)
        check_table(table, "member_index", count)
        holder[:] = [header, count]

    def encode() -> None:
        with old.open("wb") as out:
            writer = ObjectWriter(out, holder[0])
            writer.add_all(table_records(table, "member_index"))
            writer.finish()

    def decode() -> None:
        with old.open("rb") as stream:
            read_header(stream)
            holder.append(sum(1 for _ in read_records(stream, kind="member_index")))

    timed("base: unpack + check (format 2)", results, unpack)
    timed("base as format 1: encode", results, encode)
    timed("base as format 1: decode", results, decode)
    results["codec_records"] = holder[1]
    results["member_base_format1_bytes"] = old.stat().st_size
    results["member_base_format2_bytes"] = path.stat().st_size
    for done in (path, table, old):
        done.unlink()


def resync_sample(rows: int, changed: float) -> dict[str, float]:
    """Child process: the re-sync's non-state work for ``rows`` members (see the module docstring)."""
    from unittest import mock

    from measure_memory import InstantCrowdTwist, catalog, messages

    from destination_crowdtwist import DestinationCrowdtwist, wiring

    every = max(1, round(1 / changed)) if changed else 0
    with (
        tempfile.TemporaryDirectory(prefix="state-bench-resync-") as scratch,
        mock.patch.object(wiring, "client_from_config", side_effect=lambda *args, **kwargs: InstantCrowdTwist()),
    ):
        config: dict[str, Any] = {
            "api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"},
            "object_type": "user_profile", "award_queue_delay_seconds": 0, "progress_interval_seconds": 0,
            "member_index_path": str(Path(scratch) / "member_index.sqlite"),
        }
        timing: dict[str, float] = {}
        for run in ("first", "resync"):
            def row(i: int, run: str = run) -> dict[str, Any]:
                name = "Changed" if run == "resync" and every and i % every == 0 else "Lee"
                return {"user_id": f"member{i}@example.com", "first_name": "Ann", "last_name": f"{name}{i}"}
            started, cpu = time.perf_counter(), time.process_time()
            for _ in DestinationCrowdtwist().write(config, catalog("users", "append_dedup"), messages("users", rows, row)):
                pass
            timing[run] = time.perf_counter() - started
            timing[run + "_cpu"] = time.process_time() - cpu
    return {"rows": rows, "seconds": timing["resync"], "cpu_seconds": timing["resync_cpu"]}


def resync_share(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Step 4: time the re-sync's own work on a sample in a child process; the state's share of it."""
    child = subprocess.run(
        [sys.executable, __file__, "--resync-sample", str(args.sample), "--changed", str(args.changed)],
        check=True, capture_output=True, text=True,
    )
    sample = json.loads(child.stdout.strip().splitlines()[-1])
    results["resync_sample"] = sample
    scale = args.members / sample["rows"]
    results["resync_estimate_s"] = round(sample["seconds"] * scale, 1)
    results["resync_estimate_cpu_s"] = round(sample["cpu_seconds"] * scale, 1)
    steps = ("re-sync: open (download + import)", "re-sync: flush (delta upload)", "re-sync: close")
    state = sum(results[step] for step in steps)
    state_cpu = sum(results[step + " (cpu)"] for step in steps)
    results["state_share"] = round(state / results["resync_estimate_s"], 4)
    results["state_share_cpu"] = round(state_cpu / results["resync_estimate_cpu_s"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--credits", type=int, default=None, help="ledger keys (default: as many as members)")
    parser.add_argument("--changed", type=float, default=0.02, help="share of members changed by the re-sync")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--sample", type=int, default=20_000,
                        help="members of the re-sync whose own work is timed (0: skip that step)")
    parser.add_argument("--resync-sample", type=int, help=argparse.SUPPRESS)  # the child process of step 4
    args = parser.parse_args()
    if args.resync_sample:
        print(json.dumps(resync_sample(args.resync_sample, args.changed)))
        return
    credits = args.members if args.credits is None else args.credits
    from moto_s3 import MotoS3

    results: dict[str, Any] = {"members": args.members, "credits": credits, "changed": args.changed}
    work = Path(tempfile.mkdtemp(prefix="state-bench-"))
    server = MotoS3().start()
    try:
        server.create_bucket("state-bench")
        client = server.client()
        now = int(time.time())
        results["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
        print(f"sync state bench: {args.members:,} members, {credits:,} ledger keys, {args.changed:.0%} changed "
              f"(load average {results['load_average_start']})")
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
    if args.sample:
        resync_share(args, results)
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    print(f"\npeak RSS {results['peak_rss_mb']} MB (after imports {results['rss_after_imports_mb']} MB)")
    for stage in ("after_first_sync", "after_resync", "after_compaction"):
        print(f"objects {stage.replace('_', ' ')}:")
        for key, size in sorted(results[stage].items()):
            print(f"  {key:<60} {size / 1e6:>8.2f} MB")
    if "resync_estimate_s" in results:
        print(f"re-sync of {args.members:,} members without the state: {results['resync_estimate_s']:.0f} s wall / "
              f"{results['resync_estimate_cpu_s']:.0f} s CPU ({results['resync_sample']['rows']:,} measured); the "
              f"state adds {results['state_share']:.1%} of its wall time, {results['state_share_cpu']:.1%} of its CPU")
    print(f"load average: {results['load_average_start']} at the start, {results['load_average_end']} at the end")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
