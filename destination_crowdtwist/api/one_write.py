"""A request's head and its small body leave the connector in one write, not two.

urllib3's ``HTTPConnection.request`` hands the head (request line and headers) to the socket, then
the body in a second ``send``: two ``sendall`` calls per request, each a system call behind a
``poll`` (a socket with a timeout waits for room first), and each a release and re-acquisition of
the interpreter lock, which, with a couple of dozen worker threads, is a thread switch as often as
not. Of the eleven system calls a request made (strace), joining saves two (a ``sendto`` and its
``poll``); at zero latency it cut the connector's thread switches per row by about a fifth
(docs/performance.md, "Thread switches and system calls per row").
``http.client`` itself joins a bytes body to the head for the same reason (its ``_send_output``),
but urllib3 never passes it the body.

:class:`OneWriteRequest` is a connection mixin that does what ``http.client`` would have done: when
``request`` is given a bytes body of at most :data:`MAX_JOINED_BODY` bytes (not chunked), the head's
``send`` carries the body too, and the body's own ``send`` that follows is skipped. The bytes on the
wire are exactly the same, in the same order; only the number of writes changes. Anything else sent
meanwhile (a proxy's CONNECT when the first ``send`` opens the connection) goes out as before, ahead
of the joined write. A larger body keeps its own write (joining would copy it).

It relies on one thing urllib3 does not promise: that a bytes body is sent as that very object, in
one piece, right after the head. :data:`USABLE` checks it once, at import, with urllib3's own
``body_to_chunks``; with a urllib3 that splits or copies the body, nothing is joined (two writes, as
before), never a body sent twice.

:meth:`OneWriteRequest.request_plain` is that ``request`` for the one call the transport makes (a
bytes body or none, its own ``Accept-Encoding`` and ``User-Agent``, no framing headers of its own),
without urllib3's per-header layers: urllib3's ``putheader`` wrapper and ``http.client``'s encoding
and validation of every header on every request were most of a request's 20 us of head-building
(docs/performance.md, "An answer's headers and a request's head without the general layers"). The
request line and ``Host`` are still ``putrequest``'s (urllib3's, then ``http.client``'s: the method
and target checks, the connection's state); a header line is built by ``http.client``'s own
``putheader`` the first time its name and value are seen, and the same bytes are reused after
that; ``Content-Length`` is urllib3's (the body's length, or 0 for a method that expects a body);
then ``endheaders`` and the body, joined as above. The bytes on the wire are urllib3's, byte for
byte (``unit_tests/test_one_write.py`` compares them). Any other call goes to ``request``. It uses
``http.client``'s request buffer (``_buffer``), checked at import (:data:`PLAIN_USABLE`).
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any

from urllib3.util import SKIP_HEADER

__all__ = ["MAX_JOINED_BODY", "PLAIN_USABLE", "USABLE", "OneWriteRequest", "set_timeout"]

#: The largest body joined to its head (CrowdTwist bodies are a few hundred bytes; a record can be MBs).
#: At most urllib3's default block size, the size it would split a body into if it ever did.
MAX_JOINED_BODY = 16 * 1024


def _bodies_sent_whole() -> bool:
    """Whether urllib3 sends a bytes body as the same object, in one chunk (see the module docstring)."""
    try:
        from urllib3.util.request import body_to_chunks
    except ImportError:
        return False
    probe = b"x" * MAX_JOINED_BODY
    try:
        chunks = body_to_chunks(probe, method="PUT", blocksize=MAX_JOINED_BODY).chunks
    except Exception:  # noqa: BLE001 - any surprise means: do not join
        return False
    return isinstance(chunks, tuple) and len(chunks) == 1 and chunks[0] is probe


#: Whether heads and bodies are joined with the installed urllib3.
USABLE = _bodies_sent_whole()


def _joinable(body: Any) -> bytes | None:
    """The body to send in its head's write: a bytes body of 1 to :data:`MAX_JOINED_BODY` bytes, else None."""
    return body if isinstance(body, bytes) and 0 < len(body) <= MAX_JOINED_BODY else None


def set_timeout(sock: Any, timeout: float | None) -> None:
    """``sock.settimeout(timeout)`` unless the socket already has it: each settimeout is a system call,
    saved when a request is sent and its answer read under the same timeout (urllib3 sets the connect
    timeout before sending and the read timeout before reading; they are equal only when
    ``request_timeout_seconds`` is 10 s or less).
    """
    if sock.gettimeout() != timeout:
        sock.settimeout(timeout)


