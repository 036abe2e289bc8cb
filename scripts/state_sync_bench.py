"""Measure ``sync_state: {"storage": "bucket"}`` through the connector (issue 17's targets), with bench.py's driver.

    .venv/bin/python scripts/state_sync_bench.py                    # 20,000-row re-sync + 3,000-row mixed upsert
    .venv/bin/python scripts/state_sync_bench.py --resync-rows 2000 --mixed-rows 300   # a smoke run (~1 min)

The sandbox runs in its own process as in ``scripts/bench.py`` (100 ms round trip, limit = budget = 10,000/min
for the measured syncs), moto's S3 server in another (``integration_tests/moto_s3.py``, no latency added). Every
sync runs in a fresh working directory with a fresh ``TMPDIR`` (the store's local copies live there), as a new
container on the platform would: nothing but the bucket carries over.

1. **Re-sync, 2% changed.** A first sync of ``--resync-rows`` existing members (zero latency, no limit, unmeasured)
   leaves the member index in bucket A. Measured: the same rows with one in 50 changed, (i) with the state in
   bucket A, (ii) without any state (every row an upsert). Requests/row of (i) (target <= 0.03); rows/s of (i) over
   its wall time beyond an empty run's (start-up and exit: most rows make no request, so the first-to-last request
   window would flatter it; the state's download and upload are inside it), of (ii) over its active window as
   bench.py counts ``upsert_existing/default`` (target: (i) >= 20x (ii)).
2. **Mixed 50/50 upsert.** A first sync of the even (existing) members, unmeasured, leaves their index in bucket B.
   Measured: every row (new and existing interleaved; the existing ones changed since), (i) with the state in
   bucket B (target <= 1.05 requests/row), (ii) without it.

Kept out of ``make bench``'s default run: it takes several minutes (the re-sync without state alone is 20,000
upserts at 10,000/min).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "integration_tests"))

import bench  # noqa: E402
from moto_s3 import MotoS3  # noqa: E402

RESYNC_CHANGED_EVERY = bench.RESYNC_CHANGED_EVERY
_SAVED = re.compile(r"Sync state: saved (\d+) delta objects \(([\d.]+) MB\) for (\d+) flushes, (\d+) compactions; (\d+) of them merged")


def state_saved(stdout: Path) -> dict[str, float]:
    """The store's closing line (``state/store.py``): delta objects written, flushes, compactions."""
    with stdout.open(encoding="utf-8") as fh:
        for line in fh:
            if '"LOG"' not in line or "Sync state: saved" not in line:
                continue
            found = _SAVED.search(json.loads(line)["log"]["message"])
            if found:
                return {"delta_objects": int(found.group(1)), "delta_mb": float(found.group(2)),
                        "flushes": int(found.group(3)), "compactions": int(found.group(4)),
                        "own_deltas_merged": int(found.group(5))}
    return {}


def row(i: int, *, changed: bool, first_name: str = "Bench") -> dict[str, Any]:
    """The i-th member's row (``changed``: its last name differs from the first sync's)."""
    return {"user_id": bench.email(i), "first_name": first_name,
            "last_name": f"Row{i} changed" if changed else f"Row{i}", "postal_code": "10010"}


