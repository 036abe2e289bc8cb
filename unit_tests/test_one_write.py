"""api/one_write.py: a request's head and small body in one write, the same bytes on the wire."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from urllib3.connection import HTTPConnection

from destination_crowdtwist.api import one_write
from destination_crowdtwist.api.deadline import WatchedHTTPConnection
from destination_crowdtwist.api.one_write import MAX_JOINED_BODY, OneWriteRequest


class Listener:
    """A local TCP server that keeps every byte each accepted connection sent, until it closed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.received.append(data)

    def wait_for(self, n: int) -> list[bytes]:
        for _ in range(500):
            if len(self.received) >= n:
                return self.received
            time.sleep(0.01)
        raise AssertionError(f"{n} connections expected, {len(self.received)} closed")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


class CountingSocket:
    """The connection's socket, counting ``sendall`` calls (everything else passes through)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def connected(cls: type[HTTPConnection], port: int) -> tuple[HTTPConnection, CountingSocket]:
    conn = cls("127.0.0.1", port)
    conn.connect()
    counting = CountingSocket(conn.sock)
    conn.sock = counting
    return conn, counting


def send_one(cls: type[HTTPConnection], port: int, method: str, body: bytes | None) -> list[bytes]:
    conn, counting = connected(cls, port)
    conn.request(method, "/v2/users/a%40b.example?id_type=email", body=body,
                 headers={"Content-Type": "application/json", "User-Agent": "t"})
    conn.close()
    return counting.writes


BODY = b'{"first_name": "Ada", "points": 12}'


@pytest.mark.parametrize(("method", "body", "writes"), [
    ("PUT", BODY, 1),                              # joined: one write
    ("POST", b"x" * MAX_JOINED_BODY, 1),           # the largest joined body
    ("POST", b"x" * (MAX_JOINED_BODY + 1), 2),     # larger: its own write (not copied)
    ("GET", None, 1),                              # no body: the head alone, as before
])
def test_writes_and_bytes_match_urllib3(listener: Listener, method: str, body: bytes | None, writes: int) -> None:
    joined = send_one(WatchedHTTPConnection, listener.port, method, body)
    plain = send_one(HTTPConnection, listener.port, method, body)
    first, second = listener.wait_for(2)
    assert len(joined) == writes
    assert len(plain) == (2 if body else 1)
    # The very same bytes on the wire, body exactly once.
    assert first == second == b"".join(plain)
    if body:
        assert first.endswith(body) and first.count(body) == 1


def test_a_send_made_by_connecting_goes_first_and_alone(listener: Listener) -> None:
    """A fresh connection opens inside the head's send (http.client's auto_open); what connecting
    sends (a proxy's CONNECT) leaves on its own, before the joined head and body."""

    class Preface(OneWriteRequest, HTTPConnection):
        def connect(self) -> None:
            super().connect()
            self.send(b"PREFACE\r\n")

    conn = Preface("127.0.0.1", listener.port)
    assert conn.sock is None
    conn.request("PUT", "/x", body=BODY, headers={"User-Agent": "t"})
    conn.close()
    (got,) = listener.wait_for(1)
    assert got.startswith(b"PREFACE\r\nPUT /x HTTP/1.1\r\n")
    assert got.endswith(b"\r\n\r\n" + BODY) and got.count(BODY) == 1


def test_nothing_is_joined_when_urllib3_might_split_the_body(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(one_write, "USABLE", False)
    writes = send_one(WatchedHTTPConnection, listener.port, "PUT", BODY)
    (got,) = listener.wait_for(1)
    assert len(writes) == 2 and writes[1] == BODY
    assert got.count(BODY) == 1


def test_a_request_refused_before_sending_leaves_nothing_to_join(listener: Listener) -> None:
    conn, counting = connected(WatchedHTTPConnection, listener.port)
    with pytest.raises(ValueError, match="Invalid header"):
        conn.request("PUT", "/x", body=BODY, headers={"X-Bad": "a\r\nInjected: 1"})
    assert conn._join_body is None and conn._joined_body is None  # type: ignore[attr-defined]
    conn.close()
    assert counting.writes == []
    # The next request on a new connection is whole.
    assert len(send_one(WatchedHTTPConnection, listener.port, "PUT", BODY)) == 1
    got = listener.wait_for(2)[-1]
    assert got.count(BODY) == 1


def test_the_probe_matches_the_installed_urllib3() -> None:
    # urllib3 2 sends a bytes body as the object it was given, in one piece: joining is on.
    assert one_write.USABLE is True


# -- request_plain: urllib3's request without its per-header layers, the same bytes --------------------

HEADERS = {"User-Agent": "destination-crowdtwist/test", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive",
           "Content-Type": "application/json", "Accept": "application/json"}


def wire(listener: Listener, send: Any, cls: type[HTTPConnection] = WatchedHTTPConnection,
         host: str = "127.0.0.1", **kwargs: Any) -> tuple[bytes, int]:
    """The bytes one request put on the wire, and the number of writes it took."""
    before = len(listener.received)
    conn = cls(host, listener.port, **kwargs)
    # Whatever the host the Host header names, the bytes go to the local listener.
    counting = CountingSocket(socket.create_connection(("127.0.0.1", listener.port)))
    conn.sock = counting
    send(conn)
    conn.close()
    return listener.wait_for(before + 1)[before], len(counting.writes)


@pytest.mark.parametrize(("method", "body", "headers"), [
    ("PUT", BODY, HEADERS),
    ("POST", b"x" * MAX_JOINED_BODY, HEADERS),          # the largest joined body
    ("POST", b"x" * (MAX_JOINED_BODY + 1), HEADERS),    # its own write, as urllib3 sends it
    ("GET", None, HEADERS),                              # no Content-Length
    ("PUT", None, HEADERS),                              # Content-Length: 0
    ("POST", b"", HEADERS),                              # Content-Length: 0, no body write
    ("DELETE", None, HEADERS),
    ("PUT", BODY, {**HEADERS, "X-Signature": "ab" * 32, "X-Timestamp": "1796625429"}),  # HMAC-like
    ("PUT", BODY, {**HEADERS, "X-Name": "caf\xe9"}),    # a latin-1 value, encoded as http.client does
    ("PUT", BODY, {"user-agent": "lower", "accept-encoding": "identity"}),  # names in any case
])
def test_request_plain_puts_urllib3s_bytes_on_the_wire(
    listener: Listener, method: str, body: bytes | None, headers: dict[str, str]
) -> None:
    target = "/v2/users/a%40b.example?id_type=email&api_key=k"
    for _ in range(2):  # the second time, the header lines come from the cache
        plain, writes = wire(listener, lambda c: c.request_plain(method, target, body, headers))
        ours, _ = wire(listener, lambda c: HTTPConnection.request(c, method, target, body=body, headers=headers),
                       cls=HTTPConnection)
        assert plain == ours
        assert writes == (2 if body and len(body) > MAX_JOINED_BODY else 1)


@pytest.mark.parametrize("host", ["localhost", "::1"])
@pytest.mark.parametrize("port", [None, 8443])
def test_request_plain_host_header_is_http_clients(listener: Listener, host: str, port: int | None) -> None:
    """Host comes from http.client's putrequest: a default port left out, an IPv6 address bracketed."""
    def send(conn: Any) -> None:
        conn.port = port or conn.default_port
        conn.request_plain("PUT", "/x", BODY, HEADERS)

    def reference(conn: Any) -> None:
        conn.port = port or conn.default_port
        HTTPConnection.request(conn, "PUT", "/x", body=BODY, headers=HEADERS)

    plain, _ = wire(listener, send, host=host)
    ours, _ = wire(listener, reference, cls=HTTPConnection, host=host)
    assert plain == ours
    expected = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    assert f"\r\nHost: {expected}\r\n".encode() in plain


@pytest.mark.parametrize(("body", "headers"), [
    (BODY, {**HEADERS, "Host": "elsewhere"}),                  # a Host of its own
    (BODY, {**HEADERS, "Content-Length": "3"}),                # framing of its own
    (BODY, {**HEADERS, "Transfer-Encoding": "chunked"}),
    (BODY, {k: v for k, v in HEADERS.items() if k != "User-Agent"}),       # urllib3 adds its own
    (BODY, {k: v for k, v in HEADERS.items() if k != "Accept-Encoding"}),  # http.client adds identity
    ("text body", HEADERS),                                    # not bytes
])
def test_any_other_call_goes_to_urllib3s_request(listener: Listener, body: Any, headers: dict[str, str]) -> None:
    plain, _ = wire(listener, lambda c: c.request_plain("PUT", "/x", body, headers))
    ours, _ = wire(listener, lambda c: HTTPConnection.request(c, "PUT", "/x", body=body, headers=headers),
                   cls=HTTPConnection)
    assert plain == ours


def test_request_plain_refuses_what_http_client_refuses(listener: Listener) -> None:
    conn: Any
    conn, counting = connected(WatchedHTTPConnection, listener.port)
    with pytest.raises(ValueError, match="Invalid header"):
        conn.request_plain("PUT", "/x", BODY, {**HEADERS, "X-Bad": "a\r\nInjected: 1"})
    assert conn._join_body is None and conn._joined_body is None
    assert ("X-Bad", "a\r\nInjected: 1") not in one_write._LINES
    conn.close()
    other: Any = connected(WatchedHTTPConnection, listener.port)[0]
    with pytest.raises(http.client.InvalidURL, match="can't contain control characters"):
        other.request_plain("GET", "/x y\r\n", None, HEADERS)
    other.close()
    assert counting.writes == []


def test_request_plain_sets_a_changed_timeout_and_only_then(listener: Listener) -> None:
    conn: Any
    conn, counting = connected(WatchedHTTPConnection, listener.port)
    calls: list[float | None] = []
    real = counting._sock

    class Recording(CountingSocket):
        def settimeout(self, value: float | None) -> None:
            calls.append(value)
            real.settimeout(value)

    conn.sock = Recording(real)
    conn.timeout = 7.0
    conn.request_plain("GET", "/x", None, HEADERS)
    conn._HTTPConnection__state = "Idle"  # the answer is never read here
    conn.request_plain("GET", "/x", None, HEADERS)
    conn._HTTPConnection__state = "Idle"
    conn.timeout = 3.0
    conn.request_plain("GET", "/x", None, HEADERS)
    conn.close()
    assert calls == [7.0, 3.0]  # the second request found 7.0 already set


def test_the_head_buffer_probe_matches_this_python() -> None:
    assert one_write.PLAIN_USABLE is True


def test_without_the_head_buffer_request_plain_is_urllib3s_request(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(one_write, "PLAIN_USABLE", False)
    plain, writes = wire(listener, lambda c: c.request_plain("PUT", "/x", BODY, HEADERS))
    ours, _ = wire(listener, lambda c: HTTPConnection.request(c, "PUT", "/x", body=BODY, headers=HEADERS),
                   cls=HTTPConnection)
    assert plain == ours and writes == 1
