"""Airbyte protocol plumbing that airbyte-cdk 7.x gets wrong for destinations.

Three CDK 7.39 pitfalls are fixed here (see docs/airbyte-protocol-notes.md §1.6):

(a) the platform adds an ``id`` to every state message and the CDK serializer drops it, so the
    platform fails with "State message does not contain id" — the patched models below keep it;
(b) ``Destination.run`` prints without flushing, so echoed states sit in the stdout buffer —
    :func:`emit` writes one whole line and flushes;
(c) a JSON line that is not a valid AirbyteMessage (an unknown ``type``) crashes the CDK parser —
    :func:`parse_messages` logs such lines once per type and skips them.

The same trick adds ``destinationStats.rejectedRecordCount`` (protocol 0.18.0), which the CDK's
models (protocol 0.17.1) lack.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import AirbyteMessage, AirbyteStateMessage, AirbyteStateStats, FailureType, Type
from airbyte_cdk.models.airbyte_protocol_serializers import AirbyteMessageSerializer, custom_type_resolver
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from serpyco_rs import SchemaValidationError, Serializer

from destination_crowdtwist.api.errors import CrowdTwistError

logger = logging.getLogger("airbyte")

_KNOWN_TYPES = frozenset(t.value for t in Type)


@dataclass
class StateStats(AirbyteStateStats):
    """State stats with the protocol 0.18 ``rejectedRecordCount``."""

    rejectedRecordCount: float | None = None


@dataclass
class PatchedAirbyteStateMessage(AirbyteStateMessage):
    """A state message that keeps the platform's checkpoint ``id``."""

    destinationStats: StateStats | None = None
    id: int | None = None


@dataclass
class PatchedAirbyteMessage(AirbyteMessage):
    """An AirbyteMessage whose state keeps ``id`` and ``rejectedRecordCount``."""

    state: PatchedAirbyteStateMessage | None = None


PatchedMessageSerializer: Serializer[PatchedAirbyteMessage] = Serializer(
    PatchedAirbyteMessage, omit_none=True, custom_type_resolver=custom_type_resolver
)


def load_message(obj: dict[str, Any]) -> PatchedAirbyteMessage:
    """Deserialize one message object (raises serpyco's SchemaValidationError when malformed)."""
    return PatchedMessageSerializer.load(obj)


def dump_message(message: AirbyteMessage) -> str:
    """Serialize a message to one JSON line (without the newline)."""
    if isinstance(message, PatchedAirbyteMessage):
        return orjson.dumps(PatchedMessageSerializer.dump(message)).decode()
    return orjson.dumps(AirbyteMessageSerializer.dump(message)).decode()


def emit(message: AirbyteMessage) -> None:
    """Write one protocol message to stdout as a single line, then flush.

    Log lines go through the CDK's PrintBuffer; flushing it first, under its lock, keeps log and
    protocol lines whole and in order even when worker threads are logging.
    """
    line = dump_message(message) + "\n"
    with PRINT_BUFFER.lock:
        PRINT_BUFFER.flush()
        sys.stdout.write(line)
        sys.stdout.flush()


def parse_messages(lines: Iterable[str]) -> Iterator[PatchedAirbyteMessage]:
    """Parse stdin lines into messages, skipping what a destination must ignore.

    Non-JSON lines, JSON that is not an object, unknown message types and malformed messages are
    skipped with one log line per kind (never one per line: a chatty source would flood the log).
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
            warn_once("not-json", "Skipping input lines that are not JSON (further ones are skipped silently).")
            continue
        if not isinstance(obj, dict):
            warn_once("not-object", "Skipping input lines that are not JSON objects.")
            continue
        msg_type = obj.get("type")
        if msg_type not in _KNOWN_TYPES:
            warn_once(f"type:{msg_type}", f"Skipping messages of unknown type {str(msg_type)[:40]!r}.")
            continue
        try:
            yield load_message(obj)
        except (SchemaValidationError, ValueError, TypeError) as exc:
            # Never log the line itself: a RECORD carries PII.
            warn_once(
                f"invalid:{msg_type}",
                f"Skipping malformed {msg_type} messages ({type(exc).__name__}); further ones are skipped silently.",
            )



def traced(error: CrowdTwistError) -> AirbyteTracedException:
    """The CDK exception that the entry point turns into an Airbyte TRACE message.

    The user-facing message is ``error.message``; the internal message adds the (redacted) context.
    Neither holds a secret because ``CrowdTwistError`` never stores one.
    """
    return AirbyteTracedException(
        internal_message=str(error),
        message=error.message,
        failure_type=FailureType(error.failure_type),
        exception=error,
    )