def write_input(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows, a state after every tenth of them and a final one (as bench.py's inputs)."""
    every = max(1, len(rows) // 10)
    emitted_at = int(time.time() * 1000)
    with path.open("w", encoding="utf-8") as fh:
        since = 0
        for n, data in enumerate(rows, 1):
            fh.write(json.dumps({"type": "RECORD", "record": {"stream": bench.STREAM, "data": data,
                                                              "emitted_at": emitted_at}}) + "\n")
            since += 1
            if since == every or n == len(rows):
                fh.write(json.dumps(bench.state_message(since, n)) + "\n")
                since = 0
        if not rows:
            fh.write(json.dumps(bench.state_message(0, 0)) + "\n")


class Runner:
    """Runs syncs, each in a fresh directory and TMPDIR, against one sandbox process and one moto server."""

    def __init__(self, workroot: Path, sandbox: bench.SandboxProcess, moto: MotoS3) -> None:
        self.workroot = workroot
        self.sandbox = sandbox
        self.moto = moto
        self.count = 0

    def sync(
        self, label: str, scenario: bench.Scenario, rows: list[dict[str, Any]], bucket: str | None,
    ) -> tuple[bench._ChildRun, dict[str, int], bench._Output, Path]:
        """One sync of ``rows`` (the sandbox configured for ``scenario``: members seeded, counters zeroed),
        with the state in ``bucket`` (None: no state). Returns the run, the sandbox's counters, the output."""
        self.count += 1
        workdir = self.workroot / f"{self.count:02d}-{label}"
        tmp = workdir / "tmp"
        tmp.mkdir(parents=True)
        write_input(workdir / "messages.jsonl", rows)
        bench.write_config(workdir / "config.json", scenario, self.sandbox.base_url, hmac=False)
        config = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
        config["progress_interval_seconds"] = 0
        if bucket is not None:
            config["sync_state"] = {"storage": "bucket"}
            config["object_storage_config"] = self.moto.storage_config(bucket, bucket_path="airbyte")
        (workdir / "config.json").write_text(json.dumps(config), encoding="utf-8")
        bench.write_catalog(workdir / "catalog.json", scenario)
        self.sandbox.configure(scenario, hmac=False)
        # The child inherits the environment: its temporary folder (the state's local copies) is new and empty.
        previous = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(tmp)
        try:
            child = bench.run_connector(scenario, self.sandbox, workdir, timeout=120 + len(rows) / 20)
        finally:
            if previous is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous
        counters = self.sandbox.counters()
        out = bench.parse_output(workdir / "stdout.jsonl")
        if child.exit_code != 0 or out.errors:
            raise RuntimeError(f"{label} failed (exit {child.exit_code}, {out.errors}); see {workdir}")
        leftover = list(tmp.iterdir())
        if bucket is not None and leftover:
            raise RuntimeError(f"{label} left files in its temporary folder: {leftover}")
        print(f"  {label:<28} {child.wall:7.1f} s wall, {counters.get('total', 0):6d} requests, "
              f"{out.accepted} rows accepted", file=sys.stderr, flush=True)
        return child, counters, out, workdir


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run both cases; returns the figures (and the targets' verdicts)."""
    lat, limit = args.latency_ms, args.rate_limit
    workroot = Path(tempfile.mkdtemp(prefix="state-sync-bench-", dir=bench._ensure(ROOT / ".bench")))
    figures: dict[str, Any] = {"latency_ms": lat, "limit_per_minute": limit}
    try:
        with MotoS3() as moto, bench.SandboxProcess(workroot) as sandbox:
            for bucket in ("state-resync", "state-mixed"):
                moto.create_bucket(bucket)
            run = Runner(workroot, sandbox, moto)
            empty = bench.Scenario("empty", "overhead", 0, 0.0, None, bench.UNLIMITED_BUDGET)
            fixed, _, _, _ = run.sync("empty", empty, [], None)

            n = args.resync_rows
            fast = bench.Scenario("upsert_existing", "state_warm", n, 0.0, None, bench.UNLIMITED_BUDGET)
            slow = bench.Scenario("upsert_existing", "resync_state", n, lat, limit, limit)
            first = [row(i, changed=False) for i in range(n)]
            resync = [row(i, changed=i % RESYNC_CHANGED_EVERY == 0) for i in range(n)]
            run.sync("resync-first-sync", fast, first, "state-resync")
            stated, stated_counts, stated_out, stated_dir = run.sync("resync-with-state", slow, resync, "state-resync")
            plain_rows = resync[: args.plain_rows] if args.plain_rows else resync
            plain, plain_counts, plain_out, _ = run.sync("resync-without-state", slow, plain_rows, None)
            beyond = max(stated.wall - fixed.wall, bench.POLL_SECONDS)
            stated_rate = n / beyond
            active = (plain.last_request or 0.0) - (plain.first_request or 0.0)
            plain_rate = len(plain_rows) / max(active, bench.POLL_SECONDS)
            figures["resync"] = {
                "rows": n, "changed": len(range(0, n, RESYNC_CHANGED_EVERY)),
                "with_state": {"requests": stated_counts.get("total", 0),
                               "requests_per_row": round(stated_counts.get("total", 0) / n, 4),
                               "wall_seconds": round(stated.wall, 2), "beyond_startup_seconds": round(beyond, 2),
                               "rows_per_second": round(stated_rate, 1), "accepted": stated_out.accepted,
                               # The connector's CPU beyond the empty run's: the load-independent part of the
                               # wall time on a shared machine.
                               "cpu_seconds_beyond_startup": round(stated.cpu - fixed.cpu, 2),
                               "state": state_saved(stated_dir / "stdout.jsonl"),
                               "load_average": [round(x, 2) for x in os.getloadavg()]},
                "without_state": {"rows": len(plain_rows), "requests": plain_counts.get("total", 0),
                                  "requests_per_row": round(plain_counts.get("total", 0) / len(plain_rows), 4),
                                  "active_seconds": round(active, 2), "rows_per_second": round(plain_rate, 1),
                                  "accepted": plain_out.accepted},
                "speedup": round(stated_rate / plain_rate, 1),
                "empty_run_wall_seconds": round(fixed.wall, 2), "empty_run_cpu_seconds": round(fixed.cpu, 2),
            }

            m = args.mixed_rows
            fast_mixed = bench.Scenario("upsert_mixed", "state_warm", m, 0.0, None, bench.UNLIMITED_BUDGET)
            slow_mixed = bench.Scenario("upsert_mixed", "state", m, lat, limit, limit)
            earlier = [row(i, changed=False, first_name="Earlier") for i in range(0, m, 2)]
            mixed = [row(i, changed=False) for i in range(m)]
            run.sync("mixed-first-sync", fast_mixed, earlier, "state-mixed")
            _, mixed_counts, mixed_out, _ = run.sync("mixed-with-state", slow_mixed, mixed, "state-mixed")
            _, bare_counts, _, _ = run.sync("mixed-without-state", slow_mixed, mixed, None)
            figures["mixed"] = {
                "rows": m,
                "with_state": {"requests": mixed_counts.get("total", 0),
                               "requests_per_row": round(mixed_counts.get("total", 0) / m, 4),
                               "by_endpoint": {k: v for k, v in mixed_counts.items() if " " in k},
                               "accepted": mixed_out.accepted},
                "without_state": {"requests": bare_counts.get("total", 0),
                                  "requests_per_row": round(bare_counts.get("total", 0) / m, 4)},
            }
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    resync_fig, mixed_fig = figures["resync"], figures["mixed"]
    figures["targets"] = {
        "resync requests/row <= 0.03": resync_fig["with_state"]["requests_per_row"] <= 0.03,
        "resync rows/s >= 20x without state": resync_fig["speedup"] >= 20,
        "mixed requests/row <= 1.05": mixed_fig["with_state"]["requests_per_row"] <= 1.05,
    }
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--resync-rows", type=int, default=20_000, help="members of the re-sync (default 20000)")
    p.add_argument("--plain-rows", type=int, default=0,
                   help="rows of the re-sync without state (default 0: all; its rate is the limit's anyway)")
    p.add_argument("--mixed-rows", type=int, default=3000, help="rows of the mixed upsert (default 3000)")
    p.add_argument("--latency-ms", type=float, default=100.0, help="sandbox round trip (default 100)")
    p.add_argument("--rate-limit", type=int, default=10_000, help="sandbox limit = budget, requests/minute")
    p.add_argument("--json", type=Path, default=ROOT / ".bench" / "state_sync.json")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run, print the figures and the targets; exit 1 when a target is missed."""
    args = parse_args(argv)
    started = time.monotonic()
    figures = measure(args)
    figures["total_seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(figures, indent=2)
    print(text)
    bench._ensure(args.json.parent)
    args.json.write_text(text + "\n", encoding="utf-8")
    for name, ok in figures["targets"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(figures["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
