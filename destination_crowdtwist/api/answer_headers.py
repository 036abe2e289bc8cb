"""An answer's header block parsed without the ``email`` package when every line is a plain one.

``http.client`` reads an answer's header lines itself and then hands them, joined, to
``email.parser``: a general RFC 5322 parser of generators, line buffers and policy objects that
is the largest single cost left in reading an answer (about a fifth of a request's CPU measured in
place, docs/performance.md, "An answer's headers and a request's head without the general
layers"). For the header blocks HTTP servers send, a name, a colon and a printable value on each
line, that parser's whole result is the list of ``(name, value)`` pairs, the value stripped of the
spaces after the colon and of the line end, and an empty payload.

:func:`parse_headers` is ``http.client.parse_headers`` with that shortcut: the lines are read by
``http.client``'s own ``_read_headers`` (its line-length and header-count limits unchanged), and
when every line is plain (:data:`PLAIN_LINE`: a token name, a colon, tabs and printable ASCII, CRLF
or LF) and no Content-Type names a ``message/`` or ``multipart/`` type (for which the ``email``
parser goes on to parse a body), the ``HTTPMessage`` is built with ``email.message``'s own
``set_raw`` and ``set_payload``. Any other block (a folded line, a line without a colon, a byte
outside ASCII, a bare CR, an envelope ``From`` line) goes to the ``email`` parser exactly as before,
so every defect it records is still recorded. ``unit_tests/test_answer_headers.py`` compares the two
object by object, on tricky blocks and on generated ones.

:class:`PlainHeadersResponse` is ``http.client.HTTPResponse`` whose ``begin`` is the standard
library's own code (not a copy) run with this ``parse_headers`` in its globals; the connection
classes of api/deadline.py use it. :data:`USABLE` checks once, at import, that ``begin`` still calls
``parse_headers`` and that ``_read_headers`` exists; with a Python where either changed, answers
are read by the unchanged ``HTTPResponse``.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import types
from typing import Any

__all__ = ["PLAIN_LINE", "USABLE", "PlainHeadersResponse", "parse_headers"]

#: A header line the ``email`` parser reads as exactly ``name: value``: the name is the characters
#: its ``headerRE`` allows in a name (no space, so never a ``From `` envelope line, and never a
#: continuation), then the colon; the value is tabs and printable ASCII only, so ``str.splitlines``
#: (which also breaks at \v, \f, \x1c-\x1e and \x85) cannot split it; the line ends with CRLF or LF.
PLAIN_LINE = re.compile(rb"[!-9;-~]+:[\t -~]*\r?\n")

# The Content-Type values after which the email parser parses a body (a message or its parts).
_BODY_TYPES = re.compile(r"\s*(message|multipart)", re.IGNORECASE)


def _email_parse(lines: list[bytes], message_class: Any) -> http.client.HTTPMessage:
    # What http.client.parse_headers does with the lines it read.
    text = b"".join(lines).decode("iso-8859-1")
    message: http.client.HTTPMessage = email.parser.Parser(_class=message_class).parsestr(text)
    return message


def parse_headers(fp: Any, _class: Any = http.client.HTTPMessage) -> http.client.HTTPMessage:
    """``http.client.parse_headers(fp, _class)``: the same message, built directly for a plain block."""
    lines: list[bytes] = http.client._read_headers(fp)  # type: ignore[attr-defined]
    if _class is not http.client.HTTPMessage or lines[-1] not in (b"\r\n", b"\n"):
        return _email_parse(lines, _class)
    message = http.client.HTTPMessage()  # dropped for the email parser's own at the first line that is not plain
    for line in lines[:-1]:
        if PLAIN_LINE.fullmatch(line) is None:
            return _email_parse(lines, _class)
        name, _, value = line.decode("ascii").partition(":")
        value = value.lstrip(" \t").rstrip("\r\n")
        if name.lower() == "content-type" and _BODY_TYPES.match(value):
            return _email_parse(lines, _class)
        message.set_raw(name, value)
    message.set_payload("")  # what the email parser leaves as the payload of a block without a body
    return message


def _plain_begin() -> Any:
    """``HTTPResponse.begin`` with :func:`parse_headers` in its globals, or None where that cannot hold."""
    begin = http.client.HTTPResponse.begin
    code = getattr(begin, "__code__", None)
    if code is None or "parse_headers" not in code.co_names or begin.__closure__:
        return None
    if not callable(getattr(http.client, "_read_headers", None)):
        return None
    # The standard library's own function, looking its globals up in a copy of http.client's globals
    # where parse_headers is ours: every other name (constants, exceptions, _read_headers) is the same
    # object, and _read_headers keeps reading http.client's live _MAXLINE and _MAXHEADERS.
    names = dict(vars(http.client))
    names["parse_headers"] = parse_headers
    function = types.FunctionType(code, names, begin.__name__, begin.__defaults__, begin.__closure__)
    function.__kwdefaults__ = begin.__kwdefaults__
    function.__qualname__ = begin.__qualname__
    function.__doc__ = begin.__doc__
    return function


_BEGIN = _plain_begin()

#: Whether :class:`PlainHeadersResponse` parses plain header blocks itself on this Python.
USABLE = _BEGIN is not None


class PlainHeadersResponse(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` reading a plain header block without the ``email`` parser."""

    if _BEGIN is not None:
        begin = _BEGIN
