"""api/plain_answer.py and pool_send's lean path: plain answers read straight from http.client.

A plain answer (one Content-Length, no Transfer-Encoding, no Content-Encoding) must read exactly as
urllib3's ``HTTPResponse`` reads it: the same bytes, the same exceptions when the connection breaks
or stalls mid-body, the connection back in the pool only after the last byte. Every other answer
must still be urllib3's. The servers are raw sockets (test_pool_send.py's) so that every byte and
every connection's fate is scripted.
"""

from __future__ import annotations

import gzip
import http.client
import io
import socket
import threading
from collections.abc import Callable

import pytest
import urllib3
from test_pool_send import OK_BODY, _client, _read_request, raw_server
from urllib3.util import Timeout

from destination_crowdtwist.api import pool_send
from destination_crowdtwist.api.errors import TransientError
from destination_crowdtwist.api.plain_answer import MessageHeaders, PlainAnswer, StreamedAnswer, is_plain
from destination_crowdtwist.api.pool_send import send
from destination_crowdtwist.api.response import ApiResponse

Script = Callable[[socket.socket], None]


def _head(*lines: str, status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    return (f"{version} {status}\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n").encode()


def _parsed(head: bytes, body: bytes = b"") -> http.client.HTTPResponse:
    """An http.client answer whose status line and headers are read (from bytes, no socket)."""

    class _Sock:
        def makefile(self, mode: str) -> io.BufferedReader:
            return io.BufferedReader(io.BytesIO(head + body))

    raw = http.client.HTTPResponse(_Sock(), method="PUT")  # type: ignore[arg-type]
    raw.begin()
    return raw


# -- which answers are plain -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "plain"),
    [
        (("Content-Type: application/json", "Content-Length: 9"), True),
        (("content-length: 0",), True),
        (("Content-Length: 9", "Content-Encoding: gzip"), False),
        (("Content-Length: 9", "Content-Encoding: identity"), False),
        (("Transfer-Encoding: chunked",), False),
        (("Content-Length: 9", "Transfer-Encoding: chunked"), False),
        (("Content-Length: 9", "Transfer-Encoding: identity"), False),
        (("Content-Length: 9", "Content-Length: 9"), False),
        (("Content-Length: 9", "Content-Length: 12"), False),
        (("Content-Length: 9, 9",), False),
        (("Content-Length: -1",), False),
        (("Content-Length: nine",), False),
        ((), False),  # read to the end of the connection
    ],
)
def test_only_one_content_length_and_no_coding_is_plain(lines: tuple[str, ...], plain: bool) -> None:
    assert is_plain(_parsed(_head(*lines))) is plain


def test_a_header_block_that_did_not_parse_is_not_plain() -> None:
    raw = _parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nthis is no header\r\n\r\n", b"{}")
    assert raw.msg.defects
    assert not is_plain(raw)


def test_message_headers_are_case_insensitive_and_read_only() -> None:
    headers = MessageHeaders(_parsed(_head("Content-Type: application/json", "Content-Length: 2")).msg)
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "application/json"
    assert "content-length" in headers and "Retry-After" not in headers and 3 not in headers
    assert headers.get("Retry-After") is None and headers.get("Retry-After", "x") == "x"
    with pytest.raises(KeyError):
        headers["Retry-After"]
    assert list(headers) == ["Content-Type", "Content-Length"] and len(headers) == 2
    answer = ApiResponse.from_body(200, headers, b"{}", request_line="PUT /x", endpoint="PUT /x", clean=str)
    assert answer.headers is headers  # already case-insensitive: not copied


# -- the same reading as urllib3's HTTPResponse --------------------------------------------------------


def _serve(script: Script) -> Callable[[int, socket.socket], None]:
    def handler(index: int, sock: socket.socket) -> None:
        if _read_request(sock):
            script(sock)

    return handler


def _stall_after(data: bytes) -> Script:
    def script(sock: socket.socket) -> None:
        sock.sendall(data)
        threading.Event().wait(1.0)

    return script


def _send_then_close(data: bytes) -> Script:
    def script(sock: socket.socket) -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_RDWR)

    return script


PACKED = gzip.compress(OK_BODY)
CHUNKED = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (OK_BODY[:4], OK_BODY[4:])) + b"0\r\n\r\n"
SCRIPTS: dict[str, Script] = {
    "plain": _send_then_close(_head("Content-Type: application/json", f"Content-Length: {len(OK_BODY)}") + OK_BODY),
    "plain, empty": _send_then_close(_head("Content-Length: 0")),
    "no content": _send_then_close(_head(status="204 No Content")),
    "cut mid-body": _send_then_close(_head(f"Content-Length: {len(OK_BODY)}") + OK_BODY[:3]),
    "stalls mid-body": _stall_after(_head(f"Content-Length: {len(OK_BODY)}") + OK_BODY[:3]),
    "Connection: close": _send_then_close(_head(f"Content-Length: {len(OK_BODY)}", "Connection: close") + OK_BODY),
    "gzip": _send_then_close(_head(f"Content-Length: {len(PACKED)}", "Content-Encoding: gzip") + PACKED),
    "chunked": _send_then_close(_head("Transfer-Encoding: chunked") + CHUNKED),
    "to the end of the connection": _send_then_close(_head(version="HTTP/1.0") + OK_BODY),
    "two equal lengths": _send_then_close(_head(f"Content-Length: {len(OK_BODY)}", f"Content-Length: {len(OK_BODY)}")
                                          + OK_BODY),
    "two lengths that differ": _send_then_close(_head(f"Content-Length: {len(OK_BODY)}", "Content-Length: 3")
                                                + OK_BODY),
}


