"""Strict fake HTTP layer for functional tests of the CrowdTwist client.

``FakeServer`` is a tiny threaded ``http.server`` on 127.0.0.1 driven by a script: each expected
request gets one queued action (a reply, a dropped connection, a stall). Every request is recorded
with its raw target, headers and exact body bytes. ``verify()`` fails on an unexpected request, a
method/path mismatch, or queued actions left unused; ``serving()`` calls it on exit (wrap it in a fixture). Hostile answers are scripted too:
``Trickle`` sends a body one byte at a time, ``Reply(chunked=True)`` sends one without Content-Length.

``ScriptedPool`` stands in for the transport's urllib3 connection pool with the same strictness, for
failures a local socket cannot produce reliably (connect timeout, DNS failure).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import urllib3.response


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    target: str  # raw request target: path + "?" + query, exactly as sent (not decoded)
    headers: dict[str, str]  # lower-case names
    body: bytes
    peer_port: int = 0  # the client's source port: equal ports mean a reused (keep-alive) connection

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """Answer with a status, headers and body."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False  # Transfer-Encoding: chunked (no Content-Length), 1000-byte chunks


def json_reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Reply:
    extra = tuple((headers or {}).items())
    return Reply(status, json.dumps(data).encode(), (("Content-Type", "application/json"), *extra))


def html_reply(status: int, html: str, headers: dict[str, str] | None = None) -> Reply:
    extra = tuple((headers or {}).items())
    return Reply(status, html.encode(), (("Content-Type", "text/html; charset=UTF-8"), *extra))


@dataclass(frozen=True)
class Drop:
    """Read the request, then close the connection without answering (``reset`` sends a TCP RST)."""

    reset: bool = False


@dataclass(frozen=True)
class Stall:
    """Read the request and answer nothing for up to ``seconds`` (or until the server closes)."""

    seconds: float = 5.0


@dataclass(frozen=True)
class Trickle:
    """Answer ``status`` with a correct Content-Length, then send ``body`` one byte every ``interval`` s.

    ``head=True``: the status line and headers go out a byte every ``interval`` s too, then the body
    at once (a read timeout longer than ``interval`` never fires while they arrive).
    """

    body: bytes
    interval: float
    status: int = 200
    head: bool = False


Action = Reply | Drop | Stall | Trickle


@dataclass(frozen=True)
class _Expectation:
    method: str | None
    path: str | None
    action: Action


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10  # idle keep-alive connections end on their own

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(
            method=self.command,
            target=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            peer_port=int(self.client_address[1]),
        )
        action = self.server.fake.take(recorded)
        if isinstance(action, Reply):
            # send_response_only: no automatic Server/Date headers, so a test can script its own Date.
            self.send_response_only(action.status)
            if not any(name.lower() == "date" for name, _ in action.headers):
                self.send_header("Date", self.date_time_string())
            for name, value in action.headers:
                self.send_header(name, value)
            if action.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(action.body)))
            self.end_headers()
            try:
                if action.chunked:
                    for start in range(0, len(action.body), 1000):
                        piece = action.body[start:start + 1000]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(action.body)
            except OSError:  # the client stopped reading (a size cap) and closed the connection
                self.close_connection = True
            return
        self.close_connection = True
        if isinstance(action, Trickle) and action.head:
            head = (f"HTTP/1.1 {action.status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(action.body)}\r\n\r\n").encode()
            for i in range(len(head)):
                if self.server.fake.released.wait(action.interval):
                    return
                try:
                    self.wfile.write(head[i:i + 1])
                except OSError:  # the client gave up (its deadline) and closed the connection
                    return
            with contextlib.suppress(OSError):
                self.wfile.write(action.body)
        elif isinstance(action, Trickle):
            self.send_response_only(action.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(action.body)))
            self.end_headers()
            for i in range(len(action.body)):
                if self.server.fake.released.wait(action.interval):
                    break
                try:
                    self.wfile.write(action.body[i:i + 1])
                except OSError:  # the client gave up (its deadline) and closed the connection
                    break
        elif isinstance(action, Stall):
            self.server.fake.released.wait(action.seconds)
        elif action.reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer


class FakeServer:
    """Scripted strict HTTP server on 127.0.0.1 (see module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[_Expectation] = deque()
        self.requests: list[Recorded] = []
        self.errors: list[str] = []
        self.released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: the stubs also allow the bytes of an AF_UNIX path
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def expect(self, method: str | None, path: str | None, *actions: Action) -> FakeServer:
        """Queue one action per expected request; ``method``/``path`` None matches anything."""
        with self._lock:
            for action in actions:
                self._queue.append(_Expectation(method, path, action))
        return self

    def take(self, recorded: Recorded) -> Action:
        with self._lock:
            self.requests.append(recorded)
            if not self._queue:
                self.errors.append(f"unexpected request {recorded.method} {recorded.target}")
                return json_reply(599, {"error": "fake_unexpected_request"})
            expectation = self._queue.popleft()
        if expectation.method is not None and expectation.method != recorded.method:
            self.errors.append(f"expected method {expectation.method}, got {recorded.method} {recorded.target}")
        if expectation.path is not None and expectation.path != recorded.path:
            self.errors.append(f"expected path {expectation.path}, got {recorded.method} {recorded.target}")
        return expectation.action

    def verify(self) -> None:
        """Fail on unexpected or mismatched requests and on queued actions never used."""
        with self._lock:
            problems = list(self.errors)
            problems += [f"unused queued action for {e.method} {e.path}: {e.action}" for e in self._queue]
        assert not problems, "fake server: " + "; ".join(problems)

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def serving() -> Iterator[FakeServer]:
    """A running FakeServer, verified (strictness) and closed on exit; use it from a fixture."""
    server = FakeServer()
    try:
        yield server
        server.verify()
    finally:
        server.close()


def free_port() -> int:
    """A 127.0.0.1 port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sent:
    """One request as the transport handed it to its pool."""

    method: str
    url: str  # the request target: path and query, credentials included
    headers: dict[str, str]
    body: bytes | None


@dataclass
class ScriptedPool:
    """The transport's urllib3 pool, answering from a queue of (status, json[, headers]) tuples or
    exceptions to raise (urllib3's, as a pool that never retries raises them)."""

    script: deque[tuple[Any, ...] | BaseException] = field(default_factory=deque)
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def queue(self, *items: tuple[Any, ...] | BaseException) -> Self:
        self.script.extend(items)
        return self

    def urlopen(self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                **kwargs: Any) -> urllib3.response.HTTPResponse:
        self.sent.append(Sent(method, url, dict(headers or {}), body))
        if not self.script:
            self.errors.append(f"unexpected request {method} {url}")
            raise AssertionError(f"unexpected request {method} {url}")
        item = self.script.popleft()
        if isinstance(item, BaseException):
            raise item
        status, data, *rest = item
        return json_response(status, data, rest[0] if rest else None)

    def verify(self) -> None:
        assert not self.errors, "; ".join(self.errors)
        assert not self.script, f"unused scripted items: {list(self.script)}"


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> urllib3.response.HTTPResponse:
    """A JSON answer with a streamed body, as the pool returns it with preload_content=False."""
    return urllib3.response.HTTPResponse(
        body=io.BytesIO(json.dumps(data).encode()), headers={"Content-Type": "application/json", **(headers or {})},
        status=status, preload_content=False,
    )
