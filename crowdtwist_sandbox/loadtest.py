"""Measure sandbox throughput (requests/s) with keep-alive connections.

    python -m crowdtwist_sandbox.loadtest                      # starts a sandbox in a subprocess
    python -m crowdtwist_sandbox.loadtest --in-process         # same process (shares the GIL: lower)
    python -m crowdtwist_sandbox.loadtest --base-url http://127.0.0.1:8080
    python -m crowdtwist_sandbox.loadtest --client raw          # http.client: the server's own ceiling

Each client thread owns one ``requests.Session`` (one keep-alive connection) and loops over a mix of
GET /v2/activities, GET profile, PUT profile and POST credit until the time is up.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import requests

from crowdtwist_sandbox.options import DEFAULT_API_KEY
from crowdtwist_sandbox.server import Sandbox


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one measurement."""

    requests: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def _prepare(base_url: str, api_key: str, n: int) -> list[str]:
    """Create one member per client thread (outside the timed part); returns their emails."""
    emails = []
    with requests.Session() as session:
        for i in range(n):
            email = f"load{i}-{time.monotonic_ns()}@example.com"
            response = session.post(
                f"{base_url}/v2/users",
                params={"api_key": api_key},
                json={"first_name": "Load", "last_name": f"Tester{i}", "email_address": email, "postal_code": "10010"},
                timeout=10,
            )
            response.raise_for_status()
            emails.append(email)
    return emails


def _calls(api_key: str, email: str, *, mix: bool) -> list[tuple[str, str, bytes | None]]:
    """The request mix as (method, path + query, JSON body)."""
    user = f"/v2/users/{quote(email, safe='')}"
    query = urlencode({"api_key": api_key, "id_type": "email"})
    calls: list[tuple[str, str, bytes | None]] = [("GET", f"/v2/activities?{urlencode({'api_key': api_key})}", None)]
    if mix:
        calls += [
            ("GET", f"{user}?{query}", None),
            ("PUT", f"{user}?{query}", json.dumps({"receive_email_updates": 1}).encode()),
            ("POST", f"{user}/activities?{query}", json.dumps({"activity_id": "1001"}).encode()),
        ]
    return calls


def measure(
    base_url: str,
    *,
    api_key: str = DEFAULT_API_KEY,
    seconds: float = 3.0,
    threads: int = 4,
    mix: bool = True,
    client: str = "requests",
) -> LoadResult:
    """Hammer ``base_url`` for ``seconds`` with ``threads`` keep-alive clients; count answered requests.

    ``client="requests"`` uses one ``requests.Session`` per thread (what connectors use; the client
    itself costs ~0.5 ms of CPU per call, so it is often the bottleneck on 2 cores);
    ``client="raw"`` uses ``http.client`` to measure the server's own capacity.
    """
    emails = _prepare(base_url, api_key, threads)
    counts = [0] * threads
    errors = [0] * threads
    start_gate = threading.Barrier(threads + 1)
    deadline = [0.0]
    split = urlsplit(base_url)
    headers = {"Content-Type": "application/json"}

    def worker(index: int) -> None:
        calls = _calls(api_key, emails[index], mix=mix)
        session = requests.Session()
        conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port or 80, timeout=10)
        try:
            start_gate.wait()
            i = 0
            while time.perf_counter() < deadline[0]:
                method, path, body = calls[i % len(calls)]
                i += 1
                if client == "raw":
                    conn.request(method, path, body=body, headers=headers if body else {})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                else:
                    status = session.request(
                        method, base_url + path, data=body, headers=headers if body else None, timeout=10
                    ).status_code
                counts[index] += 1
                if status != 200:
                    errors[index] += 1
        finally:
            session.close()
            conn.close()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    begin = time.perf_counter()
    deadline[0] = begin + seconds
    start_gate.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - begin
    return LoadResult(sum(counts), sum(errors), elapsed)


def _subprocess_sandbox() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crowdtwist_sandbox.cli", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: print the measured requests/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", help="measure an already running sandbox")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--in-process", action="store_true", help="run the sandbox inside this process")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--activities-only", action="store_true", help="only GET /v2/activities")
    parser.add_argument("--client", choices=("requests", "raw"), default="requests",
                        help="requests.Session per thread, or raw http.client (server capacity)")
    args = parser.parse_args(argv)
    proc: subprocess.Popen[str] | None = None
    sandbox: Sandbox | None = None
    if args.base_url:
        base_url = args.base_url.rstrip("/")
    elif args.in_process:
        sandbox = Sandbox().start()
        base_url = sandbox.base_url
    else:
        proc, base_url = _subprocess_sandbox()
    try:
        result = measure(
            base_url,
            api_key=args.api_key,
            seconds=args.seconds,
            threads=args.threads,
            mix=not args.activities_only,
            client=args.client,
        )
    finally:
        if sandbox is not None:
            sandbox.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=5)
    print(
        f"{result.requests} requests in {result.seconds:.2f}s with {args.threads} keep-alive {args.client} clients: "
        f"{result.per_second:.0f} requests/s ({result.errors} non-200)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
