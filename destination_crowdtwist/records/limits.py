"""Size and nesting limits for one record, checked before any parsing that could recurse or blow up.

A record nested hundreds of levels deep makes ``json.dumps`` (and any recursive walk) raise
RecursionError, and a multi-megabyte record multiplies memory by the number of rows in flight. Both
are rejected up front, with a reason the user can act on, and the sync goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from destination_crowdtwist.records.rejection import Reason, Rejection


@dataclass(frozen=True)
class RecordLimits:
    """The largest record the connector takes: serialized bytes and nesting depth."""

    max_bytes: int = 1_000_000
    max_depth: int = 32


#: Exact types that are never a Mapping, list or tuple: a flat record's values.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def nesting_depth(value: Any, stop_above: int) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar is 0), counted without recursion.

    Stops counting once the depth exceeds ``stop_above`` (the answer is then ``stop_above + 1``), so
    a hostile value costs at most that many levels of work per branch.
    """
    if stop_above >= 1 and (type(value) is dict or isinstance(value, Mapping)):
        # Most records are flat: one pass over the top level, without the stack, settles them. A
        # value of an exact scalar type needs no isinstance against the Mapping ABC (which costs a
        # call into abc per field).
        for child in value.values():
            if type(child) in _SCALARS:
                continue
            if isinstance(child, Mapping | list | tuple):
                break
        else:
            return 1
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        if depth > stop_above:
            return stop_above + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


@dataclass(frozen=True)
class RecordCheck:
    """The verdict on one record: why it is refused (None if it is fine), its size, what sinks may keep.

    ``stored_data`` is what reject sinks receive for a refused record: the data itself, except for a
    record nested too deeply, which no recursive code (masking, JSON encoding) can walk safely; a
    note then stands in for it.
    """

    rejection: Rejection | None
    size: int
    stored_data: Mapping[str, Any]


def _json_size(data: Mapping[str, Any]) -> int:
    """Bytes of ``data`` as compact UTF-8 JSON.

    orjson first (every row pays this; the standard encoder was a tenth of a re-sync's CPU); the
    standard library for what orjson refuses (integers beyond 64 bits, keys that are not strings),
    which raises in turn for what is not JSON at all. Floats may differ in a digit of their exponent's
    spelling between the two: the size is an estimate either way.
    """
    try:
        return len(orjson.dumps(data, default=str))
    except orjson.JSONEncodeError:
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))


def check_record(data: Mapping[str, Any], limits: RecordLimits) -> RecordCheck:
    """Whether one record's data is within the limits, and its serialized size in bytes.

    The size is an estimate from compact JSON (the source may have sent more whitespace); it is what
    the pipeline counts against its in-flight byte budget.
    """
    depth = nesting_depth(data, limits.max_depth)
    if depth > limits.max_depth:
        rejection = Rejection(
            Reason.TOO_LARGE,
            f"the record nests objects or arrays more than {limits.max_depth} levels deep (max_nesting_depth); "
            "flatten it in the source or raise the limit",
        )
        note = {"_omitted": f"record nested more than {limits.max_depth} levels deep; fields: {sorted(data)[:50]}"}
        return RecordCheck(rejection, 0, note)
    try:
        size = _json_size(data)
    except (ValueError, TypeError, RecursionError):
        return RecordCheck(Rejection(Reason.INVALID_MESSAGE, "the record's data cannot be serialized as JSON"), 0,
                           {"_omitted": "record data not serializable as JSON"})
    if size > limits.max_bytes:
        rejection = Rejection(
            Reason.TOO_LARGE,
            f"the record is {size} bytes, more than max_record_bytes ({limits.max_bytes}); "
            "CrowdTwist fields are small: drop the large columns in the source or raise the limit",
        )
        return RecordCheck(rejection, size, data)
    return RecordCheck(None, size, data)
