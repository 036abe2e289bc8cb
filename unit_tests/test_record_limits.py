"""records/limits.py: a record's size and depth, checked before any parsing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

from destination_crowdtwist.records.limits import RecordLimits, check_record, nesting_depth
from destination_crowdtwist.records.rejection import Reason


def compact(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))


@pytest.mark.parametrize("data", [
    {"user_id": "ann@example.com", "first_name": "Zoë", "points": 12, "tags": ["a", "b"], "x": None, "ok": True},
    {"event_id": 123456789012345678901234567890, "user_id": "a"},  # beyond 64 bits: the standard encoder
    {"nested": {"deep": [{"a": "ü" * 10}]}, "n": -5, "f": 2.5},
])
def test_the_size_is_the_compact_json_bytes(data: dict[str, Any]) -> None:
    check = check_record(data, RecordLimits())
    assert check.rejection is None
    assert check.size == compact(data)


def test_a_record_above_max_bytes_is_refused_with_its_size() -> None:
    data = {"user_id": "a", "blob": "x" * 200}
    check = check_record(data, RecordLimits(max_bytes=100))
    assert check.rejection is not None and check.rejection.reason is Reason.TOO_LARGE
    assert str(compact(data)) in check.rejection.message


def test_a_record_nested_too_deeply_is_refused_without_being_serialized() -> None:
    data: dict[str, Any] = {"user_id": "a"}
    node = data
    for _ in range(40):
        node["n"] = {}
        node = node["n"]
    check = check_record(data, RecordLimits(max_depth=32))
    assert check.rejection is not None and check.rejection.reason is Reason.TOO_LARGE
    assert "_omitted" in check.stored_data
    assert nesting_depth(data, 32) == 33


@pytest.mark.parametrize(("value", "depth"), [
    ({}, 1), ({"a": 1, "b": "x"}, 1), ({"a": [1]}, 2), ({"a": {"b": {"c": []}}}, 4), ([{"a": 1}], 2), ("x", 0),
    ({"a": ()}, 2),
])
def test_nesting_depth_counts_objects_and_arrays(value: Any, depth: int) -> None:
    assert nesting_depth(value, 32) == depth


def test_nesting_depth_stops_counting_above_the_limit() -> None:
    assert nesting_depth({"a": 1}, 0) == 1  # a flat record is still one level: above a limit of 0
    assert nesting_depth({"a": {"b": {"c": 1}}}, 1) == 2


def reference_nesting_depth(value: Any, stop_above: int) -> int:
    """The definition, written recursively (unlike nesting_depth's stack and its flat-record shortcut):
    every object or array adds a level to its deepest child; the count stops at ``stop_above + 1``."""
    def depth(node: Any) -> int:
        if isinstance(node, Mapping):
            children: list[Any] = list(node.values())
        elif isinstance(node, list | tuple):
            children = list(node)
        else:
            return 0
        return 1 + max((depth(child) for child in children), default=0)

    return min(depth(value), stop_above + 1)


class Text(str):
    pass


class Items(list[Any]):
    pass


@pytest.mark.parametrize("value", [
    {}, {"a": 1, "b": "x", "c": 1.5, "d": True, "e": None}, {"a": Text("x")}, {"a": Items()}, {"a": Items([{}])},
    {"a": ()}, {"a": MappingProxyType({})}, MappingProxyType({"a": 1}), MappingProxyType({"a": [1]}),
    {"a": b"bytes", "b": 10**30, "c": Decimal("1.5")}, {"a": "x", "b": [1, [2, [3]]]}, [], "x", 7, None,
    {"a": {"b": {"c": {}}}, "d": 1},
])
@pytest.mark.parametrize("stop_above", [0, 1, 2, 32])
def test_nesting_depth_answers_as_the_definition_does_with_or_without_the_flat_record_shortcut(value: Any, stop_above: int) -> None:
    assert nesting_depth(value, stop_above) == reference_nesting_depth(value, stop_above)
