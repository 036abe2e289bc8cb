"""The sync state's write-ahead flushes alone, without the connector: CPU of the state path and PUTs to the bucket.

    .venv/bin/python scripts/state_flush_bench.py                       # this checkout's code, 3 runs
    .venv/bin/python scripts/state_flush_bench.py --other /path/to/checkout   # alternating with another checkout's

A moto S3 server holds a 20,000-member state (a base). Each run is a fresh process (as a sync in a fresh
container): it opens the store, then 400 worker threads each clear one member's fingerprint (the write-ahead
rule), flush, wait 100 ms (the CrowdTwist request) and record the member's new fingerprint, one thread every
12 ms (the pace of `scripts/state_sync_bench.py`'s re-sync with 2% changed); then it closes the store. It
prints the process's CPU time for the open, the drops and the close, and the PUTs the bucket received. The
connector's per-row work (reading, mapping, looking up) is not in it: this is the state's own cost, which
`state_sync_bench.py`'s whole-connector figures bury in the machine's noise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "https://api.crowdtwist.com"
BUCKET = "flush-bench"
MEMBERS = 20_000
DROPS = 400


def _client(endpoint: str, key: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))


def _fingerprint(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:16]


def seed(s3: Any) -> None:
    """The base every run starts from: 20,000 members, compacted."""
    from destination_crowdtwist.state.store import SyncStateStore
    from destination_crowdtwist.writers.member_index import MemberIndex

    store = SyncStateStore(s3, BUCKET, PROGRAM, tempfile.mkdtemp(), compact_after=1)
    store.open()
    index = MemberIndex(store.member_index_path, PROGRAM)
    for i in range(MEMBERS):
        index.record("email", f"m{i}@x", fingerprint=_fingerprint(str(i)))
    index.close()
    store.close()


def one_run(s3: Any, run: int) -> str:
    """One sync's state path; returns its line of figures."""
    from destination_crowdtwist.state.store import SyncStateStore
    from destination_crowdtwist.writers.member_index import MemberIndex

    puts = [0]
    put_object = s3.put_object

    def counted(**params: Any) -> Any:
        puts[0] += 1
        return put_object(**params)

    s3.put_object = counted
    started, wall = time.process_time(), time.monotonic()
    store = SyncStateStore(s3, BUCKET, PROGRAM, tempfile.mkdtemp())
    store.open()
    index = MemberIndex(store.member_index_path, PROGRAM)
    opened = time.process_time()

    def worker(i: int) -> None:
        index.clear_fingerprint("email", f"m{i}@x")
        store.flush(60.0)
        time.sleep(0.1)
        index.record("email", f"m{i}@x", fingerprint=_fingerprint(f"run {run}, member {i}"))

    threads = [threading.Thread(target=worker, args=(n * 50 + run % 50,)) for n in range(DROPS)]
    for thread in threads:
        thread.start()
        time.sleep(0.012)
    for thread in threads:
        thread.join()
    index.close()
    dropped = time.process_time()
    store.close()
    ended = time.process_time()
    return (f"open {opened - started:.2f} s, drops {dropped - opened:.2f} s, close {ended - dropped:.2f} s, "
            f"CPU {ended - started:.2f} s, wall {time.monotonic() - wall:.1f} s, PUTs {puts[0]}")


def main(argv: list[str] | None = None) -> int:
    """Start moto, seed the base, run each checkout's code in turn in a fresh process."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=3, help="runs per checkout (default 3)")
    p.add_argument("--other", type=Path, help="another checkout whose code alternates with this one's")
    p.add_argument("--child", nargs=4, metavar=("ENDPOINT", "KEY", "SECRET", "RUN"), help=argparse.SUPPRESS)
    p.add_argument("--seed", nargs=3, metavar=("ENDPOINT", "KEY", "SECRET"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seed:
        seed(_client(*args.seed))
        return 0
    if args.child:
        endpoint, key, secret, run = args.child
        print(one_run(_client(endpoint, key, secret), int(run)), flush=True)
        return 0
    sys.path.insert(0, str(ROOT / "integration_tests"))
    from moto_s3 import MotoS3

    checkouts = [ROOT] if args.other is None else [args.other.resolve(), ROOT]
    with MotoS3() as moto:
        moto.create_bucket(BUCKET)
        keys = [moto.endpoint, moto.admin["aws_access_key_id"], moto.admin["aws_secret_access_key"]]
        subprocess.run([sys.executable, __file__, "--seed", *keys], check=True, env=_env(ROOT))
        for run in range(1, args.runs * len(checkouts) + 1):
            checkout = checkouts[(run - 1) % len(checkouts)]
            out = subprocess.run([sys.executable, __file__, "--child", *keys, str(run)], env=_env(checkout),
                                 capture_output=True, text=True, check=False)
            print(f"{checkout}: {out.stdout.strip() or out.stderr[-500:]}", flush=True)
    return 0


def _env(checkout: Path) -> dict[str, str]:
    # The checkout's package first on the path (this venv's dependencies serve both).
    return {**os.environ, "PYTHONPATH": str(checkout)}


if __name__ == "__main__":
    sys.exit(main())
