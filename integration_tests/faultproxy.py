"""A fault proxy in front of the sandbox for answers the sandbox cannot spoil: trickling and oversized bodies.

The sandbox applies the request and answers normally; the proxy passes the answer on, except for a
seeded share of the chosen endpoints, where it

* ``trickle``: sends the headers at once and then the body one byte every ``interval`` seconds, so
  the client's socket timeout never fires and only its total attempt deadline can stop it;
* ``oversize``: sends a chunked body of more than 1 MB (the client's body cap) of JSON whitespace.

Either way the change has landed in the sandbox while the client sees no usable answer: for a credit
an uncertain outcome, for an idempotent request a retry. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import threading
import time
from collections import Counter
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

_HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})
OVERSIZE_BYTES = 1_200_000  # above the client's 1,000,000-byte cap (api/transport.py MAX_BODY_BYTES)


class FaultProxy:
    """A running proxy to ``upstream``; spoils ``rate`` of the answers to requests matching ``endpoint``."""

    def __init__(
        self,
        upstream: str,
        *,
        fault: Literal["trickle", "oversize"],
        rate: float,
        endpoint: str,
        seed: int = 0,
        interval: float = 0.25,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault = fault
        self.rate = rate
        self.endpoint = re.compile(endpoint)  # matched against "METHOD /path"
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                proxy.serve(self)

            def do_POST(self) -> None:
                proxy.serve(self)

            def do_PUT(self) -> None:
                proxy.serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def _spoil(self, request_line: str) -> bool:
        if not self.endpoint.match(request_line):
            return False
        with self._lock:
            return self._rng.random() < self.rate

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Forward one request upstream and pass the answer back (spoiled when the dice say so)."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            status, content_type, payload = answer.status, answer.getheader("Content-Type", ""), answer.read()
        finally:
            upstream.close()
        path = handler.path.split("?", 1)[0]
        if not self._spoil(f"{handler.command} {path}"):
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        handler.close_connection = True
        with self._lock:
            self.counts["trickled" if self.fault == "trickle" else "oversized"] += 1
        with suppress(OSError):  # the client gives up and hangs up: that is the point
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            if self.fault == "trickle":
                handler.send_header("Content-Length", str(len(payload)))
                handler.end_headers()
                handler.wfile.flush()
                for byte in payload:
                    time.sleep(self.interval)
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
            else:
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                chunk = b" " * 65536
                for _ in range(OVERSIZE_BYTES // len(chunk) + 1):
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
