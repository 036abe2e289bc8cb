"""Pure mapping of one source record to a CrowdTwist user payload.

Steps, in order (see `map_user_record`):

1. ``field_mapping`` renames/extracts fields: each ``FieldMapping(source, destination)`` copies the
   value at ``source`` (a top-level key, or a dotted path into nested objects) to ``destination``.
   A source that is missing is simply absent. The top-level key a mapping reads from is *consumed*:
   it does not also travel on as an unmapped field (for ``address.zip`` the whole ``address`` object
   is consumed). Rules may name a stream: a stream gets its own rules and those for every stream
   (`rules_for_stream`); the writers pass a stream's rules in ``MappingOptions.field_mapping``.
2. ``user_id`` (required) is taken out and normalised for the configured ``id_type``.
3. Airbyte metadata (``_airbyte_*``, ``_ab_*``) is dropped silently.
4. Known CrowdTwist user fields (`KNOWN_USER_FIELDS`) are coerced to their wire types.
5. The record's own ``custom_data`` object is merged into custom_data (its entries win over
   unmapped columns of the same name, being the more explicit of the two).
6. Every other field goes into ``custom_data`` as a string, or is dropped (names reported in
   ``MappedUser.dropped_fields``) when ``unmapped_fields == "drop"``.
7. ``country_code == "US"`` next to a US ZIP ``postal_code`` is left out of the payload: the API
   accepts only the postal code for domestic addresses and the ZIP already says "US".

Nulls are skipped (``null_values == "skip"``, the default, so a null in the warehouse never wipes a
value in CrowdTwist) or sent as JSON null (``"send"``), also inside custom_data. For known fields a
blank or whitespace-only string counts as null: warehouses often hold "" for "unknown", and every
typed CrowdTwist field would refuse it anyway.

Identifier placement (decided here; see `create_payload`): for updates the payload keeps whatever
the record says, so an ``email_address`` column that differs from ``user_id`` changes the member's
email (the PUT path still addresses the member by ``user_id``). For creates the identifier is placed
in its own field; a record field that disagrees with ``user_id`` is a validation error, because
creating with either value would leave the other one wrong.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.records.coercion import (
    coercion_error,
    to_country_code,
    to_custom_value,
    to_epoch_seconds,
    to_flag,
    to_int,
    to_phone,
    to_postal_code,
    to_str,
)
from destination_crowdtwist.records.identifiers import ID_TYPES, IdType
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.records.validation import is_us_postal_code, is_valid_email

__all__ = [
    "ID_TYPES",
    "ID_TYPE_FIELDS",
    "KNOWN_USER_FIELDS",
    "FieldMapping",
    "IdType",
    "MappedUser",
    "MappingOptions",
    "create_payload",
    "map_user_record",
    "names_stream",
    "rules_for_stream",
]

USER_ID_FIELD = "user_id"
CUSTOM_DATA_FIELD = "custom_data"
_METADATA_PREFIXES = ("_airbyte_", "_ab_")

# The payload field that carries each identifier on create; "id" is assigned by CrowdTwist.
ID_TYPE_FIELDS: Mapping[str, str] = {
    "email": "email_address",
    "third_party_id": "third_party_id",
    "username": "username",
    "mobile_phone_number": "mobile_phone_number",
}

_UNMAPPED_POLICIES = frozenset({"custom_data", "drop"})
_NULL_POLICIES = frozenset({"skip", "send"})


@dataclass(frozen=True)
class FieldMapping:
    """Copy the value at ``source`` (key or dotted path) to the payload field ``destination``.

    ``stream``: the stream the rule applies to (its name, or ``namespace.name``); None for every
    stream. See :func:`rules_for_stream`.
    """

    source: str
    destination: str
    stream: str | None = None

    def applies_to(self, namespace: str | None, name: str) -> bool:
        """Whether this rule applies to rows of the stream ``namespace.name``."""
        return self.stream is None or names_stream(self.stream, namespace, name)


def names_stream(selector: str, namespace: str | None, name: str) -> bool:
    """Whether a rule's ``stream`` (a name, or ``namespace.name``) names the stream ``namespace.name``."""
    return selector == name or (namespace is not None and selector == f"{namespace}.{name}")


