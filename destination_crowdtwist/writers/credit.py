"""An Activity Credit row parsed into a credit request, with its dedupe key (pure, no request).

:meth:`CreditParser.parse` is the one call the writer makes for a row: field_mapping, the member's
identifier (the same rules, and so the same member key, as User Profile rows), the activity (the
row's, else ``default_activity_id``; it must be active), the points (whole, bounded by
``max_points_per_credit``, negative only with ``allow_negative_points``), the date, ``extra_data``,
and the dedupe key (:func:`dedupe_key`). A row that cannot be credited raises its ``Rejection``.

Fields that are not credit fields are not sent; the parser notes them per stream, and the writer
lists them once when the sync ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.coercion import to_epoch_seconds
from destination_crowdtwist.records.mapping import (
    MappingOptions,
    apply_field_mapping,
    normalise_user_id,
    rules_for_stream,
)
from destination_crowdtwist.records.masking import mask_key_path
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.records.rejection import value as quoted_value
from destination_crowdtwist.writers.base import Row, StreamContext
from destination_crowdtwist.writers.ledger import event_key

#: The key under which every credit's dedupe key is stored in CrowdTwist's ``extra_data``.
DEDUPE_KEY_FIELD = "airbyte_dedupe_key"
KNOWN_FIELDS = frozenset({"user_id", "activity_id", "num_points", "activity_date", "extra_data"})
#: Ignored field names listed per stream in the closing log line (the rest are "and more").
MAX_IGNORED_FIELDS_LISTED = 50


@dataclass
class Credit:
    """A row parsed into a credit request."""

    user_id: str
    id_type: str
    activity_id: str
    num_points: int | None
    activity_date: int | None
    extra_data: dict[str, Any]
    dedupe_key: str
    duplicate_of: int | None = None  # seq of an earlier row of this sync with the same event

    @property
    def event(self) -> tuple[str, str, str, str]:
        """What makes two rows the same credit: the member, the activity and the dedupe key.

        An ``event_id`` is unique only within one member's activity (two source tables may both
        have an event 1), so the dedupe key alone never decides that a row is a repeat.
        """
        return (self.id_type, self.user_id, self.activity_id, self.dedupe_key)

    @property
    def ledger_key(self) -> str:
        """The event as one ledger key (member, activity and dedupe key)."""
        return event_key(self.id_type, self.user_id, self.activity_id, self.dedupe_key)

    @property
    def history_key(self) -> tuple[str, str]:
        """How the credit shows in its member's activity history: (activity, dedupe key)."""
        return (self.activity_id, self.dedupe_key)

    def payload(self) -> dict[str, Any]:
        """The JSON body of the credit request."""
        body: dict[str, Any] = {"activity_id": self.activity_id}
        if self.num_points is not None:
            body["num_points"] = self.num_points
        if self.activity_date is not None:
            body["activity_date"] = self.activity_date
        body["extra_data"] = {**self.extra_data, DEDUPE_KEY_FIELD: self.dedupe_key}
        return body


