"""One deadline per attempt, from connecting to the last byte, for every command (the real entry point).

The sandbox trickles the status line and headers of its answers a byte at a time
(``trickle_headers_rate``), faster than the read timeout: the socket's read timeout never fires,
because a byte keeps arriving. An attempt must still end at its deadline, connect timeout + read
timeout (``request_timeout_seconds`` caps both), as it does for a trickled body, instead of after the
~50 s the headers take here (244 s for 20 rows in the audit, a byte a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import credit_config

from crowdtwist_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
#: request_timeout_seconds = 1: connect timeout 1 s + read timeout 1 s = a 2 s deadline per attempt.
TIMEOUT = 1
DEADLINE = 2 * TIMEOUT
# A byte every 250 ms: well inside the 1 s read timeout, so the socket never times out (the audit's
# server sent a byte a second against the default 30 s), and ~50 s for the status line and headers.
TRICKLE = {"trickle_headers_interval_ms": 250.0}

pytestmark = pytest.mark.timeout(120)


def _run(tmp_path: Path, args: list[str], config: dict[str, Any], stdin: bytes = b"") -> tuple[int, list[dict[str, Any]], str, float]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    started = time.monotonic()
    out = subprocess.run([*MAIN, *args, "--config", str(tmp_path / "config.json")], input=stdin,
                         capture_output=True, env=ENV, timeout=90)
    elapsed = time.monotonic() - started
    messages = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return out.returncode, messages, out.stderr.decode("utf-8", "replace"), elapsed


@pytest.mark.parametrize("command", ["check", "discover"])
def test_check_and_discover_give_up_on_trickled_headers_at_the_attempt_deadline(
    command: str, tmp_path: Path, sandbox_factory: Any
) -> None:
    sandbox: Sandbox = sandbox_factory(trickle_headers_rate=1.0, **TRICKLE)
    config = credit_config(sandbox, request_timeout_seconds=TIMEOUT, max_retries=0)
    code, messages, _, elapsed = _run(tmp_path, [command], config)
    assert sandbox.request_counts()["trickled_headers"] == 1
    # One attempt of DEADLINE seconds, plus the process start (seconds; more on a busy machine); never
    # the ~50 s of the trickled headers.
    assert elapsed < DEADLINE + 25
    if command == "check":
        [status] = [m["connectionStatus"] for m in messages if m["type"] == "CONNECTION_STATUS"]
        assert status["status"] == "FAILED"
        assert f"no complete answer within {DEADLINE}s" in status["message"]
    else:
        assert code == 1
        [error] = [m["trace"]["error"] for m in messages if m["type"] == "TRACE"]
        assert error["failure_type"] == "transient_error"
        assert f"no complete answer within {DEADLINE}s" in error["message"]


def test_write_retries_answers_with_trickled_headers_at_the_attempt_deadline(tmp_path: Path, sandbox_factory: Any) -> None:
    """20 rows, some answers trickled: each trickled attempt ends at its deadline and is retried (an
    update is safe to repeat), so the sync ends with every row written, in seconds (it took 244 s)."""
    sandbox: Sandbox = sandbox_factory(trickle_headers_rate=0.15, seed=7, **TRICKLE)
    config = credit_config(sandbox, object_type="user_profile", request_timeout_seconds=TIMEOUT, max_retries=10,
                           max_concurrency=4)
    (tmp_path / "catalog.json").write_text(json.dumps({"streams": [{
        "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
    }]}))
    lines = [json.dumps({"type": "RECORD", "record": {"stream": "users", "emitted_at": 0, "data": {
        "user_id": f"p{i}@example.com", "first_name": "Eve", "last_name": "Ng", "postal_code": "10010"}}})
        for i in range(20)]
    lines.append(json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": 1, "stream": {
        "stream_descriptor": {"name": "users"}, "stream_state": {"cursor": 1}}}}))
    code, messages, stderr, elapsed = _run(
        tmp_path, ["write", "--catalog", str(tmp_path / "catalog.json")], config, "\n".join(lines).encode() + b"\n"
    )
    assert code == 0, stderr[-2000:]
    assert [m["state"]["id"] for m in messages if m["type"] == "STATE"] == [1]
    assert len(sandbox.members()) == 20
    trickled = sandbox.request_counts()["trickled_headers"]
    assert trickled >= 2
    # A few DEADLINE-long attempts on 4 workers plus the process start, not ~50 s per trickled answer.
    assert elapsed < 40


class _TricklingS3(BaseHTTPRequestHandler):
    """An "S3 endpoint" that reads the request, then trickles its status line and headers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-amz-request-id: 0123456789ABCDEF\r\n\r\n"
        for i in range(len(head)):
            try:
                self.wfile.write(head[i:i + 1])
            except OSError:  # the client gave up at its deadline
                return
            time.sleep(0.25)

    do_HEAD = do_PUT = do_GET = do_DELETE = _answer


def test_the_reject_bucket_gives_up_on_trickled_headers_at_the_call_deadline() -> None:
    """``check``'s probe of an S3 endpoint that trickles its headers (~20 s here): HeadBucket ends at
    the deadline of connect + read timeout (2 s), and the check says the endpoint timed out."""
    from destination_crowdtwist.config import parse_config
    from destination_crowdtwist.rejects.probe import probe
    from destination_crowdtwist.rejects.s3_client import S3Client

    server = ThreadingHTTPServer(("127.0.0.1", 0), _TricklingS3)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        cfg = parse_config({
            "api_base_url": "https://api1.crowdtwist.com",
            "credentials": {"auth_type": "api_key", "api_key": "k" * 32},
            "object_storage_config": {
                "storage_type": "S3", "access_key_id": "AKIATESTTESTTESTTEST", "secret_access_key": "s" * 40,
                "s3_bucket_name": "rejects", "s3_bucket_region": "us-east-1", "s3_endpoint": endpoint,
                "bucket_path": "", "format": {"format_type": "JSONL"},
            },
        })
        storage = cfg.object_storage_config
        assert storage is not None
        client = S3Client(storage, connect_timeout=1.0, read_timeout=1.0)
        started = time.monotonic()
        try:
            message = probe(storage, client=client)
        finally:
            client.close()
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert message is not None and "timed out" in message
    assert elapsed < 8
