"""api/one_write.py: a request's head and small body in one write, the same bytes on the wire."""

from __future__ import annotations

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
