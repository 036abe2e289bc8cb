"""Reading a member's profile against what a row would write (pure functions).

Used where an answer alone cannot say what happened: "already taken" after a lost create answer
(is the member ours?), an insert that meets its member (does it hold the row already?), and a dry
run's list of the fields an update would change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields CrowdTwist takes on create but does not return as sent (secrets, one-off flags, nested data).
NOT_ECHOED = frozenset({"password", "invite_code", "send_verify_email", "sign_up_channel_id", "sign_up_campaign",
                        "custom_data", "extra_data"})


def holds(profile: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether a member's profile holds every field value a create sent (emails compared case-blind)."""
    for name, value in sent.items():
        if name in NOT_ECHOED:
            continue
        have = profile.get(name)
        if isinstance(value, str) and isinstance(have, str) and "email" in name:
            if value.strip().lower() != have.strip().lower():
                return False
        elif _normalise(have) != _normalise(value):
            return False
    return True


def changed_fields(profile: Mapping[str, Any], payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Fields whose value in the payload differs from the member's profile (``custom_data.<key>`` per key)."""
    changes: list[str] = []
    for name, value in payload.items():
        if name == "custom_data" and isinstance(value, Mapping):
            current = profile.get("custom_data") or {}
            for key, sub in value.items():
                if not isinstance(current, Mapping) or _normalise(current.get(key)) != _normalise(sub):
                    changes.append(f"custom_data.{key}")
            continue
        if _normalise(profile.get(name)) != _normalise(value):
            changes.append(name)
    return tuple(changes)


def crowdtwist_id(profile: Any) -> str | None:
    """The member's CrowdTwist id from a profile (a create or update answer), if it has one."""
    value = profile.get("id") if isinstance(profile, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        return None
    return str(value)


def _normalise(value: Any) -> Any:
    # CrowdTwist answers flags as booleans that are sent as 0/1.
    if isinstance(value, bool):
        return int(value)
    return value
