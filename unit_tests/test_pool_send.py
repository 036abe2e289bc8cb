"""api/pool_send.py: the transport's one urlopen call without urlopen's per-request work.

What the pool does per connection must be unchanged: a kept-alive connection the server closed is
replaced (not written to), a connection that failed goes back to no pool, TLS is verified against the
configured CA bundle, and every failure raises what ``urlopen(retries=False)`` raises (the transport's
classification reads those exceptions). The servers here are raw sockets on 127.0.0.1 so that each
connection's fate is scripted exactly.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3
from urllib3.util import Timeout

from destination_crowdtwist.api import pool_send
from destination_crowdtwist.api.client import CrowdTwistClient
from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.api.pool_send import send
from destination_crowdtwist.api.signing import ApiKeyAuth
from tests_support.private_ca import https_server, private_ca

Handler = Callable[[int, socket.socket], None]
OK_BODY = json.dumps({"id": 1}).encode()


def _read_request(sock: socket.socket) -> bytes:
    """One request's head and body (by Content-Length); b"" when the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return b""
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _answer(sock: socket.socket, body: bytes = OK_BODY, length: int | None = None) -> None:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            f"{len(body) if length is None else length}\r\n\r\n").encode()
    sock.sendall(head + body)


@contextlib.contextmanager
def raw_server(handler: Handler) -> Iterator[tuple[int, list[int]]]:
    """(port, accepted): each accepted connection runs ``handler(its index, socket)`` in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # close() does not wake a blocked accept(): poll for the stop instead
    accepted: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            accepted.append(len(accepted))
            threading.Thread(target=_serve, args=(len(accepted) - 1, sock), daemon=True).start()

    def _serve(index: int, sock: socket.socket) -> None:
        with sock, contextlib.suppress(OSError):
            handler(index, sock)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _client(port: int, scheme: str = "http") -> CrowdTwistClient:
    return CrowdTwistClient(f"{scheme}://127.0.0.1:{port}", ApiKeyAuth("k"), max_retries=0, timeout=(2.0, 2.0),
                            sleep=lambda _: None)


def _idle_connections_are_usable_or_empty(client: CrowdTwistClient) -> bool:
    pool = client._transport.pool
    assert isinstance(pool, urllib3.HTTPConnectionPool) and pool.pool is not None
    return all(conn is None or conn.sock is None for conn in list(pool.pool.queue))


def test_the_transport_sends_through_send_for_its_own_pool() -> None:
    client = _client(1)
    try:
        assert client._transport._direct is client._transport.pool
    finally:
        client.close()


def test_the_installed_urllib3_has_the_internals_send_is_built_from() -> None:
    # setup.py pins urllib3 2; if this fails after an upgrade, the transport is using urlopen (slower, correct).
    assert pool_send.USABLE


def test_without_those_internals_the_transport_falls_back_to_urlopen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_send, "USABLE", False)

    def handler(index: int, sock: socket.socket) -> None:
        while _read_request(sock):
            _answer(sock)

    sent: list[str] = []
    real = urllib3.HTTPConnectionPool.urlopen

    def counting(self: urllib3.HTTPConnectionPool, method: str, url: str, **kw: object) -> object:
        sent.append(method)
        return real(self, method, url, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", counting)
    with raw_server(handler) as (port, accepted):
        client = _client(port)
        try:
            assert client._transport._direct is None
            for user in ("a@b.com", "b@b.com"):  # the attempts still go out, through urlopen, kept alive
                assert client.update_user(user, "email", {"first_name": "A"}).ok
            assert sent == ["PUT", "PUT"] and len(accepted) == 1
        finally:
            client.close()


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_written_to() -> None:
    closed = threading.Event()

    def handler(index: int, sock: socket.socket) -> None:
        _read_request(sock)
        _answer(sock)  # keep-alive by HTTP/1.1 default, then the server closes it while it is idle
        sock.shutdown(socket.SHUT_RDWR)
        closed.set()

    with raw_server(handler) as (port, accepted):
        client = _client(port)
        try:
            assert client.update_user("a@b.com", "email", {"first_name": "A"}).status == 200
            assert closed.wait(5)
            threading.Event().wait(0.1)  # the FIN reaches the client's socket
            assert client.update_user("b@b.com", "email", {"first_name": "B"}).status == 200
            # The dead connection was noticed before writing (no failed attempt, nothing sent twice).
            assert client.stats.snapshot().connection_errors == 0
            assert client.stats.snapshot().requests == 2 and len(accepted) == 2
        finally:
            client.close()


@pytest.mark.parametrize("cut_mid_body", [True, False], ids=["cut mid-body", "dropped before the answer"])
def test_a_broken_connection_goes_back_to_no_pool(cut_mid_body: bool) -> None:
    def handler(index: int, sock: socket.socket) -> None:
        if index == 0:
            _read_request(sock)  # applied, perhaps
            if cut_mid_body:
                _answer(sock, OK_BODY[:3], length=len(OK_BODY))  # a promised body cut short
            return  # else never answered
        while _read_request(sock):
            _answer(sock)

    with raw_server(handler) as (port, accepted):
        client = _client(port)
        try:
            with pytest.raises(TransientError, match="connection dropped"):
                client.update_user("a@b.com", "email", {"first_name": "A"})
            assert _idle_connections_are_usable_or_empty(client)
            assert client.update_user("a@b.com", "email", {"first_name": "A"}).status == 200
            assert len(accepted) == 2  # the next attempt had a new connection
        finally:
            client.close()


def _drop_before_answer(index: int, sock: socket.socket) -> None:
    _read_request(sock)


def _stall(index: int, sock: socket.socket) -> None:
    _read_request(sock)
    threading.Event().wait(2)


@pytest.mark.parametrize("handler", [_drop_before_answer, _stall, None], ids=["dropped", "read-timeout", "refused"])
def test_failures_raise_what_urlopen_raises(handler: Handler | None) -> None:
    def failure(call: Callable[[urllib3.HTTPConnectionPool], object], port: int) -> BaseException:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=False, retries=False)
        with pytest.raises(Exception) as info:  # noqa: PT011 - the type is what is compared
            call(pool)
        pool.close()
        return info.value

    timeout = Timeout(connect=1.0, read=0.3)

    def by_send(pool: urllib3.HTTPConnectionPool) -> object:
        return send(pool, "PUT", "/v2/x?a=b", b"{}", {"Content-Type": "application/json"}, timeout)

    def by_urlopen(pool: urllib3.HTTPConnectionPool) -> object:
        return pool.urlopen("PUT", "/v2/x?a=b", body=b"{}", headers={"Content-Type": "application/json"},
                            retries=False, redirect=False, timeout=timeout, preload_content=False)

    if handler is None:
        with socket.create_server(("127.0.0.1", 0)) as unused:
            port = unused.getsockname()[1]
        ours, theirs = failure(by_send, port), failure(by_urlopen, port)
    else:
        with raw_server(handler) as (port, _):
            ours, theirs = failure(by_send, port), failure(by_urlopen, port)
    assert type(ours) is type(theirs)
    assert [type(arg) for arg in ours.args] == [type(arg) for arg in theirs.args]


def test_send_takes_only_a_relative_target() -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 1)
    with pytest.raises(ValueError, match="relative target"):
        send(pool, "GET", "http://127.0.0.1:1/x", None, {}, Timeout(1.0))


# -- TLS through send: verified against the CA bundle, SNI/host name checked --------------------------


class _Json(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(OK_BODY)))
        self.end_headers()
        self.wfile.write(OK_BODY)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, CA file) of an HTTPS server on 127.0.0.1 whose certificate a private CA issued."""
    ca = private_ca(tmp_path)
    with https_server(ca, _Json) as port:
        yield port, ca.ca_file


