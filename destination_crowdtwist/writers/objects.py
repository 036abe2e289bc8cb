"""The CrowdTwist objects this destination writes, and the operations each one supports.

One table, read by ``discover`` (what the Airbyte UI offers) and by the stream router of ``write``
(what a configured catalog may ask for), so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

USER_PROFILE = "user_profile"
ACTIVITY_CREDIT = "activity_credit"

#: Matching keys: a record field that identifies the member, and the CrowdTwist ``id_type`` it is.
IDENTIFIER_KEYS: Mapping[str, str] = {
    "email_address": "email",
    "third_party_id": "third_party_id",
    "username": "username",
    "mobile_phone_number": "mobile_phone_number",
}
#: CrowdTwist's own member id finds a member but can never create one.
MEMBER_ID_KEY = "id"


@dataclass(frozen=True)
class Operation:
    """One (object, sync mode) pair that a stream may be routed to, with its matching keys."""

    object_name: str
    sync_mode: str  # Airbyte destination sync mode
    matching_keys: tuple[str, ...]  # single-field keys, in the order the UI lists them
    description: str


OPERATIONS: tuple[Operation, ...] = (
    Operation(USER_PROFILE, "append_dedup", tuple(IDENTIFIER_KEYS),
              "Upsert: update the member, or create them if they do not exist."),
    Operation(USER_PROFILE, "append", tuple(IDENTIFIER_KEYS), "Insert: create new members only."),
    Operation(USER_PROFILE, "update", (*IDENTIFIER_KEYS, MEMBER_ID_KEY),
              "Update: change existing members only; never creates one."),
    # Removal: what a delete does is the config's delete_behaviour (deactivate by default, or erase);
    # found by the same keys as update, the CrowdTwist id included (writers/removal.py).
    Operation(USER_PROFILE, "soft_delete", (*IDENTIFIER_KEYS, MEMBER_ID_KEY),
              "Delete: deactivate or erase the member, as delete_behaviour says; never creates one."),
    Operation(ACTIVITY_CREDIT, "append", tuple(IDENTIFIER_KEYS),
              "Credit an activity (points) to a member, exactly once per event."),
)

OBJECT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(op.object_name for op in OPERATIONS))


def operation(object_name: str, sync_mode: str) -> Operation | None:
    """The operation for an object and sync mode, or None when the object does not support the mode."""
    return next((op for op in OPERATIONS if op.object_name == object_name and op.sync_mode == sync_mode), None)


def key_id_type(key: str) -> str | None:
    """The CrowdTwist ``id_type`` of a matching-key field, or None for a field that is no matching key."""
    if key == MEMBER_ID_KEY:
        return "id"
    return IDENTIFIER_KEYS.get(key)
