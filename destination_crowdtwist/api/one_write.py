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
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_JOINED_BODY", "USABLE", "OneWriteRequest"]

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


class OneWriteRequest:
    """Connection mixin (before urllib3's ``HTTPConnection``): head and small body in one ``send``."""

    # The body of the request being sent, while its head has not gone out yet (None: nothing to join),
    # and the body that went out with the head (its own send is then skipped).
    _join_body: bytes | None = None
    _joined_body: bytes | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        """urllib3's ``request``; a small bytes body goes out in the head's write."""
        join = (USABLE and isinstance(body, bytes) and 0 < len(body) <= MAX_JOINED_BODY
                and not kwargs.get("chunked"))
        self._join_body = body if join else None
        self._joined_body = None
        try:
            super().request(method, url, body=body, headers=headers, **kwargs)  # type: ignore[misc]
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
