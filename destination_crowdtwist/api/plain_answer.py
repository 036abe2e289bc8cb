"""An answer read straight from ``http.client`` when there is nothing for urllib3 to decode.

urllib3 wraps every ``http.client`` answer in its own ``HTTPResponse``: it checks the header parse,
copies every header into an ``HTTPHeaderDict``, sets up content decoders and reads the body through
its error-translating layers. That wrapping and its reads were about a sixth of the client's Python
calls per request (907 -> 765; docs/performance.md, "Answers read straight from http.client"), and for
the answers CrowdTwist's endpoints send (a small JSON document with a Content-Length, no content
coding) none of it does anything: there is nothing to decode and the length alone says where the
body ends.

:func:`is_plain` tells such an answer apart, strictly: one ``Content-Length`` header that
``http.client`` parsed, no ``Transfer-Encoding``, no ``Content-Encoding`` (not even ``identity``) and
no header-parsing defect. Anything else (gzip, chunked, a body read to the end of the connection,
two Content-Lengths, a malformed header) goes through urllib3's ``HTTPResponse`` as before
(api/pool_send.py). :class:`PlainAnswer` reads a plain answer with what urllib3 would have done for
it: the body ends exactly at its Content-Length (a connection that ends before raises what urllib3
raises with ``enforce_content_length``), socket errors become urllib3's exceptions, the connection
goes back to its pool only once every byte was read, and closing it before then drops the
connection, so a half-read answer never reaches the next request.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from urllib3.connection import BaseSSLError
from urllib3.exceptions import IncompleteRead, ProtocolError, ReadTimeoutError, SSLError

__all__ = ["MessageHeaders", "PlainAnswer", "StreamedAnswer", "is_plain"]


class StreamedAnswer(Protocol):
    """What the transport reads of an answer: urllib3's ``BaseHTTPResponse`` or a :class:`PlainAnswer`."""

    @property
    def status(self) -> int:
        """The status code."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers, case-insensitive."""

    @property
    def length_remaining(self) -> int | None:
        """Body bytes still to come by the Content-Length (None without one)."""

    @property
    def closed(self) -> bool:
        """Whether the body's stream is closed (read to its end, or closed)."""

    def read1(self, amt: int | None = None, *, decode_content: bool | None = None) -> bytes:
        """At most ``amt`` body bytes from one read; b"" at the end of the body."""

    def close(self) -> None:
        """Close the stream; a connection still held is closed with it."""

    def release_conn(self) -> None:
        """Give the connection still held back to its pool."""


class MessageHeaders(Mapping[str, str]):
    """``http.client``'s parsed headers as a read-only, case-insensitive mapping, without a copy.

    A name given twice reads as its first value (``http.client``'s own reading); a plain answer has
    only one Content-Length (see :func:`is_plain`).
    """

    __slots__ = ("_message",)

    def __init__(self, message: http.client.HTTPMessage) -> None:
        self._message = message

    def __getitem__(self, name: str) -> str:
        value = self._message.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name`` (any case), else ``default``."""
        value = self._message.get(name)
        return default if value is None else str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._message

    def __iter__(self) -> Iterator[str]:
        return iter(self._message.keys())

    def __len__(self) -> int:
        return len(self._message)

    def __repr__(self) -> str:
        return f"MessageHeaders({dict(self._message.items())!r})"


def is_plain(raw: http.client.HTTPResponse) -> bool:
    """Whether ``raw`` (status line and headers read) has exactly one Content-Length and no coding.

    ``http.client`` has already parsed the length (``raw.length``: None when it is missing, invalid
    or negative) and whether the body is chunked; the header names are checked once more here so
    that a second Content-Length, a Transfer-Encoding of any kind or a Content-Encoding of any kind
    leaves the answer to urllib3.
    """
    if raw.length is None or raw.chunked:
        return False
    message = raw.msg
    if message.defects:
        return False  # a header line that did not parse: urllib3 logs it
    names = [name.lower() for name in message]
    return names.count("content-length") == 1 and "transfer-encoding" not in names and "content-encoding" not in names


class PlainAnswer:
    """A plain answer (:func:`is_plain`) and the connection it came on, read as urllib3 would read it.

    Args:
        raw: the ``http.client`` answer, its status line and headers read.
        conn: the urllib3 connection it arrived on (given back to ``pool`` once the body is read).
        pool: the connection's pool (its ``_put_conn``, and the pool a read timeout names).
    """

    __slots__ = ("_conn", "_length", "_pool", "_raw", "headers", "length_remaining", "status")

    def __init__(self, raw: http.client.HTTPResponse, conn: Any, pool: Any) -> None:
        self._raw = raw
        self._conn = conn
        self._pool = pool
        self.status: int = raw.status
        self.headers = MessageHeaders(raw.msg)
        self._length: int = raw.length or 0
        self.length_remaining = self._length

    @property
    def closed(self) -> bool:
        """Whether the body's stream is closed (every byte read, or closed early)."""
        return self._raw.isclosed()

    def read1(self, amt: int | None = None, *, decode_content: bool | None = None) -> bytes:
        """Up to ``amt`` bytes of the body; b"" once the Content-Length is read.

        ``decode_content`` is accepted for urllib3's signature: a plain answer has nothing to decode.
        """
        remaining = self.length_remaining
        if remaining <= 0:
            self._done()
            return b""
        want = remaining if amt is None or amt < 0 else min(amt, remaining)
        try:
            data = self._raw.read(want)
        except TimeoutError as exc:  # socket.timeout
            raise ReadTimeoutError(self._pool, None, "Read timed out.") from exc
        except BaseSSLError as exc:
            raise SSLError(exc) from exc
        except (http.client.HTTPException, OSError) as exc:
            raise ProtocolError(f"Connection broken: {exc!r}", exc) from exc
        if not data:
            # The connection ended before the Content-Length: what urllib3 raises with enforce_content_length.
            partial = IncompleteRead(self._length - remaining, remaining)
            raise ProtocolError(f"Connection broken: {partial!r}", partial)
        remaining -= len(data)
        self.length_remaining = remaining
        if remaining == 0:
            self._done()
        return data

    def _done(self) -> None:
        # Every byte of the body read: the connection may carry the next request (urllib3 does the same).
        self._raw.close()
        self.release_conn()

    def close(self) -> None:
        """Close the answer; a connection still held (the body not read to its end) is closed too."""
        self._raw.close()
        if self._conn is not None:
            self._conn.close()

    def release_conn(self) -> None:
        """Give the connection back to its pool (closed if :meth:`close` came first)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._put_conn(conn)