def rules_for_stream(
    rules: Sequence[FieldMapping], namespace: str | None, name: str
) -> tuple[FieldMapping, ...]:
    """The ``field_mapping`` rules of one stream: its own rules, and the rules for every stream.

    One connection often syncs members and events, whose columns differ (``users.id`` and
    ``purchases.user_id`` both hold the member): each stream gets its own rules. A rule for every
    stream (no ``stream``) applies too, unless the stream has its own rule for the same destination,
    which then wins whatever the order. Within one group, a later rule still wins when both sources
    are present (the form of 0.2, kept as it was).
    """
    own = tuple(rule for rule in rules if rule.stream is not None and rule.applies_to(namespace, name))
    taken = {rule.destination for rule in own}
    shared = tuple(rule for rule in rules if rule.stream is None and rule.destination not in taken)
    return shared + own


@dataclass(frozen=True)
class MappingOptions:
    """How records become payloads (parsed from the connector config)."""

    id_type: str = "email"  # email | id | third_party_id | username | mobile_phone_number
    unmapped_fields: str = "custom_data"  # or "drop"
    null_values: str = "skip"  # or "send"
    field_mapping: tuple[FieldMapping, ...] = ()
    # The field that holds the member identifier: ``user_id`` in classic mode, the stream's matching
    # key (e.g. ``email_address``) in data activation. Read after field_mapping.
    id_field: str = "user_id"


@dataclass(frozen=True)
class MappedUser:
    """A record mapped to CrowdTwist wire types.

    ``user_id`` is the normalised identifier (emails trimmed + lower-cased, phones digits only, ids
    as decimal strings); ``payload`` holds the known fields (+ ``custom_data`` when any) for a PUT;
    ``dropped_fields`` names the unmapped fields dropped by ``unmapped_fields == "drop"``.
    """

    user_id: str
    payload: dict[str, Any]
    dropped_fields: tuple[str, ...]


def _strip_str(value: Any, field: str) -> str:
    return to_str(value, field)


def _raw_str(value: Any, field: str) -> str:
    return to_str(value, field, strip=False)


def _email(value: Any, field: str) -> str:
    # Lower-cased like the email user_id, so a create payload and later lookups agree.
    return to_str(value, field).lower()


def _object(value: Any, field: str) -> dict[str, Any]:
    # extra_data is free-form but must be an object; warehouses often hold JSON as text.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise coercion_error(field, "a JSON object (or a string holding one)", "str") from None
        if isinstance(value, dict):
            return value
        raise coercion_error(
            field, "a JSON object (or a string holding one)", f"str holding {type(value).__name__}"
        )
    if isinstance(value, Mapping):
        return dict(value)
    raise coercion_error(field, "a JSON object (or a string holding one)", type(value).__name__)


_Coercer = Callable[[Any, str], Any]

# Known CrowdTwist user fields (docs/crowdtwist-api-notes.md §2.5) and their wire coercions.
_COERCERS: dict[str, _Coercer] = {
    "email_address": _email,
    "first_name": _strip_str,
    "last_name": _strip_str,
    "middle_name": _strip_str,
    "postal_code": to_postal_code,
    "date_of_birth": to_epoch_seconds,
    "gender_id": _strip_str,  # string in responses ("2"); full enum NOT FOUND
    "mobile_phone_number": to_phone,
    "third_party_id": _strip_str,
    "username": _strip_str,
    "password": _raw_str,  # sent exactly as given
    "lang_pref": _strip_str,
    "country_code": to_country_code,
    "city_name": _strip_str,
    "city_id": to_int,
    "receive_email_updates": to_flag,
    "email_is_verified": to_flag,
    "is_active": to_flag,
    "remove_points": to_flag,
    "send_verify_email": to_flag,
    "sign_up_channel_id": to_int,
    "invite_code": _strip_str,
    "extra_data": _object,
    "store_id": _strip_str,
    "sign_up_campaign": _strip_str,
    # Social linkage; exact Foursquare key names are NOT FOUND, so they are not listed.
    "facebook_user_id": _strip_str,
    "facebook_access_token": _raw_str,
    "twitter_user_id": _strip_str,
    "inst_username": _strip_str,
    "inst_user_id": _strip_str,
    "inst_access_token": _raw_str,
}

