"""parse_messages: one line at a time, bad lines become rejected rows with the stream they name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

import pytest
from airbyte_cdk.models import AirbyteMessage

from destination_crowdtwist.cdk_adapter import PatchedAirbyteMessage, load_message
from destination_crowdtwist.sync import protocol
from destination_crowdtwist.sync.protocol import BadInput, fd_lines


def parse_messages(lines: Iterable[bytes | str]) -> Iterator[AirbyteMessage | BadInput]:
    """What write's input goes through: the adapter's message models (they keep the state id)."""
    return protocol.parse_messages(lines, load_message)


def rec(data: object, stream: str = "users") -> bytes:
    return json.dumps({"type": "RECORD", "record": {"stream": stream, "emitted_at": 1, "data": data}}).encode()


@pytest.mark.parametrize(
    ("line", "needle", "stream"),
    [
        (b'{"type":"RECORD","record":{"stream":"users","data":{"n":"caf\xe9"}}}', "not valid UTF-8 (byte", "users"),
        (b"not json at all", "not JSON", None),
        (b'{"type":"RECORD","record":{"stream":"users","namespace":"crm","data":{"n":1}', "not JSON", "users"),
        (b"[1, 2]", "not an object", None),
        (rec("a string"), "data is not a JSON object", "users"),
        (rec(["a", "list"]), "data is not a JSON object", "users"),
        (json.dumps({"type": "RECORD", "record": {"data": {}}}).encode(), "no stream name", None),
        (json.dumps({"type": "RECORD"}).encode(), "no record object", None),
    ],
)
def test_unusable_lines_become_bad_input_with_their_stream(line: bytes, needle: str, stream: str | None) -> None:
    [bad] = list(parse_messages([line]))
    assert isinstance(bad, BadInput)
    assert bad.rejection.reason == "invalid_message"
    assert needle in bad.rejection.message
    assert bad.stream == stream
    assert "raw_line" in bad.data


def test_one_bad_byte_costs_one_line_not_its_neighbours() -> None:
    lines = [rec({"n": 1}), b'{"type":"RECORD","record":{"stream":"users","data":{"n":"\xff"}}}', rec({"n": 3})]
    parsed = list(parse_messages(lines))
    assert [type(m).__name__ for m in parsed] == ["PatchedAirbyteMessage", "BadInput", "PatchedAirbyteMessage"]
    third = parsed[2]
    assert isinstance(third, PatchedAirbyteMessage) and third.record is not None and third.record.data == {"n": 3}


def test_unknown_types_and_blank_lines_are_skipped_not_rejected() -> None:
    lines = [b"", b"   ", json.dumps({"type": "SOMETHING_NEW"}).encode(), rec({"n": 1})]
    parsed = list(parse_messages(lines))
    assert len(parsed) == 1 and isinstance(parsed[0], PatchedAirbyteMessage)


def test_the_line_kept_for_reject_sinks_is_capped() -> None:
    [bad] = list(parse_messages([b"x" * 10_000]))
    assert isinstance(bad, BadInput)
    assert len(bad.data["raw_line"]) == 2000


def test_text_lines_are_accepted_too() -> None:
    [msg] = list(parse_messages([rec({"n": 1}).decode()]))
    assert isinstance(msg, PatchedAirbyteMessage)


@pytest.mark.parametrize("as_text", [False, True])
def test_integers_beyond_64_bits_are_read_exactly(as_text: bool) -> None:
    data = {"event_id": 2**64 + 1, "low": -(2**63) - 1, "note": "1234567890123456789012", "f": 0.5}
    line = json.dumps({"type": "RECORD", "record": {"stream": "s", "emitted_at": 0, "data": data}})
    [message] = list(parse_messages([line if as_text else line.encode()]))
    assert isinstance(message, PatchedAirbyteMessage) and message.record is not None
    assert message.record.data == data  # orjson alone gives 1.8446744073709552e+19


def test_a_long_digit_run_does_not_let_nan_in() -> None:
    line = b'{"type": "RECORD", "record": {"stream": "s", "emitted_at": 0, "data": {"a": NaN, "b": 18446744073709551617}}}'
    [bad] = list(parse_messages([line]))
    assert isinstance(bad, BadInput)


def test_fd_lines_splits_a_descriptor_into_lines_across_reads() -> None:
    read_end, write_end = os.pipe()
    payload = b'{"a":1}\n\n' + b"x" * 50 + b"\n" + b"tail without newline"
    os.write(write_end, payload)
    os.close(write_end)
    try:
        # 7-byte reads: lines span several reads, and a read holds the ends of several lines.
        lines = list(fd_lines(read_end, chunk_size=7))
    finally:
        os.close(read_end)
    assert lines == [b'{"a":1}\n', b"\n", b"x" * 50 + b"\n", b"tail without newline"]
    assert b"".join(lines) == payload
