"""What each ``credit_verification`` policy risks, as ``check`` and ``write`` warn about it.

``every_row`` (the default) verifies every row against the member's activity history, so a replay or
a full-refresh re-send never credits twice. ``replay_window`` verifies only the rows before a replayed
attempt's first state, and ``none`` no row: both trust that the states of a replay fall where they
fell before (``writers/activities.py``, point 4), which a full-refresh source does not keep.
"""

from __future__ import annotations

# What replay_window and none cost where a source re-sends rows that were credited before, as measured
# for issue 21 (300 credited rows replayed with states at other positions; 2,000 credited rows re-sent by
# a full refresh). none verifies no row, so a full re-send credits every such row again.
_UNSAFE_POLICY = {
    "replay_window": "a replay whose states fell elsewhere credited 212 of 300 rows twice, and a full-refresh "
                     "re-send 1,967 of 2,000",
    "none": "a replay whose states fell elsewhere credited 231 of 300 rows twice, and a full-refresh re-send "
            "credits every row again",
}


def unsafe_policy_warning(policy: str) -> str | None:
    """What ``check`` says about a ``credit_verification`` that is unsafe for full-refresh sources (else None)."""
    figures = _UNSAFE_POLICY.get(policy)
    if figures is None:
        return None
    return (
        f"credit_verification={policy} is unsafe for full-refresh sources and for replays whose states fall "
        f"elsewhere: measured, {figures}. Use every_row (the default) unless every Activity Credit stream is "
        "incremental and its states always fall at the same rows."
    )


def full_refresh_warning(policy: str, stream: str) -> str | None:
    """The WARN that ``write`` logs for a full_refresh Activity Credit stream under an unsafe policy (else None)."""
    figures = _UNSAFE_POLICY.get(policy)
    if figures is None:
        return None
    return (
        f"Stream {stream} is full_refresh and credited with credit_verification={policy}: rows credited by an "
        f"earlier sync are not verified and are credited again (measured, {figures}). Set credit_verification "
        "to every_row, or make the stream incremental."
    )