KNOWN_USER_FIELDS: frozenset[str] = frozenset(_COERCERS) | {CUSTOM_DATA_FIELD}


@dataclass(frozen=True)
class _CompiledMapping:
    """`MappingOptions` pre-digested once, so the per-row work is dict lookups only."""

    paths: tuple[tuple[str, str, tuple[str, ...]], ...]  # (source, destination, dotted parts)
    consumed: frozenset[str]  # top-level keys read by field_mapping
    drop_unmapped: bool
    send_nulls: bool
    normalise_id: Callable[[Any], str]


def _id_error(id_type: str, got: Any) -> Rejection:
    return Rejection(
        Reason.VALIDATION,
        f"user_id: expected {_ID_EXPECTED[id_type]} for id_type {id_type}, got {type(got).__name__}",
        field=USER_ID_FIELD,
    )


_ID_EXPECTED: dict[str, str] = {
    "email": "an email address",
    "id": "a positive integer CrowdTwist id",
    "third_party_id": "a string or integer",
    "username": "a string or integer",
    "mobile_phone_number": "a phone number",
}


def _normalise_email_id(value: Any) -> str:
    if not isinstance(value, str):
        raise _id_error("email", value)
    email = value.strip().lower()
    if not is_valid_email(email):
        raise _id_error("email", value)
    return email


def _normalise_numeric_id(value: Any) -> str:
    try:
        number = to_int(value, USER_ID_FIELD)
    except Rejection:
        raise _id_error("id", value) from None
    if number <= 0:
        raise _id_error("id", value)
    return str(number)


def _normalise_phone_id(value: Any) -> str:
    try:
        return to_phone(value, USER_ID_FIELD)
    except Rejection:
        raise _id_error("mobile_phone_number", value) from None


def _string_id_normaliser(id_type: str) -> Callable[[Any], str]:
    def normalise(value: Any) -> str:
        try:
            return to_str(value, USER_ID_FIELD)
        except Rejection:
            raise _id_error(id_type, value) from None

    return normalise


_ID_NORMALISERS: dict[str, Callable[[Any], str]] = {
    "email": _normalise_email_id,
    "id": _normalise_numeric_id,
    "mobile_phone_number": _normalise_phone_id,
    "third_party_id": _string_id_normaliser("third_party_id"),
    "username": _string_id_normaliser("username"),
}


def _compiled_for(options: MappingOptions) -> _CompiledMapping:
    """The compiled form of ``options``; the last one asked is kept by identity.

    A writer keeps one options object per stream, so nearly every row asks for the object the previous
    row asked for: ``is`` spares hashing the frozen dataclass (all its fields, field_mapping included)
    for the cache on every row. Options are frozen, so the same object compiles the same way.
    """
    global _last_compiled  # noqa: PLW0603 - a one-entry cache; a tuple is replaced whole (atomic)
    last = _last_compiled  # read once: another thread may replace it meanwhile
    if last is not None and last[0] is options:
        return last[1]
    compiled = _compile(options)
    _last_compiled = (options, compiled)
    return compiled