class CreditParser:
    """Parses the rows of every Activity Credit stream of a sync (reader thread, input order)."""

    def __init__(self, cfg: ConnectorConfig) -> None:
        self.cfg = cfg
        #: The program's active activities by id, read by the writer's start().
        self.active: Mapping[str, Mapping[str, Any]] = {}
        self._options = cfg.mapping_options()
        # Each stream's field_mapping rules (its own and those for every stream), and their sources.
        self._streams: dict[tuple[str | None, str], tuple[MappingOptions, frozenset[str]]] = {}
        # Fields of the rows that are not credit fields, by stream (a dict keeps their first-seen order).
        self._ignored: dict[str, dict[str, None]] = {}

    def parse(self, row: Row) -> Credit:
        """The row's credit; raises the ``Rejection`` of a row that cannot be credited."""
        stream = row.stream
        options, sources = self._mapping_for(stream)
        data = apply_field_mapping(row.data, options) if options.field_mapping else row.data
        self._note_ignored(row, data, sources)
        user_id = normalise_user_id(data.get(stream.id_field), stream.id_type, stream.id_field)
        activity_id = self._activity(data.get("activity_id"))
        num_points = _check_points(
            _parse_points(data.get("num_points")),
            maximum=self.cfg.max_points_per_credit,
            allow_negative=self.cfg.allow_negative_points,
        )
        activity_date = None
        if data.get("activity_date") is not None:
            try:
                activity_date = to_epoch_seconds(data["activity_date"], "activity_date")
            except Rejection as exc:
                raise exc.with_field("activity_date") from None
        extra = _parse_extra(data.get("extra_data"))
        event_id = data.get(self.cfg.event_id_field) if self.cfg.event_id_field else None
        return Credit(user_id, stream.id_type, activity_id, num_points, activity_date, extra,
                      dedupe_key(row, user_id, activity_id, num_points=num_points,
                                 activity_date=activity_date, extra_data=extra, event_id=event_id))

    def ignored_lines(self) -> list[str]:
        """One line per stream naming each field that was not sent, once; then forgets them."""
        lines = []
        for stream, fields in self._ignored.items():
            names = [name if self.cfg.log_pii else mask_key_path(name) for name in fields]
            listed = ", ".join(repr(name) for name in names[:MAX_IGNORED_FIELDS_LISTED])
            more = " and more" if len(names) > MAX_IGNORED_FIELDS_LISTED else ""
            lines.append(f"stream {stream}: fields ignored (not credit fields): {listed}{more}")
        self._ignored.clear()
        return lines

    def _activity(self, raw: Any) -> str:
        """The row's activity id (or ``default_activity_id``), which must be an active activity."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raw = self.cfg.default_activity_id
        if raw is None:
            raise Rejection(
                Reason.VALIDATION,
                "activity_id is required: map the CrowdTwist activity id to activity_id, or set default_activity_id",
            )
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise Rejection(Reason.VALIDATION, f"activity_id must be a string or a number, got {type(raw).__name__}")
        activity_id = id_text(raw)
        if activity_id not in self.active:
            raise Rejection(
                Reason.INVALID_ACTIVITY,
                # The id is the row's value: quoted, so that free text in it is masked in masked outputs.
                ("activity_id ", quoted_value(activity_id, "activity_id"),
                 " is not an active activity of this program. Check the id in CrowdTwist Control Center "
                 "(Activities), that the activity has started and not ended, and GET /v2/activities for the list "
                 "of active ids."),
            )
        return activity_id

    def _mapping_for(self, stream: StreamContext) -> tuple[MappingOptions, frozenset[str]]:
        """The stream's mapping options (its field_mapping rules) and the sources they read."""
        found = self._streams.get(stream.key)
        if found is None:
            rules = rules_for_stream(self.cfg.field_mapping, stream.namespace, stream.name)
            found = (dataclasses.replace(self._options, field_mapping=rules), frozenset(rule.source for rule in rules))
            self._streams[stream.key] = found
        return found

    def _note_ignored(self, row: Row, data: Mapping[str, Any], sources: frozenset[str]) -> None:
        """Note the row's fields that are not credit fields (listed by :meth:`ignored_lines`)."""
        for name in data:
            if name in KNOWN_FIELDS or name in (row.stream.id_field, self.cfg.event_id_field):
                continue
            if name.startswith(("_airbyte_", "_ab_")):
                continue
            if name in sources:
                continue  # a field_mapping source: used under its mapped name
            fields = self._ignored.setdefault(row.stream.label, {})
            if name not in fields and len(fields) <= MAX_IGNORED_FIELDS_LISTED:  # bounded: rows may have any keys
                fields[name] = None


def dedupe_key(
    row: Row,
    user_id: str,
    activity_id: str,
    *,
    num_points: int | None,
    activity_date: int | None,
    extra_data: Mapping[str, Any],
    event_id: Any = None,
) -> str:
    """The row's dedupe key: its event id when it has one, else a hash of what identifies the credit.

    The hash covers the stream, the normalised credit fields (so ``"2024-01-05"`` and its epoch
    value give the same key), ``extra_data`` (two purchases that differ only there are two events)
    and the primary-key values. It never depends on time or randomness, so a replayed row gets the
    same key as the row it replays.
    """
    if isinstance(event_id, str | int | float) and not isinstance(event_id, bool) and str(event_id).strip():
        return id_text(event_id)
    identity = [
        row.stream.namespace, row.stream.name, user_id, activity_id, activity_date, num_points,
        [_path_value(row.data, path) for path in row.stream.primary_key],
        dict(extra_data),
    ]
    canonical = json.dumps(identity, default=str, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def id_text(value: str | int | float) -> str:
    """An id as text: ``1002.0`` -> ``"1002"``, strings trimmed."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def int_or_none(value: Any) -> int | None:
    """``value`` as an int, or None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _path_value(data: Mapping[str, Any], path: tuple[str, ...] | list[str]) -> Any:
    current: Any = data
    for part in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _parse_points(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise Rejection(Reason.VALIDATION, "num_points must be a whole number, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1e300 is "integer" too: _check_points refuses it by size
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise Rejection(Reason.VALIDATION, f"num_points must be a whole number, got {type(value).__name__}")


def _check_points(points: int | None, *, maximum: int, allow_negative: bool) -> int | None:
    """Points are money-like: a value no program would award is a data error, not a credit."""
    if points is None:
        return None
    if points < 0 and not allow_negative:
        raise Rejection(
            Reason.VALIDATION,
            "num_points is negative; debits are refused unless allow_negative_points is set",
            field="num_points",
        )
    if abs(points) > maximum:
        raise Rejection(
            Reason.VALIDATION,
            f"num_points is larger than max_points_per_credit ({maximum}); check the source column, or raise the "
            "limit if such awards are real",
            field="num_points",
        )
    return points


def _parse_extra(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Rejection(
                Reason.VALIDATION, "extra_data must be a JSON object, got a string that is not JSON"
            ) from None
    if not isinstance(value, Mapping):
        raise Rejection(Reason.VALIDATION, f"extra_data must be an object, got {type(value).__name__}")
    return dict(value)