def test_tls_is_verified_against_the_configured_ca_bundle(
    tls_server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca_file = tls_server
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    client = _client(port, "https")
    try:
        assert isinstance(client._transport._direct, urllib3.HTTPSConnectionPool)
        assert client.update_user("a@b.com", "email", {"first_name": "A"}).status == 200
        assert client.update_user("b@b.com", "email", {"first_name": "B"}).status == 200
    finally:
        client.close()
    # Without the private CA (certifi's bundle) the same server is refused: verification is on.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    client = _client(port, "https")
    try:
        with pytest.raises(ConfigError, match=r"TLS handshake with 127\.0\.0\.1 failed"):
            client.update_user("a@b.com", "email", {"first_name": "A"})
    finally:
        client.close()


def test_a_gzipped_answer_larger_than_one_read_is_decoded_whole_and_the_connection_kept() -> None:
    document = {"id": 1, "notes": "x" * 300_000}  # decodes to several of the transport's 64 KiB reads
    packed = gzip.compress(json.dumps(document).encode())

    def handler(index: int, sock: socket.socket) -> None:
        while _read_request(sock):
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                    f"Content-Length: {len(packed)}\r\n\r\n").encode()
            sock.sendall(head + packed)

    with raw_server(handler) as (port, accepted):
        client = _client(port)
        try:
            for user in ("a@b.com", "b@b.com"):
                assert client.update_user(user, "email", {"first_name": "A"}).data == document
            assert len(accepted) == 1  # read to its end, so the connection went back to the pool
        finally:
            client.close()