@functools.lru_cache(maxsize=64)
def _compile(options: MappingOptions) -> _CompiledMapping:
    # Options come from validated config; a bad value here is a programming error, not a row error.
    if options.id_type not in ID_TYPES:
        raise ValueError(f"unknown id_type {options.id_type!r}; expected one of {sorted(ID_TYPES)}")
    if options.unmapped_fields not in _UNMAPPED_POLICIES:
        raise ValueError(f"unknown unmapped_fields policy {options.unmapped_fields!r}")
    if options.null_values not in _NULL_POLICIES:
        raise ValueError(f"unknown null_values policy {options.null_values!r}")
    paths = tuple((m.source, m.destination, tuple(m.source.split("."))) for m in options.field_mapping)
    return _CompiledMapping(
        paths=paths,
        consumed=frozenset(parts[0] for _, _, parts in paths) | {m.source for m in options.field_mapping},
        drop_unmapped=options.unmapped_fields == "drop",
        send_nulls=options.null_values == "send",
        normalise_id=_ID_NORMALISERS[options.id_type],
    )


_MISSING = object()
_last_compiled: tuple[MappingOptions, _CompiledMapping] | None = None


def _resolve(record: Mapping[str, Any], source: str, parts: tuple[str, ...]) -> Any:
    """The value at ``source``: an exact top-level key first (keys may contain dots), else the path."""
    value = record.get(source, _MISSING)
    if value is not _MISSING or len(parts) == 1:
        return value
    node: Any = record
    for part in parts:
        if not isinstance(node, Mapping):
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def _apply_field_mapping(record: Mapping[str, Any], compiled: _CompiledMapping) -> Mapping[str, Any]:
    if not compiled.paths:
        return record
    working = {key: value for key, value in record.items() if key not in compiled.consumed}
    for source, destination, parts in compiled.paths:
        value = _resolve(record, source, parts)
        if value is not _MISSING:
            working[destination] = value
    return working


def apply_field_mapping(record: Mapping[str, Any], options: MappingOptions) -> Mapping[str, Any]:
    """The record with ``options.field_mapping`` applied (shared by both object types)."""
    return _apply_field_mapping(record, _compiled_for(options))


def normalise_user_id(raw_id: Any, id_type: str, id_field: str = USER_ID_FIELD) -> str:
    """The normalised identifier of a row (the member key of both writers); raises `Rejection`."""
    if raw_id is None or _is_blank(raw_id):
        raise Rejection(
            Reason.MISSING_IDENTIFIER,
            f"{id_field} is required: map a source column holding the member's {id_type} to {id_field}",
            field=id_field,
        )
    return _ID_NORMALISERS[id_type](raw_id)


def _is_blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def map_user_record(record: Mapping[str, Any], options: MappingOptions) -> MappedUser:
    """Map one source record to a `MappedUser`; raises `Rejection` when the row cannot be sent.

    See the module docstring for the rules. Raises a ``missing_identifier`` `Rejection` when
    ``user_id`` is missing, null or blank, and a ``validation`` one when a value cannot
    be coerced (message names the field and the value's type).
    """
    compiled = _compiled_for(options)
    working = _apply_field_mapping(record, compiled)

    id_field = options.id_field
    user_id = normalise_user_id(working.get(id_field), options.id_type, id_field)

    send_nulls = compiled.send_nulls
    payload: dict[str, Any] = {}
    unmapped: dict[str, Any] = {}
    own_custom: Any = None
    dropped: list[str] = []

    for key, value in working.items():
        coerce = _COERCERS.get(key)
        if key == id_field and coerce is None:
            continue  # e.g. the matching key "id": it addresses the member, it is not a field to send
        if coerce is not None:
            if value is None or _is_blank(value):
                if send_nulls:
                    payload[key] = None
                continue
            try:
                payload[key] = coerce(value, key)
            except Rejection as exc:
                raise exc.with_field(key) from None
        elif key == CUSTOM_DATA_FIELD:
            own_custom = value
        elif key != USER_ID_FIELD and not key.startswith(_METADATA_PREFIXES):
            _place_unmapped(key, value, compiled, unmapped, dropped)

    # CrowdTwist refuses country/city fields next to a US ZIP ("for domestic addresses ONLY postal_code
    # can be provided"). A country column saying "US" adds nothing the ZIP does not already say, so it
    # is left out rather than rejecting every US row of a warehouse that has a country column.
    if payload.get("country_code") == "US" and is_us_postal_code(payload.get("postal_code")):
        del payload["country_code"]
    if own_custom is not None:
        _merge_custom_data(unmapped, own_custom, send_nulls=send_nulls)
    if unmapped:
        payload[CUSTOM_DATA_FIELD] = unmapped
    return MappedUser(user_id=user_id, payload=payload, dropped_fields=tuple(dropped))


