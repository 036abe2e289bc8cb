"""CPU per HTTP request of the client alone: CrowdTwistClient.update_user beside http.client and urllib3.

    .venv/bin/python scripts/cpu_per_request.py [N] [--reps 5]
    .venv/bin/python scripts/cpu_per_request.py --instructions [--code PATH]

One process, one thread, N sequential ``PUT /v2/users/{id}?id_type=email`` updates against the
sandbox (in its own process, as in ``scripts/bench.py``'s ``update/overhead``), sent three ways:
a bare ``http.client`` keep-alive loop (the perfect client's floor), a urllib3 pool's ``urlopen``,
and ``CrowdTwistClient.update_user`` (signing, flow control, the watchdog, classification: every
layer of api/). Prints the process CPU per request of each, min and median over ``--reps`` rounds.

``--instructions`` counts instead of timing: each loop runs under ``valgrind --tool=cachegrind`` at
two lengths, and the difference is divided by the extra requests, so start-up cancels out. The
count does not move with the machine's load (the timings do, 1.5 to 3x by the hour), which makes it
the figure to compare two versions by; ``--code PATH`` measures the client of another checkout (put
ahead of the installed package), e.g. ``git worktree add --detach /tmp/base <rev>``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3

API_KEY = "ctsbx_3f9a2c7e1b8d4e6f9a0b3c5d7e9f1a2b"
Row = dict[str, Any]


def loops(base_url: str, rows: list[Row]) -> dict[str, Callable[[], None]]:
    """The three send loops over ``rows``, by name."""
    parts = urlsplit(base_url)

    def target(row: Row) -> tuple[str, bytes]:
        fields = dict(row)
        user = quote(str(fields.pop("user_id")), safe="")
        return f"/v2/users/{user}?id_type=email&api_key={API_KEY}", json.dumps(fields).encode()

    def bare() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
        for row in rows:
            url, body = target(row)
            conn.request("PUT", url, body=body, headers={"Content-Type": "application/json"})
            json.loads(conn.getresponse().read())
        conn.close()

    def pool() -> None:
        connections = urllib3.HTTPConnectionPool(parts.hostname or "", parts.port, maxsize=4)
        for row in rows:
            url, body = target(row)
            response = connections.urlopen("PUT", url, body=body, headers={"Content-Type": "application/json"},
                                           retries=False, redirect=False, preload_content=False)
            json.loads(response.read())
            response.release_conn()
        connections.close()

    def client() -> None:
        from destination_crowdtwist.api.client import CrowdTwistClient
        from destination_crowdtwist.api.signing import ApiKeyAuth

        with CrowdTwistClient(base_url, ApiKeyAuth(API_KEY)) as crowdtwist:
            for row in rows:
                fields = dict(row)
                crowdtwist.update_user(str(fields.pop("user_id")), "email", fields)

    return {"http.client": bare, "urllib3": pool, "client": client}


def _child(base_url: str, rows_file: str, count: int, name: str) -> None:
    """One loop over the first ``count`` rows (run under cachegrind by ``--instructions``)."""
    rows = json.loads(Path(rows_file).read_text())[:count]
    loops(base_url, rows)[name]()


def _instructions(base_url: str, rows_file: Path, count: int, name: str, code: str | None) -> int:
    env = dict(os.environ, PYTHONPATH=code) if code else None
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", sys.executable,
         __file__, "--child", base_url, str(rows_file), str(count), name],
        env=env, capture_output=True, text=True, check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(done.stderr[-2000:])
    return int(found.group(1).replace(",", ""))


def main() -> None:
    """Run the loops against a fresh sandbox and print their CPU (or instructions) per request."""
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("requests", nargs="?", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5, help="timed rounds of the three loops")
    parser.add_argument("--instructions", action="store_true", help="count instructions under cachegrind")
    parser.add_argument("--code", help="a checkout whose destination_crowdtwist to measure (--instructions)")
    args = parser.parse_args()
    import bench  # the sandbox and the bench's rows (not needed by the loops run under cachegrind)

    bench_args = bench.parse_args(["--scenarios", "update/overhead", "--grid", "none"])
    scenario = next(s for s in bench.build_scenarios(bench_args) if s.name == "update/overhead")
    work = Path(tempfile.mkdtemp(prefix="cpu-per-request-"))
    with bench.SandboxProcess(work) as sandbox:
        sandbox.configure(scenario, hmac=False)
        if args.instructions:
            short, extra = 50, 200
            rows_file = work / "rows.json"
            rows_file.write_text(json.dumps([bench.record_data(scenario, i) for i in range(short + extra)]))
            for name in ("http.client", "client"):
                low = _instructions(sandbox.base_url, rows_file, short, name, args.code)
                high = _instructions(sandbox.base_url, rows_file, short + extra, name, args.code)
                print(f"{name:12s} {(high - low) / extra / 1000:8.1f} k instructions/request", flush=True)
            return
        rows = [bench.record_data(scenario, i) for i in range(args.requests)]
        timings: dict[str, list[float]] = {}
        for _ in range(args.reps):
            for name, loop in loops(sandbox.base_url, rows).items():
                started = time.process_time()
                loop()
                timings.setdefault(name, []).append((time.process_time() - started) / len(rows) * 1000)
    for name, values in timings.items():
        print(f"{name:12s} min {min(values):.3f}  median {statistics.median(values):.3f} ms CPU/request "
              f"({args.reps} rounds of {args.requests})")


if __name__ == "__main__":
    main()
