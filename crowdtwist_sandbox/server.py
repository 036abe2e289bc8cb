"""The HTTP layer (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive) and the in-process `Sandbox`.

One daemon thread per connection, so simulated latency on one connection never blocks another.
The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from crowdtwist_sandbox.engine import Reply, SandboxEngine
from crowdtwist_sandbox.options import SandboxOptions
from crowdtwist_sandbox.state import SUPPORTED_ID_TYPES

HOST = "127.0.0.1"
# serve_forever's poll interval bounds how long stop() waits; small keeps fixtures fast.
_POLL_INTERVAL = 0.01
_MAX_BODY = 10 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, engine: SandboxEngine) -> None:
        super().__init__((HOST, port), _Handler)
        self.engine = engine
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up every open keep-alive connection so no handler thread outlives the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"  # what the Starter Kit's captured responses show
    sys_version = ""
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK cost ~40 ms each.
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after 5 minutes

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def version_string(self) -> str:
        """``Server: Apache`` without a Python version suffix."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (tests and benchmarks would drown in it)."""

    def _serve(self) -> None:
        engine = cast(_Server, self.server).engine
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._write(Reply.json(411, {"error": "param_error", "message": "Content-Length is required"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._write(Reply.json(400, {"error": "param_error", "message": "Invalid Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        reply = engine.handle(self.command, self.path, self.headers, body)
        if reply.drop or reply.trickle_headers > 0:
            # Dropped and trickled answers end the connection (a client that gave up on a trickled
            # answer has hung up; the next request must not wait behind it).
            self.close_connection = True
        if reply.drop:
            # Processed, then hang up without a byte of response: the double-credit trap for naive retries.
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.trickle_headers > 0:
            with suppress(OSError):  # the client gave up waiting and hung up: what the fault is for
                self._write(reply)
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-cache, must-revalidate")
        self.send_header("Pragma", "no-cache")
        for name, value in reply.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        if reply.trickle_headers > 0:
            self._trickle_head(reply.trickle_headers)
        else:
            self.end_headers()
        self.wfile.write(reply.body)

    def _trickle_head(self, interval: float) -> None:
        """Send the status line and headers one byte at a time (trickle_headers_rate)."""
        # BaseHTTPRequestHandler collects the status line and headers here (send_header).
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        head = b"".join([*buffered, b"\r\n"])
        buffered.clear()
        sleep = cast(_Server, self.server).engine.options.sleep
        for index in range(len(head)):
            self.wfile.write(head[index:index + 1])
            sleep(interval)


class Sandbox:
    """A running fake CrowdTwist program on ``127.0.0.1:<free port>``.

    Use as a context manager (``with Sandbox(opts) as sb: ...``) or call `start` / `stop`. The helper
    methods act directly on the in-memory state; they bypass auth, faults and counters.
    """

    def __init__(self, options: SandboxOptions | None = None, *, port: int = 0) -> None:
        self._engine = SandboxEngine(options if options is not None else SandboxOptions())
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns self. Idempotent."""
        if self._server is None:
            server = _Server(self._requested_port, self._engine)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"crowdtwist-sandbox-{server.server_address[1]}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, hang up open connections and release the port. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._server is None:
            raise RuntimeError("sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    @property
    def options(self) -> SandboxOptions:
        """The current options."""
        return self._engine.options

    @property
    def engine(self) -> SandboxEngine:
        """The request-handling core (for advanced tests)."""
        return self._engine

    # ------------------------------------------------------------------ state helpers
    def _now(self) -> float:
        return self._engine.options.clock()

    def add_member(self, **fields: Any) -> dict[str, Any]:
        """Seed a member without request validation (uniqueness still enforced); returns its profile.

        Accepts any profile field, plus ``id`` (choose the numeric id) and ``total_points`` /
        ``redeemable_points`` (starting balance).
        """
        return self._engine.state.seed_member(fields, self._now())

    def add_activity(
        self,
        id: str,  # mirrors the API field name
        title: str | None = None,
        num_points: int = 10,
        freq_cap: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Define (or redefine) an activity; ``freq_cap`` = max awards per member."""
        return self._engine.state.add_activity(id=id, title=title, num_points=num_points, freq_cap=freq_cap, **extra)

    def activities(self) -> list[dict[str, Any]]:
        """The activity definitions."""
        return self._engine.state.activities()

    def members(self) -> list[dict[str, Any]]:
        """Every member's profile, in creation order."""
        return self._engine.state.profiles(self._now())

    def delete_member(self, id_type: str, value: str | int) -> dict[str, Any]:
        """Delete a member at once (as Control Center or another integration would); returns its last
        profile. Raises ``ValueError`` when no member has this identifier.
        """
        found = self.member(id_type, value)
        if found is None:
            raise ValueError(f"no member with this {id_type}")
        return self._engine.state.delete_member(int(found["id"]))

    def member(self, id_type: str, value: str | int) -> dict[str, Any] | None:
        """One member's profile by ``id_type`` (id, email, third_party_id, username, mobile_phone_number)."""
        if id_type not in SUPPORTED_ID_TYPES:
            raise ValueError(f"id_type must be one of {SUPPORTED_ID_TYPES}")
        now = self._now()
        found = self._engine.state.find(id_type, str(value), now)
        return None if found is None else self._engine.state.profile(found["id"], now)

    def existing_member(self, id_type: str, value: str | int) -> dict[str, Any]:
        """:meth:`member` for a member that must exist: raises ``LookupError`` naming it when there is none."""
        found = self.member(id_type, value)
        if found is None:
            raise LookupError(f"the sandbox has no member with {id_type} {value!r}")
        return found

    def credits(self) -> list[dict[str, Any]]:
        """Every recorded credit, oldest first.

        Keys: credit_id, user_id, activity_id, num_points, activity_date, extra_data, awarded,
        created_at, visible_at.
        """
        return self._engine.state.credits()

    def request_counts(self) -> dict[str, int]:
        """API request counters (admin calls and helper methods are not counted).

        Keys: per endpoint (e.g. ``"PUT /v2/users/{id}"``), per status code (``"200"``, ``"429"``...),
        ``"total"`` and ``"dropped"``.
        """
        return self._engine.counters()

    def reset(self) -> None:
        """Members, activities, credits and counters back to the seeded defaults."""
        self._engine.reset()

    def set_options(self, **knobs: Any) -> SandboxOptions:
        """Change any `SandboxOptions` field at run time (rate limit, faults, latency, auth...)."""
        return self._engine.set_options(**knobs)

    @contextmanager
    def options_changed(self, **knobs: Any) -> Iterator[SandboxOptions]:
        """Temporarily change knobs; the previous values come back on exit."""
        previous = {name: getattr(self.options, name) for name in knobs}
        try:
            yield self.set_options(**knobs)
        finally:
            self.set_options(**previous)
