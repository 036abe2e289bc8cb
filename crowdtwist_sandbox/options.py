"""Configuration of a sandbox instance: auth mode, program setup and fault-injection knobs.

`SandboxOptions` is a plain dataclass so tests can build it directly, the CLI can fill it from flags
and the admin endpoint can patch it from JSON (`options_to_json` / `apply_json_options`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Long, realistic-looking dummy credentials. They are public on purpose: the sandbox is a test double.
DEFAULT_API_KEY = "ctsbx_3f9a2c7e1b8d4e6f9a0b3c5d7e9f1a2b"
EXAMPLE_HMAC_PUBLIC_KEY = "CTPUBsbx7Kq2Wm9Zr4Tn6Yp1Xc8Vb3Nd5Lf0"
EXAMPLE_HMAC_PRIVATE_KEY = "CTPRIVsbxH4s9Jd2Kf7Lg1Qw6Er3Ty8Ui5Op0Az"

LATENCY_DISTRIBUTIONS = ("fixed", "uniform", "normal")
RATE_LIMIT_ALGORITHMS = ("sliding_window", "fixed_window", "token_bucket")
# How activity history answers. "paged" is the v2.1 list shape (§3, §6); the others are faults a
# connector must not take for "no credits": the legacy unpaginated array, an object whose list sits
# under an unknown key, "{}", "null", 404 "User does not exist." for a member that exists, and pages
# that never end (every page names a next one).
HISTORY_ANSWER_SHAPES = (
    "paged", "bare_array", "unknown_key", "empty_object", "null", "user_not_found", "endless_pages",
)

# "Ad Hoc Points" is the first activity title in both Oracle's doc sample and public QA code (§4).
DEFAULT_ACTIVITIES: tuple[Mapping[str, Any], ...] = (
    {"id": "1001", "title": "Ad Hoc Points", "num_points": 10},
    {"id": "1002", "title": "Purchase Bonus", "num_points": 50},
    {"id": "1003", "title": "Newsletter Sign-up", "num_points": 25, "freq_cap": 1},
)

# Fields that cannot be expressed in JSON (injected callables) and so never travel over the admin API.
_NON_JSON_FIELDS = frozenset({"clock", "sleep"})
_TUPLE_FIELDS = frozenset({"activities", "members", "custom_attributes", "undeletable_member_ids"})


@dataclass(frozen=True)
class SandboxOptions:
    """Every knob of one sandbox instance (one fake CrowdTwist program).

    Auth: API-key mode unless both ``hmac_public_key`` and ``hmac_private_key`` are set, in which case
    every API call must be HMAC-signed and an API key alone is refused.

    Times given as ``*_ms`` are milliseconds; ``clock`` returns epoch seconds (wall clock) and drives
    the HMAC window, record dates, duplicate window, queue delay, maintenance window and rate limit,
    so tests can inject a fake clock. ``sleep`` is used for latency and slow responses.
    Frozen: change a running sandbox with ``Sandbox.set_options(...)`` so dependent state follows.
    """

    # --- authentication ---------------------------------------------------------------------------
    api_key: str = DEFAULT_API_KEY
    hmac_public_key: str | None = None
    hmac_private_key: str | None = None
    # Oracle's samples are 13-digit ms timestamps; accepting 10-digit seconds is NOT FOUND (opt-in).
    hmac_accept_seconds: bool = False
    hmac_window_seconds: float = 900.0

    # --- program setup ------------------------------------------------------------------------------
    activities: tuple[Mapping[str, Any], ...] = DEFAULT_ACTIVITIES
    members: tuple[Mapping[str, Any], ...] = ()
    # Allow-list of custom attribute names; empty = "No custom attributes setup for client".
    custom_attributes: tuple[str, ...] = ()
    # The 2026-04 release relaxed the country/city requirement on create (§2.2); False mimics that.
    strict_location: bool = True
    first_member_id: int = 269654579
    # Answer validation errors (400) with the request's input echoed in the message, as a server seen in
    # the masking audit did ("Invalid postal_code for Jane Doe, 42 Elm St, ..."). Whether CrowdTwist
    # itself echoes input is NOT FOUND; off by default.
    echo_input_in_errors: bool = False

    # --- credit semantics -------------------------------------------------------------------------
    duplicate_detection: bool = False
    duplicate_window_seconds: float = 2.0
    queue_delay_ms: float = 0.0
    # Activity history paging (§3, §6): the page size when a request names none, and the largest
    # one served (a bigger page_size is cut to it). 10 and 25 are the documented values of the v2.1
    # activity list; that the history uses the same is assumed.
    history_page_size: int = 10
    history_max_page_size: int = 25

    # --- member erasure (DELETE /v2/users/{id}, §2.4) -------------------------------------------------
    # How long a queued erasure takes to complete (then the member is gone and the deletion status says
    # Deletion_completed; Deletion_in_progress from halfway). Real timings are NOT FOUND (Oracle's sample
    # history spans a day); 0 completes it by the next request.
    deletion_delay_ms: float = 0.0
    # Members (CrowdTwist ids) whose DELETE answers 400 "Unable to initiate deletion" (documented answer;
    # its causes other than "inactive with points" are NOT FOUND).
    undeletable_member_ids: tuple[int, ...] = ()

    # --- fault injection knobs (API endpoints only, never /__sandbox/) ------------------------------
    latency_ms: float = 0.0
    latency_distribution: str = "fixed"
    latency_spread_ms: float = 0.0
    rate_limit_per_minute: int | None = None
    rate_limit_algorithm: str = "sliding_window"
    rate_limit_burst: int | None = None
    retry_after: bool = True
    error_rate: float = 0.0
    error_after_apply: bool = False
    maintenance_first_n: int = 0
    maintenance_window: tuple[float, float] | None = None
    drop_rate: float = 0.0
    drop_credits_only: bool = False
    slow_rate: float = 0.0
    slow_ms: float = 0.0
    history_answer_shape: str = "paged"
    # A hostile or broken middlebox: the status line and headers of this share of answers go out one
    # byte every trickle_headers_interval_ms (the request is applied first; the body follows at once).
    trickle_headers_rate: float = 0.0
    trickle_headers_interval_ms: float = 1000.0
    seed: int | None = None
    # 429 and the maintenance 503 answered on arrival, without ``latency_ms``: a gateway or load
    # balancer in front of the application refuses before the application does any work (assumed:
    # CrowdTwist documents neither, docs/crowdtwist-api-notes.md §5). True by default because it is
    # the harder case for a client (a refusal then says nothing about the round trip of real work);
    # False delays them by the latency like any answer.
    refuse_immediately: bool = True

    # --- injection ----------------------------------------------------------------------------------
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def hmac_enabled(self) -> bool:
        """True when the instance requires HMAC-signed requests."""
        return bool(self.hmac_public_key and self.hmac_private_key)

    def validate(self) -> None:  # noqa: C901 - one check per knob, in the order of the fields
        """Raise ``ValueError`` on inconsistent or out-of-range settings."""
        if bool(self.hmac_public_key) != bool(self.hmac_private_key):
            raise ValueError("hmac_public_key and hmac_private_key must be set together")
        if self.latency_distribution not in LATENCY_DISTRIBUTIONS:
            raise ValueError(f"latency_distribution must be one of {LATENCY_DISTRIBUTIONS}")
        if self.rate_limit_algorithm not in RATE_LIMIT_ALGORITHMS:
            raise ValueError(f"rate_limit_algorithm must be one of {RATE_LIMIT_ALGORITHMS}")
        if self.history_answer_shape not in HISTORY_ANSWER_SHAPES:
            raise ValueError(f"history_answer_shape must be one of {HISTORY_ANSWER_SHAPES}")
        if self.history_page_size < 1 or self.history_max_page_size < 1:
            raise ValueError("history_page_size and history_max_page_size must be at least 1")
        for name in ("error_rate", "drop_rate", "slow_rate", "trickle_headers_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        for name in ("latency_ms", "latency_spread_ms", "slow_ms", "queue_delay_ms", "maintenance_first_n",
                     "deletion_delay_ms", "trickle_headers_interval_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute <= 0:
            raise ValueError("rate_limit_per_minute must be positive (or None for no limit)")
        if self.rate_limit_burst is not None and self.rate_limit_burst <= 0:
            raise ValueError("rate_limit_burst must be positive")
        if self.maintenance_window is not None and len(self.maintenance_window) != 2:
            raise ValueError("maintenance_window must be (start_epoch, end_epoch)")
        for activity in self.activities:
            if "id" not in activity:
                raise ValueError("every activity needs an 'id'")


def option_names() -> frozenset[str]:
    """Names of every `SandboxOptions` field."""
    return frozenset(f.name for f in dataclasses.fields(SandboxOptions))


def replace_options(options: SandboxOptions, **changes: Any) -> SandboxOptions:
    """Return a copy of ``options`` with ``changes`` applied; unknown names raise ``TypeError``."""
    unknown = set(changes) - option_names()
    if unknown:
        raise TypeError(f"unknown sandbox option(s): {', '.join(sorted(unknown))}")
    for name in _TUPLE_FIELDS & set(changes):
        changes[name] = tuple(changes[name] or ())
    if changes.get("maintenance_window") is not None:
        start, end = changes["maintenance_window"]
        changes["maintenance_window"] = (float(start), float(end))
    return dataclasses.replace(options, **changes)


def options_to_json(options: SandboxOptions) -> dict[str, Any]:
    """JSON-friendly view of the options (callables left out, keys never hidden: they are dummies)."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        if f.name in _NON_JSON_FIELDS:
            continue
        value = getattr(options, f.name)
        if isinstance(value, tuple):
            value = [dict(v) if isinstance(v, Mapping) else v for v in value]
        data[f.name] = value
    return data


def json_to_changes(options: SandboxOptions, data: Mapping[str, Any]) -> dict[str, Any]:
    """Turn an admin/CLI JSON patch into `replace_options` keyword arguments.

    Besides real field names it accepts ``maintenance_seconds`` (maintenance from now for N seconds)
    as a convenience for hand-driven demos.
    """
    changes = dict(data)
    if "maintenance_seconds" in changes:
        seconds = float(changes.pop("maintenance_seconds"))
        now = options.clock()
        changes["maintenance_window"] = (now, now + seconds) if seconds > 0 else None
    forbidden = _NON_JSON_FIELDS & set(changes)
    if forbidden:
        raise TypeError(f"option(s) cannot be set over HTTP: {', '.join(sorted(forbidden))}")
    return changes