def _outcome(call: Callable[[urllib3.HTTPConnectionPool], StreamedAnswer], port: int) -> tuple[object, ...]:
    """(status, body, Content-Type) read in 64 KiB read1s as the transport reads; or the exception's types."""
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=False, retries=False)
    try:
        response = call(pool)
        try:
            chunks = []
            while chunk := response.read1(65536, decode_content=True):
                chunks.append(chunk)
            return response.status, b"".join(chunks), response.headers.get("content-type")
        finally:
            response.close()
            response.release_conn()
    except Exception as exc:  # the types are what is compared
        return type(exc), *(type(arg) for arg in exc.args)
    finally:
        pool.close()


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_answer_reads_as_urlopen_reads_it(name: str) -> None:
    timeout = Timeout(connect=1.0, read=0.3)

    def by_send(pool: urllib3.HTTPConnectionPool) -> StreamedAnswer:
        return send(pool, "PUT", "/v2/x?a=b", b"{}", {"Content-Type": "application/json"}, timeout)

    def by_urlopen(pool: urllib3.HTTPConnectionPool) -> urllib3.BaseHTTPResponse:
        return pool.urlopen("PUT", "/v2/x?a=b", body=b"{}", headers={"Content-Type": "application/json"},
                            retries=False, redirect=False, timeout=timeout, preload_content=False)

    with raw_server(_serve(SCRIPTS[name])) as (port, _):
        ours = _outcome(by_send, port)
    with raw_server(_serve(SCRIPTS[name])) as (port, _):
        theirs = _outcome(by_urlopen, port)
    assert ours == theirs


@pytest.mark.parametrize(("name", "plain"), [("plain", True), ("chunked", False), ("gzip", False)])
def test_plain_answers_skip_urllib3s_response_and_others_keep_it(name: str, plain: bool) -> None:
    with raw_server(_serve(SCRIPTS[name])) as (port, _):
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, block=False, retries=False)
        response = send(pool, "PUT", "/v2/x", b"{}", {}, Timeout(connect=1.0, read=1.0))
        try:
            assert isinstance(response, PlainAnswer) is plain
            assert isinstance(response, urllib3.HTTPResponse) is not plain
        finally:
            response.close()
            response.release_conn()
            pool.close()


# -- the connection: kept only after the last byte -------------------------------------------------------


def _keep_alive(parts: list[bytes]) -> Callable[[int, socket.socket], None]:
    """Answers every request, on any connection, with the next of ``parts`` (the last one repeats)."""
    sent: list[int] = []

    def handler(index: int, sock: socket.socket) -> None:
        while _read_request(sock):
            sock.sendall(parts[min(len(sent), len(parts) - 1)])
            sent.append(index)

    return handler


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "urllib3's _make_request"])
def test_a_plain_answer_read_whole_gives_its_connection_back(lean: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_send, "LEAN", lean)
    plain = _head("Content-Type: application/json", f"Content-Length: {len(OK_BODY)}") + OK_BODY
    with raw_server(_keep_alive([plain])) as (port, accepted):
        client = _client(port)
        try:
            for user in ("a@b.com", "b@b.com", "c@b.com"):
                answer = client.update_user(user, "email", {"first_name": "A"})
                assert answer.ok and answer.data == {"id": 1}
            assert len(accepted) == 1  # one kept-alive connection carried all three
        finally:
            client.close()


def test_an_answer_closed_before_its_last_byte_never_serves_the_next_request() -> None:
    # The first answer promises more bytes than the client will read (its body is over the size cap): the
    # connection is dropped, not given back with the rest of that body still to come.
    big = _head(f"Content-Length: {2_000_000}") + b"x" * 100
    plain = _head(f"Content-Length: {len(OK_BODY)}") + OK_BODY
    with raw_server(_keep_alive([big, plain])) as (port, accepted):
        client = _client(port)
        try:
            with pytest.raises(TransientError, match="larger than"):
                client.update_user("a@b.com", "email", {"first_name": "A"})
            assert client.update_user("b@b.com", "email", {"first_name": "B"}).data == {"id": 1}
            assert len(accepted) == 2
        finally:
            client.close()


def test_the_lean_path_is_on_with_the_installed_urllib3() -> None:
    # setup.py pins urllib3 2; if this fails after an upgrade, every answer goes through urllib3 (slower, correct).
    assert pool_send.LEAN