def _place_unmapped(
    key: str, value: Any, compiled: _CompiledMapping, unmapped: dict[str, Any], dropped: list[str]
) -> None:
    """A field CrowdTwist does not know: into custom_data as a string, or dropped (named) by policy."""
    if compiled.drop_unmapped:
        dropped.append(key)
    elif value is None:
        if compiled.send_nulls:
            unmapped[key] = None
    else:
        try:
            unmapped[key] = to_custom_value(value, key)
        except Rejection as exc:
            raise exc.with_suffix(" (unmapped fields go to custom_data)").with_field(key) from None


def _merge_custom_data(target: dict[str, Any], own_custom: Any, *, send_nulls: bool) -> None:
    if isinstance(own_custom, str):
        # Same tolerance as extra_data: a JSON string holding an object.
        try:
            own_custom = _object(own_custom, CUSTOM_DATA_FIELD)
        except Rejection as exc:
            raise exc.with_field(CUSTOM_DATA_FIELD) from None
    if not isinstance(own_custom, Mapping):
        raise Rejection(
            Reason.VALIDATION,
            "custom_data: expected a JSON object of attribute names to values, "
            f"got {type(own_custom).__name__}",
            field=CUSTOM_DATA_FIELD,
        )
    for key, value in own_custom.items():
        name = str(key)
        if value is None:
            if send_nulls:
                target[name] = None
            continue
        try:
            target[name] = to_custom_value(value, f"custom_data.{name}")
        except Rejection as exc:
            raise exc.with_field(f"custom_data.{name}") from None


def _same_identifier(id_type: str, field_value: Any, user_id: str) -> bool:
    if id_type == "email":
        return isinstance(field_value, str) and field_value.strip().lower() == user_id
    return bool(field_value == user_id)


def create_payload(mapped: MappedUser, id_type: str) -> dict[str, Any]:
    """The body for ``POST /v2/users``: the mapped payload with the identifier in its own field.

    ``email`` -> ``email_address``; ``third_party_id``, ``username`` and ``mobile_phone_number`` ->
    the field of that name. A record value for that field that disagrees with ``user_id`` raises
    a ``validation`` Rejection (a null from ``null_values="send"`` is replaced by ``user_id``).
    With ``id_type == "id"`` there is no field to place (CrowdTwist assigns ids), so the payload is
    returned unchanged and callers must not create; they reject the row instead.
    Returns a new dict; ``mapped.payload`` is not modified.
    """
    payload = dict(mapped.payload)
    field = ID_TYPE_FIELDS.get(id_type)
    if field is None:
        if id_type not in ID_TYPES:
            raise ValueError(f"unknown id_type {id_type!r}")
        return payload
    current = payload.get(field)
    if current is not None and not _same_identifier(id_type, current, mapped.user_id):
        raise Rejection(
            Reason.VALIDATION,
            f"{field} differs from user_id (id_type {id_type}): a new member is created with user_id as "
            f"its {field}, so map the same column to both or leave {field} unmapped",
            field=field,
        )
    payload[field] = mapped.user_id
    return payload
