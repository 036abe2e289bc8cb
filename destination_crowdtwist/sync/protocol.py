"""Reading the Airbyte input, and the CDK's traced errors.

:func:`fd_lines` reads standard input as bytes from its descriptor and :func:`parse_messages` turns
each line into a message or a :class:`BadInput` rejected row; :func:`traced` turns a ``CrowdTwistError``
into the CDK's traced exception. They replace the CDK's own input reading, which gets destinations
wrong: ``cdk_adapter.py`` lists those gaps (see docs/airbyte-protocol-notes.md §1.6) and supplies the
message models that keep what the CDK's drop (the state ``id``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from airbyte_cdk.models import AirbyteMessage, FailureType, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_crowdtwist.api.errors import CrowdTwistError
from destination_crowdtwist.records.rejection import Reason, Rejection

logger = logging.getLogger("airbyte")

_KNOWN_TYPES = frozenset(t.value for t in Type)

# orjson reads an integer beyond 64 bits as a float, so two event ids that differ past the 17th
# digit would become one dedupe key (and one credit). A line with a run of 19 or more digits is parsed
# again by the standard library, which keeps every integer exact; a false alarm (a long digit run in a
# string, a long decimal) costs only that second parse and gives the same values.
_LONG_DIGITS = re.compile(r"\d{19,}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19,}")


#: Bytes asked for per read of the input (:func:`fd_lines`).
_INPUT_CHUNK = 64 * 1024


def fd_lines(fd: int, chunk_size: int = _INPUT_CHUNK) -> Iterator[bytes]:
    """The lines of a file descriptor (each with its newline, the last one maybe without), read with
    ``os.read``.

    Not ``sys.stdin.buffer``: its reader holds the buffer's lock while it blocks in a read, and the
    reader thread of ``write`` is blocked there whenever the source is quiet. When the sync stops
    early (a config error mid-sync, SIGTERM) while the source is still connected, interpreter
    finalization then closes stdin, cannot take that lock, and aborts the process ("Fatal Python
    error: _enter_buffered_busy ... <no Python frame>", SIGABRT) instead of exiting with the
    sync's error. A raw read holds no lock.
    """
    parts: list[bytes] = []  # an unfinished line, in pieces (a long line costs no quadratic joins)
    while True:
        chunk = os.read(fd, chunk_size)
        if not chunk:
            if parts:
                yield b"".join(parts)
            return
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end + 1]
            if parts:
                parts.append(piece)
                yield b"".join(parts)
                parts = []
            else:
                yield piece
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:])


#: How much of an unusable input line is kept for the reject sinks (the rest is cut).
BAD_LINE_PREVIEW_CHARS = 2000


@dataclass(frozen=True)
class BadInput:
    """An input line that should have been a RECORD but cannot be used: it becomes a rejected row.

    ``stream``/``namespace`` are set when the line says which stream it belongs to; ``data`` is
    what the reject sinks keep (the record's data when there is one, else a preview of the line).
    """

    rejection: Rejection
    stream: str | None
    namespace: str | None
    data: dict[str, Any]


# A line that could not be parsed may still say which stream it belongs to; counting it in that
# stream keeps the state's counts equal to the platform's (which counted the record there).
_STREAM_FIELD = re.compile(r'"stream"\s*:\s*"((?:[^"\\]|\\.){1,500})"')
_NAMESPACE_FIELD = re.compile(r'"namespace"\s*:\s*"((?:[^"\\]|\\.){1,500})"')


def _bad(message: str, raw: bytes | str, obj: Any = None) -> BadInput:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    record = obj.get("record") if isinstance(obj, dict) else None
    if isinstance(record, dict):
        stream, namespace = record.get("stream"), record.get("namespace")
    elif obj is None and '"RECORD"' in text[:200]:
        found, ns = _STREAM_FIELD.search(text), _NAMESPACE_FIELD.search(text)
        stream = _json_string(found.group(1)) if found else None
        namespace = _json_string(ns.group(1)) if ns else None
    else:
        stream = namespace = None
    return BadInput(
        Rejection(Reason.INVALID_MESSAGE, message),
        stream if isinstance(stream, str) else None,
        namespace if isinstance(namespace, str) else None,
        {"raw_line": text.rstrip("\n")[:BAD_LINE_PREVIEW_CHARS]},
    )


def _json_string(escaped: str) -> str | None:
    try:
        value = orjson.loads(f'"{escaped}"')
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def parse_messages(
    lines: Iterable[bytes | str], load: Callable[[dict[str, Any]], AirbyteMessage]
) -> Iterator[AirbyteMessage | BadInput]:
    """Parse stdin lines, one line at a time, into messages or :class:`BadInput` rejected rows.

    ``load`` builds a message from a JSON object and raises ``ValueError`` or ``TypeError`` when it is
    malformed (``cdk_adapter.load_message``: the CDK's models, keeping the state ``id``).

    Each line is decoded on its own, so one bad byte costs one row, never the rest of a buffer. A
    line that is not UTF-8, not JSON, not a JSON object, or a RECORD without a stream or with data
    that is not an object is a rejected row (counted in the next state's stats). Messages of an
    unknown ``type`` and malformed non-RECORD messages are skipped, as the protocol asks, with one
    log line per kind (never one per line: a chatty source would flood the log). Lines are never
    logged: a RECORD carries PII.
    """
    warned: set[str] = set()

    def warn_once(kind: str, text: str) -> None:
        if kind not in warned:
            warned.add(kind)
            logger.warning(text)

    for line in lines:
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield _unparseable(line)
            continue
        obj = _with_exact_integers(line, obj)
        if not isinstance(obj, dict):
            yield _bad("the input line is JSON but not an Airbyte message (not an object)", line)
            continue
        msg_type = obj.get("type")
        if msg_type not in _KNOWN_TYPES:
            warn_once(f"type:{msg_type}", f"Skipping messages of unknown type {str(msg_type)[:40]!r}.")
            continue
        if msg_type == "RECORD":
            problem = _record_problem(obj.get("record"))
            if problem is not None:
                yield _bad(problem, line, obj)
                continue
        try:
            yield load(obj)
        except (ValueError, TypeError) as exc:  # serpyco's SchemaValidationError is a ValueError
            if msg_type == "RECORD":
                yield _bad(f"the RECORD message is malformed ({type(exc).__name__})", line, obj)
                continue
            warn_once(
                f"invalid:{msg_type}",
                f"Skipping malformed {msg_type} messages ({type(exc).__name__}); further ones are skipped silently.",
            )


def _with_exact_integers(line: bytes | str, parsed: Any) -> Any:
    """``parsed`` again with integers beyond 64 bits kept exact, when the line may hold one."""
    found = _LONG_DIGITS_BYTES.search(line) if isinstance(line, bytes) else _LONG_DIGITS.search(line)
    if found is None:
        return parsed
    try:
        return json.loads(line, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return parsed  # orjson's reading stands (the standard parser nests less deep)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: orjson refuses them too


def _unparseable(line: bytes | str) -> BadInput:
    """The rejected row for a line that is not JSON, saying whether its bytes were even UTF-8."""
    if isinstance(line, bytes):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _bad(f"the input line is not valid UTF-8 (byte {exc.start})", line)
    return _bad("the input line is not JSON (or nests deeper than 1024 levels)", line)


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "the RECORD message has no record object"
    if not isinstance(record.get("stream"), str) or not record["stream"]:
        return "the RECORD has no stream name"
    if not isinstance(record.get("data"), dict):
        return "the RECORD's data is not a JSON object"
    return None


def traced(error: CrowdTwistError, *, message: str | None = None) -> AirbyteTracedException:
    """The CDK exception that the entry point turns into an Airbyte TRACE message.

    The user-facing message is ``message`` when given, else ``error.message``; the internal message
    adds the (redacted) context. Neither holds a secret because ``CrowdTwistError`` never stores one.
    """
    return AirbyteTracedException(
        internal_message=str(error),
        message=error.message if message is None else message,
        failure_type=FailureType(error.failure_type),
        exception=error,
    )
