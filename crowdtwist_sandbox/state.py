"""In-memory program state: members, activities, credits. Thread-safe (one lock), no I/O.

Callers pass ``now`` (epoch seconds from the injected clock) to every operation so queued credits,
duplicate windows and record dates are exact in tests.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from crowdtwist_sandbox.errors import ApiError, user_not_found
from crowdtwist_sandbox.profile import UNKNOWN_KEY, UNKNOWN_VALUE, make_activity, render_profile
from crowdtwist_sandbox.validation import LOCATION_FIELDS, UNIQUE_FIELDS, CreditRequest

# id_type values this fake resolves (§2.1). The social ones are documented but not simulated.
SUPPORTED_ID_TYPES = ("id", "email", "third_party_id", "username", "mobile_phone_number")
DOCUMENTED_UNSUPPORTED_ID_TYPES = ("facebook_user_id", "twitter_user_id", "inst_username")
# Request-only fields that are never stored on the member.
_TRANSIENT_FIELDS = frozenset({"remove_points", "send_verify_email", "password", "invite_code", "sign_up_campaign"})


def _index_key(field_name: str, value: str) -> str:
    # Email uniqueness/lookup is case-insensitive (assumed; mail hosts treat addresses so).
    return value.lower() if field_name == "email_address" else value


class ProgramState:
    """Members, activities and credits of one fake CrowdTwist program."""

    def __init__(self, *, first_member_id: int = 269654579) -> None:
        self._lock = threading.RLock()
        self._first_member_id = first_member_id
        self.clear()

    # ------------------------------------------------------------------ lifecycle
    def clear(self, first_member_id: int | None = None) -> None:
        """Drop every member, activity and credit."""
        with self._lock:
            if first_member_id is not None:
                self._first_member_id = first_member_id
            self._next_id = self._first_member_id
            self._members: dict[int, dict[str, Any]] = {}
            self._index: dict[str, dict[str, int]] = {name: {} for name in UNIQUE_FIELDS}
            self._by_mobile: dict[str, int] = {}
            self._activities: dict[str, dict[str, Any]] = {}
            self._credits: list[dict[str, Any]] = []
            self._credits_by_member: dict[int, list[dict[str, Any]]] = {}
            self._pending: list[dict[str, Any]] = []
            self._recent_events: dict[tuple[int, str], float] = {}
            self._next_credit_id = 1
            # Erasures queued by DELETE /v2/users/{id}, by member id (kept after completion, so the
            # deletion status can say Deletion_completed).
            self._deletions: dict[int, dict[str, Any]] = {}
            self._deletions_pending: set[int] = set()

    # ------------------------------------------------------------------ activities
    def add_activity(self, **fields: Any) -> dict[str, Any]:
        """Add (or replace) an activity; returns the stored definition."""
        activity = make_activity(**fields)
        with self._lock:
            self._activities[activity["id"]] = activity
            return copy.deepcopy(activity)

    def replace_activities(self, activities: Iterable[Mapping[str, Any]]) -> None:
        """Swap the whole activity list (credits already recorded are kept)."""
        built = [make_activity(**dict(a)) for a in activities]
        with self._lock:
            self._activities = {a["id"]: a for a in built}

    def activities(self) -> list[dict[str, Any]]:
        """All activity definitions, in insertion order."""
        with self._lock:
            return copy.deepcopy(list(self._activities.values()))

    def activity_ids(self) -> frozenset[str]:
        """Ids of the defined activities."""
        with self._lock:
            return frozenset(self._activities)

    # ------------------------------------------------------------------ members
    def _settle(self, now: float) -> None:
        """Apply queued awards and erasures whose time has come (both are queued upstream, §2.4, §3)."""
        self._settle_deletions(now)
        if not self._pending:
            return
        still_pending = []
        for credit in self._pending:
            if credit["visible_at"] <= now:
                member = self._members.get(credit["user_id"])
                if member is not None:
                    member["total_points"] += credit["num_points"]
                    member["redeemable_points"] += credit["num_points"]
            else:
                still_pending.append(credit)
        self._pending = still_pending

    def find(self, id_type: str, value: str, now: float) -> dict[str, Any] | None:
        """The stored member (internal dict) identified by ``value`` under ``id_type``, or None."""
        with self._lock:
            self._settle(now)
            member_id: int | None
            if id_type == "id":
                member_id = int(value) if value.strip().isdigit() else None
            elif id_type == "email":
                member_id = self._index["email_address"].get(value.lower())
            elif id_type in ("third_party_id", "username"):
                member_id = self._index[id_type].get(value)
            elif id_type == "mobile_phone_number":
                member_id = self._by_mobile.get(value)
            else:
                raise ValueError(f"unsupported id_type {id_type!r}")
            return self._members.get(member_id) if member_id is not None else None

    def profile(self, member_id: int, now: float) -> dict[str, Any]:
        """Rendered profile of a member (raises the 404 ApiError when it vanished)."""
        with self._lock:
            self._settle(now)
            member = self._members.get(member_id)
            if member is None:
                raise user_not_found()
            return render_profile(member)

    def profiles(self, now: float) -> list[dict[str, Any]]:
        """Every member's rendered profile, in creation order."""
        with self._lock:
            self._settle(now)
            return [render_profile(m) for m in self._members.values()]

    def _check_unique(self, changes: Mapping[str, Any], member_id: int | None) -> None:
        for name in UNIQUE_FIELDS:
            value = changes.get(name)
            if value is None:
                continue
            owner = self._index[name].get(_index_key(name, value))
            if owner is not None and owner != member_id:
                # "username already taken." is from public QA code; the other two follow it (assumed).
                raise ApiError(400, "input_error", f"{name} already taken.")

    def _reindex(self, member: dict[str, Any], old: Mapping[str, Any]) -> None:
        for name in UNIQUE_FIELDS:
            if old.get(name) is not None:
                self._index[name].pop(_index_key(name, old[name]), None)
            if member.get(name) is not None:
                self._index[name][_index_key(name, member[name])] = member["id"]
        if old.get("mobile_phone_number") and self._by_mobile.get(old["mobile_phone_number"]) == member["id"]:
            del self._by_mobile[old["mobile_phone_number"]]
        if member.get("mobile_phone_number"):
            self._by_mobile.setdefault(member["mobile_phone_number"], member["id"])

    def create(self, changes: Mapping[str, Any], now: float, *, member_id: int | None = None) -> dict[str, Any]:
        """Store a new member from validated ``changes``; returns the rendered profile."""
        with self._lock:
            self._check_unique(changes, None)
            if member_id is None:
                member_id = self._next_id
            elif member_id in self._members:
                raise ValueError(f"member id {member_id} already exists")
            self._next_id = max(self._next_id, member_id) + 1
            stamp = int(now)
            member: dict[str, Any] = {
                "id": member_id,
                # Documented default for email_is_verified is 1; receive_email_updates default assumed 0.
                "email_is_verified": 1,
                "receive_email_updates": 0,
                "is_active": 1,
                "total_points": 0,
                "redeemable_points": 0,
                "date_created": stamp,
                "date_last_updated": stamp,
            }
            member.update({k: copy.deepcopy(v) for k, v in changes.items() if k not in _TRANSIENT_FIELDS})
            if member.get("receive_email_updates"):
                member["date_receive_email_opt_in"] = stamp
            self._members[member_id] = member
            self._reindex(member, {})
            return render_profile(member)

    def update(self, member_id: int, changes: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Apply a validated partial update (only sent fields change; None clears)."""
        with self._lock:
            self._settle(now)
            member = self._members.get(member_id)
            if member is None:
                raise user_not_found()
            self._check_unique(changes, member_id)
            old = {name: member.get(name) for name in (*UNIQUE_FIELDS, "mobile_phone_number")}
            stamp = int(now)
            for key, value in changes.items():
                if key in _TRANSIENT_FIELDS:
                    continue
                if key == "custom_data":
                    # Attributes merge key by key; a null value removes one (assumed).
                    merged = dict(member.get("custom_data") or {})
                    for attr, attr_value in value.items():
                        if attr_value is None:
                            merged.pop(attr, None)
                        else:
                            merged[attr] = attr_value
                    member["custom_data"] = merged
                    continue
                if key == "receive_email_updates" and value is not None and value != member.get(key):
                    member["date_receive_email_opt_in" if value else "date_receive_email_opt_out"] = stamp
                member[key] = copy.deepcopy(value)
            # remove_points is "only meaningful with is_active" (deactivation wipes points) [DOC].
            if changes.get("is_active") == 0 and changes.get("remove_points") == 1:
                member["total_points"] = 0
                member["redeemable_points"] = 0
            member["date_last_updated"] = stamp
            self._reindex(member, old)
            return render_profile(member)

    def delete_member(self, member_id: int) -> dict[str, Any]:
        """Remove a member at once, as an outside deletion (Control Center, another integration) leaves
        it: its identifiers are free again and the API answers 404 for it. Returns the last profile.

        Raises the 404 ApiError when there is no such member. (CrowdTwist's own ``DELETE
        /v2/users/{id}`` queues the deletion; this admin shortcut skips the queue.)
        """
        with self._lock:
            member = self._members.get(member_id)
            if member is None:
                raise user_not_found()
            profile = render_profile(member)
            del self._members[member_id]
            self._reindex({"id": member_id}, member)
            return profile

    # ------------------------------------------------------------------ erasure (DELETE /v2/users/{id})
    def queue_deletion(self, member_id: int, now: float, *, delay: float, refuse: bool = False) -> dict[str, Any]:
        """Queue a member's erasure as ``DELETE /v2/users/{id}`` does; returns the 200 body.

        Documented (§2.4): 200 ``{"user_id", "status": "Queued"}``, 404 for no such member, 400 "unable
        to initiate deletion" and 400 for a member inactive with redeemable points. Assumed: a member
        already queued is answered "Queued" again (nothing changes); ``refuse`` gives the generic 400.
        The member stays readable until the erasure completes ``delay`` seconds later.
        """
        with self._lock:
            self._settle(now)
            member = self._members.get(member_id)
            if member is None:
                raise ApiError(404, "page_not_found", "Member not found")
            deletion = self._deletions.get(member_id)
            if deletion is not None and deletion["status"] != "Deletion_completed":
                return {"user_id": member_id, "status": "Queued"}
            if not member.get("is_active", 1) and member.get("redeemable_points", 0) > 0:
                raise ApiError(400, "input_error", "Member is inactive but has redeemable points")
            if refuse:
                raise ApiError(400, "input_error", "Unable to initiate deletion")
            self._deletions[member_id] = {
                "user_id": member_id,
                "initiated_by": "API",
                "status": "Deletion_initiated",
                "queued_at": now,
                "done_at": now + delay,
                "status_history": [{"status": "Deletion_initiated", "date": _iso(now)}],
            }
            self._deletions_pending.add(member_id)
            return {"user_id": member_id, "status": "Queued"}

    def deletion_status(self, member_id: int, now: float) -> dict[str, Any]:
        """The User Deletion Status body (§2.4): status and history; 404 when nothing was queued."""
        with self._lock:
            self._settle(now)
            deletion = self._deletions.get(member_id)
            if deletion is None:
                raise ApiError(404, "page_not_found", "Member does not exist or not queued for deletion")
            keys = ("user_id", "initiated_by", "status", "status_history")
            return {key: copy.deepcopy(deletion[key]) for key in keys}

    def _settle_deletions(self, now: float) -> None:
        if not self._deletions_pending:
            return
        for member_id in list(self._deletions_pending):
            deletion = self._deletions[member_id]
            halfway = (deletion["queued_at"] + deletion["done_at"]) / 2
            if deletion["status"] == "Deletion_initiated" and now >= halfway and now < deletion["done_at"]:
                deletion["status"] = "Deletion_in_progress"
                deletion["status_history"].append({"status": "Deletion_in_progress", "date": _iso(now)})
            if now >= deletion["done_at"]:
                member = self._members.pop(member_id, None)
                if member is not None:
                    self._reindex({"id": member_id}, member)
                deletion["status"] = "Deletion_completed"
                deletion["status_history"].append({"status": "Deletion_completed", "date": _iso(now)})
                self._deletions_pending.discard(member_id)

    def deletions(self) -> list[dict[str, Any]]:
        """Every erasure queued so far (admin view), oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._deletions.values()))

    def seed_member(self, fields: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Store a member without request validation (test seeding); uniqueness still applies."""
        data = dict(fields)
        member_id = data.pop("id", None)
        points = data.pop("total_points", None)
        redeemable = data.pop("redeemable_points", points)
        for name in LOCATION_FIELDS:
            data.setdefault(name, None)
        if isinstance(data.get("country_code"), str):
            data["country_code"] = data["country_code"].upper()
        profile = self.create(data, now, member_id=int(member_id) if member_id is not None else None)
        if points is not None:
            with self._lock:
                member = self._members[profile["id"]]
                member["total_points"] = int(points)
                member["redeemable_points"] = int(redeemable if redeemable is not None else points)
                profile = render_profile(member)
        return profile

    # ------------------------------------------------------------------ credits
    def credit(
        self,
        member_id: int,
        request: CreditRequest,
        now: float,
        *,
        event_key: str | None = None,
        duplicate_window: float | None = None,
        queue_delay: float = 0.0,
    ) -> dict[str, Any]:
        """Record one activity credit; returns the response body.

        ``event_key`` + ``duplicate_window`` switch on the "Event already processed" mode: the same key
        for the same member within the window is refused. That behaviour is NOT FOUND in CrowdTwist
        sources (only the reference connector doc mentions it) and is off by default.
        """
        with self._lock:
            self._settle(now)
            if member_id not in self._members:
                raise user_not_found()
            if event_key is not None and duplicate_window is not None:
                key = (member_id, event_key)
                last = self._recent_events.get(key)
                if last is not None and now - last < duplicate_window:
                    raise ApiError(400, "duplicate_event", "Event already processed")
                self._recent_events[key] = now
                if len(self._recent_events) > 50_000:
                    cutoff = now - duplicate_window
                    self._recent_events = {k: t for k, t in self._recent_events.items() if t >= cutoff}
            activity = self._activities[request.activity_id]
            points = request.num_points if request.num_points is not None else activity["num_points"]
            history = self._credits_by_member.setdefault(member_id, [])
            cap = activity.get("freq_cap")
            awarded = True
            if cap is not None:
                done = sum(1 for c in history if c["awarded"] and c["activity_id"] == request.activity_id)
                awarded = done < cap
            credit = {
                "credit_id": self._next_credit_id,
                "user_id": member_id,
                "activity_id": request.activity_id,
                "num_points": points,
                "activity_date": request.activity_date,
                "extra_data": copy.deepcopy(request.extra_data),
                "awarded": awarded,
                "created_at": now,
                "visible_at": now + queue_delay,
            }
            self._next_credit_id += 1
            self._credits.append(credit)
            history.append(credit)
            if awarded:
                self._pending.append(credit)
                self._settle(now)
                return {"awarded": True, UNKNOWN_KEY: UNKNOWN_VALUE}
            # Body of a capped award is NOT FOUND; {"awarded": false, ...} with 200 is assumed.
            return {"awarded": False, "message": "Frequency cap reached for this activity", UNKNOWN_KEY: UNKNOWN_VALUE}

    def credits(self) -> list[dict[str, Any]]:
        """Every recorded credit (awarded or not), oldest first."""
        with self._lock:
            return copy.deepcopy(self._credits)

    def history(
        self, member_id: int, now: float, date_start: int | None, date_end: int | None
    ) -> list[dict[str, Any]]:
        """Completed (awarded, already processed) activities of a member within the date window.

        Item shape follows the legacy v2 doc (activity_id, date_created, date_awarded, name, num_points,
        extra_data), newest first; the engine cuts the list into v2.1 pages (§3, §6).
        The window applies to ``date_created`` (acceptance time), both ends inclusive (assumed).
        """
        with self._lock:
            self._settle(now)
            if member_id not in self._members:
                raise user_not_found()
            items = []
            for credit in self._credits_by_member.get(member_id, []):
                created = int(credit["created_at"])
                if not credit["awarded"] or credit["visible_at"] > now:
                    continue
                if (date_start is not None and created < date_start) or (date_end is not None and created > date_end):
                    continue
                activity = self._activities.get(credit["activity_id"], {})
                items.append(
                    {
                        "activity_id": credit["activity_id"],
                        "name": activity.get("title"),
                        "num_points": credit["num_points"],
                        "date_created": created,
                        "date_awarded": int(credit["visible_at"]),
                        "activity_date": credit["activity_date"],
                        "extra_data": copy.deepcopy(credit["extra_data"]),
                        UNKNOWN_KEY: UNKNOWN_VALUE,
                    }
                )
            items.reverse()
            return items


def _iso(now: float) -> str:
    """ISO-8601 with milliseconds and offset, as the deletion-status samples write dates (§2.4)."""
    return datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds")


def event_key(body: Any) -> str:
    """Canonical form of a parsed JSON body, so key order and whitespace do not matter."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def seed_all(
    state: ProgramState, activities: Iterable[Mapping[str, Any]], members: Iterable[Mapping[str, Any]], now: float
) -> None:
    """Load the configured default activities and members into an empty state."""
    for activity in activities:
        state.add_activity(**dict(activity))
    for member in members:
        state.seed_member(member, now)
