"""``discover``: the destination catalog for Airbyte data activation.

Data activation asks a destination which objects it can write, with which operations and matching
keys (Airbyte protocol ``DestinationCatalog``, carried by a ``DESTINATION_CATALOG`` message; see the
"Data activation" section of docs/crowdtwist.md). CrowdTwist has two objects:

- ``user_profile``: upsert (``append_dedup``), insert (``append``), update (``update``) and delete
  (``soft_delete``, whose schema holds only the matching keys: a delete needs nothing else);
- ``activity_credit``: insert (``append``) only, because a credit is always a new event.

:func:`build_catalog` is pure: the catalog is a function of the config (custom attribute names,
event id field) and the program's active activities, which become the choices of ``activity_id``.
:func:`discover_catalog` reads those activities live with ``GET /v2/activities``, exactly as the
connection check does. Field rules and wire types follow docs/crowdtwist-api-notes.md; the fields
are the ones records/mapping.py sends (a unit test keeps the two lists equal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.config import ConnectorConfig
from destination_crowdtwist.records.validation import CREATE_REQUIRED
from destination_crowdtwist.wiring import client_from_config
from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT, OPERATIONS, USER_PROFILE, operation

__all__ = [
    "ACTIVITY_CREDIT",
    "CREATE_REQUIRED",
    "DESTINATION_CATALOG",
    "USER_PROFILE",
    "USER_PROFILE_MODES",
    "activity_choices",
    "activity_credit_schema",
    "build_catalog",
    "catalog_message",
    "discover_catalog",
    "read_active_activities",
    "user_profile_schema",
]

DESTINATION_CATALOG = "DESTINATION_CATALOG"
UPSERT, INSERT, UPDATE, DELETE = "append_dedup", "append", "update", "soft_delete"
#: The user_profile operations, in the order the catalog lists them (writers/objects.py).
USER_PROFILE_MODES: tuple[str, ...] = tuple(op.sync_mode for op in OPERATIONS if op.object_name == USER_PROFILE)

# Which operations a field belongs to: fields CrowdTwist documents for create only, for update
# only, or for both. Upsert may do either, so it offers every field.
_ALL = frozenset(USER_PROFILE_MODES)
_CREATE = frozenset({UPSERT, INSERT})
_UPDATE = frozenset({UPSERT, UPDATE})

_FLAG_INPUT = "true/false, yes/no, y/n, t/f or 1/0; sent as 1 or 0"
_DATE_INPUT = (
    "an ISO date (1979-11-29, midnight UTC), an ISO datetime (naive means UTC), or epoch seconds or "
    "milliseconds; sent to CrowdTwist as Unix epoch seconds"
)
_REQUIRED_ON_CREATE = "Required to create a member."
_NAME_RULE = "Letters of any script, digits, spaces and - _ @ . , ' \u2019 only."


@dataclass(frozen=True)
class _Field:
    name: str
    schema: Mapping[str, Any]
    modes: frozenset[str] = _ALL


def _s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _flag(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": f"{description} ({_FLAG_INPUT})."}


# The CrowdTwist user fields the connector sends (records/mapping.py), in the order the Airbyte UI
# shows them: identifiers, names, location, then the rest.
_USER_FIELDS: tuple[_Field, ...] = (
    _Field("id", {"type": "integer", "description": (
        "CrowdTwist's numeric member id. CrowdTwist assigns it, so it only addresses existing members."
    )}, frozenset({UPDATE})),
    _Field("email_address", _s(
        f"The member's email address, unique in the program. {_REQUIRED_ON_CREATE} Trimmed and lower-cased "
        "before sending.", format="email")),
    _Field("third_party_id", _s("Your own id of the member, unique in the program.")),
    _Field("username", _s("The member's username, unique in the program.")),
    _Field("mobile_phone_number", _s(
        "Mobile phone number. Punctuation (+ ( ) - . and spaces) is removed; 7 to 15 digits must remain.")),
    _Field("first_name", _s(f"{_REQUIRED_ON_CREATE} {_NAME_RULE}")),
    _Field("middle_name", _s(_NAME_RULE)),
    _Field("last_name", _s(f"{_REQUIRED_ON_CREATE} {_NAME_RULE}")),
    _Field("postal_code", _s(
        "US members: a 5-digit ZIP code (ZIP+4 accepted; numbers are zero-padded to 5 digits), with no "
        "country or city field. Canada: A1A 1A1 together with country_code CA. A new member needs a "
        "postal code, or a country_code with a city, unless 'Require a location on create' is off.")),
    _Field("country_code", _s(
        "2-letter ISO country code (upper-cased before sending). Outside the US it goes with city_id or "
        "city_name; US addresses take only postal_code.")),
    _Field("city_id", {"type": "integer", "description": (
        "CrowdTwist's id of the member's city (a CrowdTwist lookup table). Outside the US and Canada, "
        "country_code needs city_id or city_name.")}),
    _Field("city_name", _s("English name of the member's city, e.g. London; an alternative to city_id.")),
    _Field("date_of_birth", _s(
        f"Date of birth: {_DATE_INPUT}. Must not be in the future.", format="date")),
    _Field("gender_id", _s('CrowdTwist gender id, e.g. "2" (the list of ids is program configuration).')),
    _Field("lang_pref", _s("Preferred language code, e.g. en.")),
    _Field("receive_email_updates", _flag("Email opt-in")),
    _Field("email_is_verified", _flag("Whether the email address is verified; CrowdTwist's default is true")),
    _Field("is_active", _flag("false deactivates the member, true reactivates them; update only"), _UPDATE),
    _Field("remove_points", _flag("With is_active false, also removes the member's points; update only"),
           _UPDATE),
    _Field("password", _s("The member's password, sent exactly as given.")),
    _Field("invite_code", _s("Referral code (the _cts_ parameter of a referral link), used on create."), _CREATE),
    _Field("send_verify_email", _flag("Whether CrowdTwist emails a verification link on create"), _CREATE),
    _Field("sign_up_channel_id", {"type": "integer", "description": "Sign-up channel id, used on create."},
           _CREATE),
    _Field("sign_up_campaign", _s("Sign-up campaign, used on create."), _CREATE),
    _Field("store_id", _s("The member's store id.")),
    _Field("extra_data", {"type": "object", "description": (
        "Free-form JSON object stored with the member (a string holding a JSON object is accepted).")}),
    _Field("custom_data", {"type": "object", "description": (
        "Custom attributes as one JSON object of string values. Keys must be set up in CrowdTwist Control "
        "Center (case-sensitive); configured custom attributes are also listed as fields of their own.")}),
    _Field("facebook_user_id", _s("Linked Facebook user id.")),
    _Field("facebook_access_token", _s("Linked Facebook access token, sent exactly as given.")),
    _Field("twitter_user_id", _s("Linked Twitter user id.")),
    _Field("inst_username", _s("Linked Instagram username.")),
    _Field("inst_user_id", _s("Linked Instagram user id.")),
    _Field("inst_access_token", _s("Linked Instagram access token, sent exactly as given.")),
)

# Names a custom attribute cannot take: they already mean something to the connector.
_RESERVED_NAMES = frozenset(field.name for field in _USER_FIELDS) | {"user_id"}

_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def _object_schema(properties: Mapping[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"$schema": _SCHEMA_DRAFT, "type": "object", "properties": dict(properties)}
    required = list(required)
    if required:
        schema["required"] = required
    return schema


def user_profile_schema(mode: str, custom_attributes: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON schema of ``user_profile`` for one sync mode (``append_dedup``, ``append``, ``update``).

    Configured custom attributes are added as string properties, after the standard fields; a name
    that is already a standard field (or ``user_id``) is skipped, since the connector would send
    such a column as the standard field.
    """
    if mode not in USER_PROFILE_MODES:
        raise ValueError(f"unknown user_profile sync mode {mode!r}")
    if mode == DELETE:
        # A delete needs only the member's key (as Salesforce's soft_delete): no field is written.
        op = operation(USER_PROFILE, DELETE)
        assert op is not None
        by_name = {f.name: f.schema for f in _USER_FIELDS}
        return _object_schema({key: dict(by_name[key]) for key in op.matching_keys})
    properties: dict[str, Any] = {f.name: dict(f.schema) for f in _USER_FIELDS if mode in f.modes}
    for name in custom_attributes:
        if name not in _RESERVED_NAMES and name not in properties:
            properties[name] = _s(
                f"Custom attribute '{name}' (set up in CrowdTwist Control Center); sent in custom_data as a string."
            )
    # CREATE_REQUIRED: the fields CrowdTwist needs to create a member (records/validation.py refuses a
    # create without them). Only insert lists them as required: an upsert of an existing member is a
    # partial update, and requiring names there would block upserts that only change, say, an opt-in
    # flag; a new member without them is rejected with a message. The location rule (postal code, or
    # country and city) is an either/or that ``required`` cannot express: postal_code describes it.
    return _object_schema(properties, CREATE_REQUIRED if mode == INSERT else ())


