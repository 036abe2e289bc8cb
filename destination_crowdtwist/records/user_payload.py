"""One row to the User Profile payloads it needs: map and coerce, then check.

`checked_payloads` is what the User Profile writer calls for a row it has mapped
(`mapping.map_user_record`, which coerces): it checks the custom fields against the configured
allow-list, builds the create body (`mapping.create_payload`) when the row may create its member, and
runs the pre-flight checks (`validation.check_user`) once per row that CrowdTwist would accept. It
returns both bodies and, for a row CrowdTwist would refuse, its `Rejection`. The writer maps first
and checks later because a row its member index shows unchanged is never checked
(`writers/users.py`); `user_payloads` is both steps in one call.

What the row may do is its `Intent` (the writer derives it from the sync mode):

* ``UPDATE`` needs the update body only, and CrowdTwist must accept it;
* ``CREATE`` needs the create body, and CrowdTwist must accept it;
* ``EITHER`` (upsert) needs an update body CrowdTwist accepts; the create body is kept when it can be
  sent, else why not (the row can still update an existing member).

For ``EITHER`` one check usually decides both: the create body holds every update field with the same
value plus the identifier (already normalised and valid), and creating only adds rules, so a create
body CrowdTwist accepts proves the update body acceptable. The update body is checked on its own only
when the create cannot be sent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from destination_crowdtwist.records.mapping import MappedUser, MappingOptions, create_payload, map_user_record
from destination_crowdtwist.records.rejection import Quoted, Reason, Rejection
from destination_crowdtwist.records.rejection import key as quoted_key
from destination_crowdtwist.records.validation import check_user

__all__ = ["Intent", "UserPayloads", "checked_payloads", "user_payloads"]


class Intent(enum.Enum):
    """What a row may do to its member."""

    UPDATE = "update"  # update an existing member only
    CREATE = "create"  # create a new member only
    EITHER = "either"  # update or create, whichever the member needs (upsert)


@dataclass(frozen=True)
class UserPayloads:
    """A row's payloads: ``update`` (the mapped fields, for ``PUT``) and ``create`` (the ``POST`` body).

    ``create`` is None for ``Intent.UPDATE`` rows, and for ``Intent.EITHER`` rows whose member cannot
    be created it is the `Rejection` saying why (decided before any request, so a row that could never
    create its member does not spend one). ``problem`` is why the row cannot be sent for its intent at
    all (None when it can): a row rejected after mapping still names its member by ``user_id``.
    """

    user_id: str
    update: dict[str, Any]
    create: dict[str, Any] | Rejection | None
    problem: Rejection | None = None


def user_payloads(
    record: Mapping[str, Any],
    options: MappingOptions,
    *,
    intent: Intent,
    custom_attributes: tuple[str, ...] = (),
    require_location: bool = True,
) -> UserPayloads:
    """The row's payloads for ``intent``, with the ``problem`` of a row CrowdTwist would refuse.

    Raises `Rejection` when the record cannot be mapped at all (no identifier, a value that cannot be
    coerced). ``custom_attributes``: the custom fields CrowdTwist knows (none checked when empty);
    ``require_location``: whether a create needs a location (`validation.check_user`).
    """
    return checked_payloads(
        map_user_record(record, options), options.id_type, intent=intent, custom_attributes=custom_attributes,
        require_location=require_location,
    )


def checked_payloads(
    mapped: MappedUser,
    id_type: str,
    *,
    intent: Intent,
    custom_attributes: tuple[str, ...] = (),
    require_location: bool = True,
) -> UserPayloads:
    """:func:`user_payloads` for a record already mapped (``mapping.map_user_record``): everything after the
    mapping, for a writer that checks a row only once it knows the row needs sending (``writers/users.py``).
    """
    user_id, update = mapped.user_id, mapped.payload
    unknown = _unknown_custom_fields(update, custom_attributes)
    if unknown is not None:
        return UserPayloads(user_id, update, None, unknown)
    if intent is Intent.UPDATE:
        problem = check_user(update, creating=False, require_location=require_location)
        return UserPayloads(user_id, update, None, problem)
    create = _create_body(mapped, id_type, require_location=require_location)
    if not isinstance(create, Rejection):
        return UserPayloads(user_id, update, create)
    if intent is Intent.CREATE:
        return UserPayloads(user_id, update, create, create)
    # EITHER: the member cannot be created, but an existing one may still be updated.
    return UserPayloads(user_id, update, create, check_user(update, creating=False, require_location=require_location))


def _create_body(mapped: MappedUser, id_type: str, *, require_location: bool) -> dict[str, Any] | Rejection:
    """What ``POST /v2/users`` would send for this row, or why the member cannot be created."""
    if id_type == "id":
        return Rejection(
            Reason.NOT_FOUND,
            "Members cannot be created by CrowdTwist id (CrowdTwist assigns ids). Use email, third_party_id, "
            "username or mobile_phone_number as the identifier to create members.",
        )
    try:
        body = create_payload(mapped, id_type)
    except Rejection as rejection:
        return rejection
    problem = check_user(body, creating=True, require_location=require_location)
    return body if problem is None else problem


def _unknown_custom_fields(payload: Mapping[str, Any], allowed: tuple[str, ...]) -> Rejection | None:
    """The rejection of custom_data keys outside the configured allow-list (none checked when it is empty)."""
    custom = payload.get("custom_data")
    if not allowed or not isinstance(custom, Mapping):
        return None
    unknown = sorted(name for name in custom if name not in allowed)
    if not unknown:
        return None
    names: list[str | Quoted] = []
    for n, name in enumerate(unknown):
        # The names are the row's keys, which can be data ("Quentin Doe (spouse)"): quoted.
        names.extend((", ", quoted_key(name)) if n else (quoted_key(name),))
    return Rejection(
        Reason.CUSTOM_ATTRIBUTE,
        ("custom field(s) ", *names, " are not among the configured custom_attributes; set them up in "
         "Control Center and add them to custom_attributes, rename them with field_mapping, or set "
         "unmapped_fields=drop"),
        field="custom_data",
    )