def _buffered_lines() -> bool:
    """Whether ``http.client`` collects a request's head lines in ``_buffer`` until ``endheaders``."""
    probe = http.client.HTTPConnection("localhost")
    try:
        probe.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
        probe.putheader("X", "1")
        lines: list[bytes] = probe._buffer  # type: ignore[attr-defined]
        return lines[-1:] == [b"X: 1"]
    except Exception:  # noqa: BLE001 - any surprise means: use urllib3's request
        return False
    finally:
        probe.close()


#: Whether :meth:`OneWriteRequest.request_plain` builds heads itself with this Python's http.client.
PLAIN_USABLE = _buffered_lines()

# urllib3 sends "Content-Length: 0" for a request without a body unless its method expects none.
_NO_BODY_METHODS = frozenset({"OPTIONS", "DELETE", "TRACE", "CONNECT", "GET", "HEAD"})

# Header lines as http.client's putheader built them, by (name, value): a connection sends the same
# few headers on every request. Bounded: a value that changes per request (an HMAC signature) is
# built by putheader each time and kept only while there is room.
_LINES: dict[tuple[str, str], bytes] = {}
_MAX_LINES = 256


def _is_plain_call(headers: Mapping[str, str], body: Any) -> bool:
    """Whether urllib3's request would send ``headers`` and ``body`` as :meth:`request_plain` does."""
    if body is not None and not isinstance(body, bytes):
        return False
    names = {name.lower() for name in headers}
    return ("accept-encoding" in names and "user-agent" in names and "host" not in names
            and "content-length" not in names and "transfer-encoding" not in names
            and SKIP_HEADER not in headers.values())


class OneWriteRequest:
    """Connection mixin (before urllib3's ``HTTPConnection``): head and small body in one ``send``."""

    # The body of the request being sent, while its head has not gone out yet (None: nothing to join),
    # and the body that went out with the head (its own send is then skipped).
    _join_body: bytes | None = None
    _joined_body: bytes | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        """urllib3's ``request``; a small bytes body goes out in the head's write."""
        # A Transfer-Encoding among the headers makes urllib3 send the body chunk-framed: never joined raw.
        join = USABLE and not kwargs.get("chunked") and not any(
            name.lower() == "transfer-encoding" for name in headers or ())
        self._join_body = _joinable(body) if join else None
        self._joined_body = None
        try:
            super().request(method, url, body=body, headers=headers, **kwargs)  # type: ignore[misc]
        finally:
            self._join_body = None
            self._joined_body = None

    def request_plain(self, method: str, target: str, body: bytes | None, headers: Mapping[str, str]) -> None:
        """``request(method, target, body=body, headers=headers, chunked=False)``: the same bytes on the
        wire, without urllib3's per-header layers (see the module docstring).
        """
        if not PLAIN_USABLE or not _is_plain_call(headers, body):
            self.request(method, target, body=body, headers=headers, chunked=False)
            return
        sock: Any = getattr(self, "sock", None)
        if sock is not None:  # urllib3 sets the (connect) timeout on a reused socket before sending
            set_timeout(sock, self.timeout)  # type: ignore[attr-defined]
        # The method check (urllib3), the state, target check, request line and Host (http.client).
        self.putrequest(method, target, skip_accept_encoding=True)  # type: ignore[attr-defined]
        buffer: list[bytes] = self._buffer  # type: ignore[attr-defined]
        if body is not None:
            buffer.append(b"Content-Length: %d" % len(body))
        elif method.upper() not in _NO_BODY_METHODS:
            buffer.append(b"Content-Length: 0")
        for name, value in headers.items():
            line = _LINES.get((name, value))
            if line is not None:
                buffer.append(line)
                continue
            self.putheader(name, value)  # type: ignore[attr-defined]
            if len(_LINES) < _MAX_LINES:
                _LINES[(name, value)] = buffer[-1]
        # Joined whatever USABLE says: that checks urllib3's sending of a body, and the body is sent below.
        self._join_body = _joinable(body)
        self._joined_body = None
        try:
            self.endheaders()  # type: ignore[attr-defined]
            if body:
                self.send(body)
        finally:
            self._join_body = None
            self._joined_body = None

    def send(self, data: Any) -> None:
        """``http.client``'s ``send``: the head takes the body with it; the body's own send is then skipped."""
        joined = self._joined_body
        if joined is not None and data is joined:
            # urllib3 hands over the very body object it was given: it already left with the head.
            self._joined_body = None
            return
        body = self._join_body
        if body is not None and isinstance(data, bytes):
            # The first send of request(): endheaders() passing the head. Cleared before sending, so a
            # send this one causes (connecting, a proxy's CONNECT) goes out on its own, first.
            self._join_body = None
            self._joined_body = body
            super().send(data + body)  # type: ignore[misc]
            return
        super().send(data)  # type: ignore[misc]