def _points_label(points: Any) -> str:
    if isinstance(points, int) and not isinstance(points, bool):
        return f" ({points} point{'' if points == 1 else 's'})"
    return ""


def activity_choices(activities: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``oneOf`` entries for activity_id: ``{const: id, title: "<title> (<points> points)"}``.

    Ids are compared as strings, as the Activity Credit writer does (CrowdTwist documents ``id`` as a
    string; a number is accepted too). Items without an id are skipped, and a repeated id is listed once.
    """
    choices: list[dict[str, Any]] = []
    seen: set[str] = set()
    for activity in activities:
        raw_id = activity.get("id")
        if raw_id is None or isinstance(raw_id, bool) or str(raw_id) in seen:
            continue
        activity_id = str(raw_id)
        seen.add(activity_id)
        title = activity.get("title")
        label = title.strip() if isinstance(title, str) and title.strip() else f"Activity {activity_id}"
        choices.append({"const": activity_id, "title": label + _points_label(activity.get("num_points"))})
    return choices


def activity_credit_schema(
    activities: Iterable[Mapping[str, Any]], event_id_field: str = "event_id", default_activity_id: str | None = None
) -> dict[str, Any]:
    """The JSON schema of ``activity_credit``; ``activity_id`` offers the program's active activities.

    ``activity_id`` is required unless ``default_activity_id`` is set: then a row without one earns
    the default activity (as the writer does), so an events table without an activity column can be
    mapped in the UI.
    """
    choices = activity_choices(activities)
    activity_id: dict[str, Any] = {"type": "string"}
    if choices:
        activity_id["description"] = (
            "The CrowdTwist activity to credit: one of the program's active activities when the destination "
            "was discovered (a row with another id is rejected)."
        )
        activity_id["oneOf"] = choices
    else:
        # An empty oneOf is not valid JSON Schema; say why there is nothing to choose from instead.
        activity_id["description"] = (
            "The CrowdTwist activity to credit. The program had no active activity when the destination was "
            "discovered: activate one in CrowdTwist Control Center, then refresh the destination's schema."
        )
    if default_activity_id is not None:
        activity_id["description"] += (
            f" Optional: a row without one is credited to the default activity {default_activity_id} "
            "(default_activity_id)."
        )
    member = "Identifies the member to credit: one who exists, or whom a member stream of the same sync creates."
    properties: dict[str, Any] = {
        "email_address": _s(f"The member's email address. {member}", format="email"),
        "third_party_id": _s(f"Your own id of the member. {member}"),
        "username": _s(f"The member's username. {member}"),
        "mobile_phone_number": _s(f"The member's mobile phone number (digits are kept). {member}"),
        "activity_id": activity_id,
        "num_points": {"type": "integer", "description": "Points to award, overriding the activity's default."},
        "activity_date": _s(
            f"When the activity was performed: {_DATE_INPUT}. Backdating must be enabled for the program.",
            format="date-time",
        ),
        "extra_data": {"type": "object", "description": (
            "Free-form JSON object stored with the credit and shown in the member's activity history "
            "(a string holding a JSON object is accepted). The connector adds airbyte_dedupe_key to it.")},
    }
    # Named by the event_id_field setting; a setting that names one of the fields above keeps that field.
    properties.setdefault(event_id_field, _s(
        "A unique id of the event that earns the points (recommended): it makes every credit exactly-once, "
        "even when rows are sent again. Without it a hash of the row is used."
    ))
    return _object_schema(properties, () if default_activity_id is not None else ("activity_id",))


def build_catalog(cfg: ConnectorConfig, activities: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``DestinationCatalog`` (as JSON) for a config and the program's active activities.

    Pure: no I/O. One operation per row of ``writers/objects.OPERATIONS`` (the table ``write``
    routes streams by), so what discover offers is exactly what write accepts. The config's
    ``object_type`` does not matter here: data activation picks the object per stream;
    ``default_activity_id`` does (``activity_id`` is then optional).
    """
    activity_list = list(activities)
    operations: list[dict[str, Any]] = []
    for op in OPERATIONS:
        if op.object_name == USER_PROFILE:
            schema = user_profile_schema(op.sync_mode, cfg.custom_attributes)
        else:
            schema = activity_credit_schema(activity_list, cfg.event_id_field, cfg.default_activity_id)
        operations.append({
            "object_name": op.object_name,
            "sync_mode": op.sync_mode,
            "json_schema": schema,
            "matching_keys": [[key] for key in op.matching_keys],
        })
    return {"operations": operations}


def catalog_message(catalog: Mapping[str, Any]) -> dict[str, Any]:
    """The ``DESTINATION_CATALOG`` protocol message that carries ``catalog``."""
    return {"type": DESTINATION_CATALOG, "destination_catalog": dict(catalog)}


def read_active_activities(cfg: ConnectorConfig) -> list[dict[str, Any]]:
    """``GET /v2/activities`` with a fresh client; raises ``CrowdTwistError`` subclasses.

    Throttling is reported at once (``interactive``) rather than waited out: a person is
    waiting for the answer.
    """
    client = client_from_config(cfg, interactive=True)
    try:
        return client.list_activities()
    finally:
        client.close()


def discover_catalog(cfg: ConnectorConfig) -> dict[str, Any]:
    """The destination catalog, with the activities read live from CrowdTwist."""
    return build_catalog(cfg, read_active_activities(cfg))
