"""The perfect client of the bench's CPU rows: the same updates as the connector, and nothing else.

    .venv/bin/python scripts/perfect_client.py BASE_URL MESSAGES_JSONL API_KEY [--threads 4]

Reads the RECORD lines of a bench input (``scripts/bench.py``'s ``update`` workload) and sends each
row's ``PUT /v2/users/{user_id}?id_type=email&api_key=...`` with the row's fields as a compact JSON
body, as the connector does, through ``http.client`` keep-alive connections (one per thread, rows
dealt round-robin), reading every answer whole and decoding its JSON. No retries, no pacing, no
classification, no logging: the floor that the connector's CPU per row is compared with.

Prints one JSON object: rows, answers by status, and the CPU (``time.process_time``, every thread of
this process) and wall time of the send loop alone, start-up and input parsing excluded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

USER_AGENT = "bench-perfect-client"


def requests_of(messages: Path, api_key: str) -> list[tuple[str, bytes]]:
    """(path and query, body) of every RECORD line: the update the connector sends for that row."""
    out: list[tuple[str, bytes]] = []
    query = urlencode({"id_type": "email", "api_key": api_key})
    with messages.open(encoding="utf-8") as fh:
        for line in fh:
            msg = json.loads(line)
            if msg.get("type") != "RECORD":
                continue
            data = dict(msg["record"]["data"])
            user_id = str(data.pop("user_id"))
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            out.append((f"/v2/users/{quote(user_id, safe='')}?{query}", body))
    return out


def send_all(host: str, port: int, calls: list[tuple[str, bytes]], statuses: Counter[int], lock: threading.Lock) -> None:
    """One keep-alive connection sending ``calls`` one after the other."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    seen: Counter[int] = Counter()
    try:
        for target, body in calls:
            conn.request("PUT", target, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if payload:
                json.loads(payload)
            seen[response.status] += 1
    finally:
        conn.close()
        with lock:
            statuses.update(seen)


def main(argv: list[str] | None = None) -> int:
    """Send every row once; print the figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("base_url")
    p.add_argument("messages", type=Path)
    p.add_argument("api_key")
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args(argv)
    parts = urlsplit(args.base_url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        p.error("base_url must be http://host:port (the local sandbox)")
    calls = requests_of(args.messages, args.api_key)
    shares = [calls[k::args.threads] for k in range(args.threads)]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    threads = [threading.Thread(target=send_all, args=(parts.hostname, parts.port, share, statuses, lock))
               for share in shares if share]
    cpu, wall = time.process_time(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"rows": len(calls), "threads": len(threads), "statuses": {str(k): v for k, v in statuses.items()},
                      "cpu_seconds": round(cpu, 4), "wall_seconds": round(wall, 4)}))
    return 0 if sum(statuses.values()) == len(calls) else 1


if __name__ == "__main__":
    sys.exit(main())
