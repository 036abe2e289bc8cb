"""api/answer_headers.py: a plain header block parsed without the email package, the same message."""

from __future__ import annotations

import http.client
import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_crowdtwist.api import answer_headers
from destination_crowdtwist.api.answer_headers import PlainHeadersResponse, parse_headers


def state(message: http.client.HTTPMessage) -> dict[str, Any]:
    """Everything a parsed message holds; defects compared by type and text (they have no __eq__)."""
    fields = dict(vars(message))
    fields["defects"] = [(type(d), str(d)) for d in message.defects]
    if isinstance(fields["_payload"], list):  # a message/* or multipart/* body: its parts, compared alike
        fields["_payload"] = [state(part) for part in fields["_payload"]]
    return {"type": type(message), **fields}


def both(block: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    return state(parse_headers(io.BytesIO(block))), state(http.client.parse_headers(io.BytesIO(block)))


SANDBOX = (b"Server: BaseHTTP/0.6 Python/3.11.7\r\nDate: Mon, 07 Dec 2026 06:40:00 GMT\r\n"
           b"Content-Type: application/json\r\nContent-Length: 120\r\nConnection: keep-alive\r\n\r\n")


@pytest.mark.parametrize("block", [
    SANDBOX,
    b"\r\n",                                              # no headers at all
    b"X-A: 1\nX-B: 2\n\n",                                # LF line ends
    b"X-A: 1\r\nX-B: 2\n\r\n",                            # mixed
    b"X-Empty:\r\nX-Spaces:    \r\n\r\n",                 # empty values
    b"X-Trail: value   \r\n\r\n",                         # trailing spaces are kept
    b"X-Tab:\tvalue\t\r\n\r\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",        # a name twice
    b"X-Colons: a:b:c\r\n\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",  # the email parser goes on to a body
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: multipart\r\n\r\n",                     # no slash: text/plain to email
    b"X-Folded: a\r\n b\r\n\r\n",                          # a continuation line
    b" X-Leading: a\r\nX-B: 1\r\n\r\n",                    # the first line a continuation
    b"X-A: 1\r\nNo colon here\r\nX-B: 2\r\n\r\n",          # the rest becomes body, with a defect
    b": no name\r\n\r\n",
    b"X-A : 1\r\n\r\n",                                    # a space before the colon
    b"From nobody\r\nX-A: 1\r\n\r\n",                      # an envelope line
    b"X-A: 1\r\nFrom nobody\r\nX-B: 2\r\n\r\n",
    b"X-Latin: caf\xe9\r\n\r\n",                           # a byte outside ASCII
    b"X-NEL: a\x85b\r\n\r\n",                              # a line break to str.splitlines
    b"X-VT: a\x0bb\r\n\r\n",
    b"X-CR: a\rb\r\n\r\n",                                 # a bare CR
    b"X-A: 1\r\n",                                         # the connection ended before the blank line
    b"X-A: 1\r\nX-B: 2",
])
def test_the_same_message_as_http_client(block: bytes) -> None:
    ours, stdlib = both(block)
    assert ours == stdlib


def test_a_plain_block_skips_the_email_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = answer_headers._email_parse

    def counted(*args: Any) -> http.client.HTTPMessage:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(answer_headers, "_email_parse", counted)
    message = parse_headers(io.BytesIO(SANDBOX))
    assert calls == []
    assert message["content-length"] == "120" and message.get_content_type() == "application/json"
    parse_headers(io.BytesIO(b"X-Folded: a\r\n b\r\n\r\n"))
    assert calls == [1]


LINE_PARTS = st.sampled_from([
    b"X-A", b"Content-Type", b"content-length", b"From", b" ", b"\t", b":", b": ", b"1", b"v a l",
    b"multipart/x", b"message/y", b"\r", b"\n", b"\r\n", b"\xe9", b"\x85", b"\x0b", b"\x00", b"=",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(LINE_PARTS, max_size=6).map(b"".join), max_size=6))
def test_generated_blocks_parse_alike(lines: list[bytes]) -> None:
    # Each generated line is ended as http.client reads it; its own CR/LF pieces split it further.
    block = b"".join(line + b"\r\n" for line in lines if b"\n" not in line) + b"\r\n"
    ours, stdlib = both(block)
    assert ours == stdlib


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(rb"\A[!-9;-~]{1,12}\Z"), st.from_regex(rb"\A[\t -~]{0,20}\Z")), max_size=8))
def test_generated_plain_blocks_parse_alike(fields: list[tuple[bytes, bytes]]) -> None:
    block = b"".join(name + b":" + value + b"\r\n" for name, value in fields) + b"\r\n"
    ours, stdlib = both(block)
    assert ours == stdlib


def test_the_limits_of_http_client_still_apply() -> None:
    with pytest.raises(http.client.LineTooLong):
        parse_headers(io.BytesIO(b"X-A: " + b"a" * 70_000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="got more than 100 headers"):
        parse_headers(io.BytesIO(b"X-A: 1\r\n" * 101 + b"\r\n"))


class FakeSocket:
    """What HTTPResponse reads an answer from: ``makefile`` over fixed bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))


def read_answer(cls: type[http.client.HTTPResponse], data: bytes) -> dict[str, Any]:
    response = cls(FakeSocket(data), method="PUT")  # type: ignore[arg-type]
    response.begin()
    seen = {name: getattr(response, name) for name in ("status", "reason", "version", "length", "chunked", "will_close")}
    return {**seen, "msg": state(response.msg), "body": response.read()}


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\n" + SANDBOX + b'{"id": 1}' + b" " * 111,
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    b"HTTP/1.0 429 Too Many Requests\r\nRetry-After: 1\r\n\r\nslow down",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 502 Bad Gateway\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
])
def test_the_response_reads_answers_as_http_client_does(data: bytes) -> None:
    assert read_answer(PlainHeadersResponse, data) == read_answer(http.client.HTTPResponse, data)


def test_the_begin_probe_matches_this_python() -> None:
    assert answer_headers.USABLE is True
    assert PlainHeadersResponse.begin is not http.client.HTTPResponse.begin
    assert PlainHeadersResponse.begin.__code__ is http.client.HTTPResponse.begin.__code__  # the stdlib's own code


def test_a_begin_that_no_longer_calls_parse_headers_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def begin(self: Any) -> None:
        """A future Python's begin, reading headers some other way."""

    monkeypatch.setattr(http.client.HTTPResponse, "begin", begin)
    assert answer_headers._plain_begin() is None
