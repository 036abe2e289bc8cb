"""The fault matrix: every way a sync gets hurt, through the real entry point, judged by one checker.

Read :data:`SCENARIOS` as a table. Each row runs ``python main.py write`` (a subprocess fed on stdin,
as the platform runs it) against a sandbox with the row's faults, interrupts it if the row says so
(SIGKILL or SIGTERM at a seeded point of its work, then a replay of what the platform re-sends:
everything after the last echoed state, with the same or shifted state positions), and is judged
by :func:`faultmatrix.judge` on every column. A row with ``resend`` then sends every row again, as a
full refresh does, under other sandbox knobs (e.g. an activity history that proves nothing); an attempt
that must stop by itself is judged on its trace instead of on running to the end:

* **fault**   the fault was actually sprung (sandbox counters, or an attempt really stopped mid-sync);
* **lost**    a good row's member or credit is missing (or a member kept a stale name);
* **doubled** more than one credit per (member, dedupe key), or two members with one identifier;
* **states**  each attempt echoed a prefix of the state ids it was sent, in order, of the same type;
              all of them when it ran to the end (exit 0); a SIGTERM ends with a transient trace;
* **counts**  each echoed state: recordCount + rejectedRecordCount = the records the platform sent
              for it (STREAM: that stream since its previous state; GLOBAL: all lines since the
              previous GLOBAL state), and the split is exact (good rows accepted, bad rows rejected);
* **secrets** no API key, HMAC private key, HMAC header or signature in stdout or stderr;
* **pii**     no input email unmasked in stdout or stderr; with ``pii`` rows (personal data in odd
              places, tests_support/pii.py), none of it in stdout, stderr or the masked reject file.

The table is printed at the end of the session. Trickled bodies and oversized answers are not sandbox
knobs: a small proxy in front of the sandbox spoils them (integration_tests/faultproxy.py); a trickled
status line and headers is one (``trickle_headers_rate``); the
client's side of them is tested with unit_tests/fakehttp.py in unit_tests/test_client.py. The longer soak (more rows, more kill
points, several seeds) is marked ``soak`` (and ``slow``, so make check skips it): ``make soak``; make
test runs it too.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
from faultmatrix import (
    DA_CREDITS,
    DA_PROFILES,
    STREAMS,
    Attempt,
    Disruption,
    Line,
    Shape,
    StateType,
    Verdict,
    bad_corpus,
    build_rows,
    judge,
    layout,
    mix,
    pii_corpus,
    record_row,
    replay_input,
    run_attempt,
)
from faultproxy import FaultProxy
from helpers import credit_config
from sandboxes import HMAC_PRIVATE_KEY, HMAC_PUBLIC_KEY, SANDBOX_API_KEY

from crowdtwist_sandbox import Sandbox, SandboxOptions

#: Records over this size are rejected (kept small so the "huge record" costs nothing).
MAX_RECORD_BYTES = 20_000


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix.

    ``faults``: sandbox knobs from the start; ``midway``: knobs set once the first attempt made
    rows / 3 API requests (a burst in the middle of the sync). ``proxy``: a
    :class:`faultproxy.FaultProxy` in front of the sandbox (trickling or oversized answers).
    ``interrupt``: stop ``interruptions`` attempts in a row with SIGKILL ("kill") or SIGTERM
    ("term"), each once it made a seeded number of API requests (at most one per row it was sent)
    plus a seeded delay; each next attempt gets what the platform re-sends, with the same state
    positions or ``shifted`` ones. ``sprung``: counters (sandbox or proxy) that must reach a
    minimum, proving the fault happened. ``outside_changes``: with a member index, once the attempts
    finished, that many members are deleted and as many changed in CrowdTwist outside the connector,
    the index is aged past ``member_index_max_age_days``, and the same rows are synced again (the
    next full-refresh sync); ``outside_deleted`` counts the deletions. Every row expects the same:
    nothing lost or doubled, states and counts exact, no secret or PII in the output.
    """

    name: str
    shape: Shape
    faults: Mapping[str, Any] = field(default_factory=dict)
    midway: Mapping[str, Any] = field(default_factory=dict)
    rows: int = 30
    every: int = 6
    state_type: StateType = "STREAM"
    mode: str = "append_dedup"  # profiles: append_dedup = upsert, append = insert, soft_delete = remove
    auth: Literal["api_key", "hmac"] = "api_key"
    config: Mapping[str, Any] = field(default_factory=dict)
    bad_input: bool = False
    interrupt: Literal["none", "kill", "term"] = "none"
    interruptions: int = 0
    replay: Literal["same", "shifted"] = "same"
    seed: int = 0
    sprung: Mapping[str, int] = field(default_factory=dict)
    proxy: Mapping[str, Any] = field(default_factory=dict)
    outside_changes: int = 0
    # After the rows above ran to the end, the platform sends every row again (a full refresh, a reset,
    # a re-run) with ``resend`` knobs set; ``resend_stops``: that attempt must stop by itself with this
    # failure type, then the knobs are cleared and the next attempt (what follows its last echoed state)
    # runs to the end. Every row was credited already, so nothing may be credited again.
    resend: Mapping[str, Any] | None = None
    resend_stops: Literal["transient_error", "config_error"] | None = None
    pii: int = 0  # people whose data is planted in odd places (pii_corpus); their rows must be rejected
    # "both" only: every credit line before every profile line (the platform does not promise stream order).
    credits_first: bool = False


RETRIES = {"max_retries": 10}
SLOW_TIMEOUT = {"request_timeout_seconds": 1, "max_retries": 10}
#: A program-wide limit far below our 9,000/min budget: 20 requests/s, bursts of 10.
STORM = {"rate_limit_per_minute": 1200, "rate_limit_algorithm": "token_bucket", "rate_limit_burst": 10}
CREDIT_POST, PROFILE_WRITE = r"POST /v2/users/[^/]+/activities$", r"(POST|PUT) /v2/users"
KILL = {"latency_ms": 15, "queue_delay_ms": 40}  # segments take long enough to be killed inside

SCENARIOS: list[Scenario] = [
    Scenario("clean/profiles-upsert", "profiles"),
    Scenario("clean/credits-hmac", "credits", auth="hmac"),
    # 5xx bursts: before the change is applied, and after it (the answer says 500, the change landed).
    Scenario("5xx/profiles", "profiles", {"error_rate": 0.2, "seed": 1}, rows=24, config=RETRIES, sprung={"500": 3}),
    Scenario("5xx-after-apply/profiles", "profiles", {"error_rate": 0.2, "error_after_apply": True, "seed": 2},
             rows=24, config=RETRIES, sprung={"500": 3}),
    Scenario("5xx/credits", "credits", {"error_rate": 0.2, "seed": 3}, rows=24, config=RETRIES, sprung={"500": 3}),
    Scenario("5xx-after-apply/credits-hmac", "credits",
             {"error_rate": 0.2, "error_after_apply": True, "seed": 4, "queue_delay_ms": 40},
             rows=24, auth="hmac", config=RETRIES, sprung={"500": 3}),
    # Processed, then the connection is dropped before the answer.
    Scenario("drop/profiles-upsert", "profiles", {"drop_rate": 0.1, "seed": 5}, config=RETRIES, sprung={"dropped": 2}),
    Scenario("drop/profiles-insert", "profiles", {"drop_rate": 0.15, "seed": 6}, mode="append", config=RETRIES,
             sprung={"dropped": 2}),
    Scenario("drop/credits", "credits", {"drop_rate": 0.25, "drop_credits_only": True, "seed": 7,
                                         "queue_delay_ms": 40}, config=RETRIES, sprung={"dropped": 2}),
    # 429 storms: a program-wide limit far below our budget, with and without Retry-After.
    Scenario("429+retry-after/credits", "credits", STORM, rows=24, sprung={"429": 2}),
    Scenario("429-no-retry-after/profiles", "profiles", {**STORM, "retry_after": False}, rows=24, sprung={"429": 2}),
    # Maintenance (503 HTML page): at the start of the sync, and as a window in its middle.
    Scenario("maintenance-at-start/profiles", "profiles", {"maintenance_first_n": 4}, sprung={"503": 4}),
    Scenario("maintenance-midway/credits", "credits", midway={"maintenance_first_n": 6}, sprung={"503": 6}),
    # Slow answers past the read timeout: applied, but the client gave up waiting.
    Scenario("slow-past-timeout/credits", "credits",
             {"slow_rate": 0.1, "slow_ms": 1500, "seed": 9, "queue_delay_ms": 40}, config=SLOW_TIMEOUT,
             sprung={"slow": 2}),
    Scenario("slow-past-timeout/profiles", "profiles", {"slow_rate": 0.1, "slow_ms": 1500, "seed": 10},
             config=SLOW_TIMEOUT, sprung={"slow": 2}),
    # Trickling and oversized answers (a proxy spoils them after the sandbox applied the request).
    Scenario("trickle/credits", "credits", {"queue_delay_ms": 40}, rows=20, config=SLOW_TIMEOUT,
             proxy={"fault": "trickle", "rate": 0.1, "endpoint": CREDIT_POST, "seed": 22}, sprung={"trickled": 2}),
    Scenario("oversized/credits", "credits", {"queue_delay_ms": 40}, config=RETRIES,
             proxy={"fault": "oversize", "rate": 0.15, "endpoint": CREDIT_POST, "seed": 23}, sprung={"oversized": 2}),
    Scenario("oversized/profiles-insert", "profiles", mode="append", config=RETRIES,
             proxy={"fault": "oversize", "rate": 0.15, "endpoint": PROFILE_WRITE, "seed": 24}, sprung={"oversized": 2}),
    # kill -9 at seeded points (a count of API requests), each followed by the platform's replay.
    Scenario("kill-9x3/credits/same-states", "credits", KILL, rows=36, interrupt="kill", interruptions=3, seed=11),
    Scenario("kill-9x3/credits/shifted-states", "credits", KILL, rows=36, interrupt="kill", interruptions=3,
             replay="shifted", seed=12),
    Scenario("kill-9/profiles-insert", "profiles", KILL, rows=36, mode="append", interrupt="kill",
             interruptions=1, seed=14),
    Scenario("kill-9/two-streams/stream-states", "both", KILL, rows=36, interrupt="kill", interruptions=1, seed=15),
    Scenario("kill-9/two-streams/global-states/shifted", "both", KILL, rows=36, state_type="GLOBAL",
             interrupt="kill", interruptions=1, replay="shifted", seed=16),
    # SIGTERM: drain, echo what is safe, exit non-zero; then the replay.
    Scenario("sigterm/credits", "credits", {"latency_ms": 30}, rows=36, interrupt="term", interruptions=1, seed=17),
    # Two streams (data activation: profiles + credits matched by third_party_id).
    Scenario("two-streams/stream-states", "both", every=5),
    Scenario("two-streams/global-states-hmac", "both", every=5, state_type="GLOBAL", auth="hmac"),
    # The bad-input corpus mixed with good rows: good rows written, bad rows rejected in their state.
    Scenario("bad-input/profiles/stream-states", "profiles", bad_input=True, seed=19),
    Scenario("bad-input/two-streams/global-states", "both", bad_input=True, state_type="GLOBAL", seed=21),
    # Member index: members deleted and changed in CrowdTwist outside the connector, index entries past
    # their max age, the same rows synced again: the deleted members re-created, the changed corrected.
    Scenario("index-resync/outside-deletions/profiles-upsert", "profiles", rows=24, outside_changes=5,
             sprung={"outside_deleted": 5}),
    # Issue 21: every row credited, then all sent again (a full refresh) while the activity history answers
    # in a shape that cannot prove a credit absent. The re-send must stop (like a 500 does) and credit
    # nothing; once the answer is normal the platform's next attempt finishes, still crediting nothing.
    # (the other shapes are in the soak, and each shape in test_history_answers.py: three attempts cost
    # about 7 s of start-up.)
    Scenario("history-unknown_key/full-resend", "credits", rows=6, resend={"history_answer_shape": "unknown_key"},
             resend_stops="transient_error", sprung={"history:unknown_key": 1}),
    # Pages of one credit: each member's 3 credits are pages 1 to 3 of its history, all read.
    Scenario("history-paged/full-resend", "credits", {"history_max_page_size": 1}, rows=6, resend={},
             sprung={"history_next_page": 4}),
    # Personal data in odd places (free text in allow-listed fields, keys, nested objects), and a server
    # whose validation errors echo the whole input: masked reject file and logs must hold none of it.
    Scenario("pii-odd-places/echoing-server/profiles", "profiles", {"echo_input_in_errors": True}, rows=12,
             pii=3, seed=25, config={"reject_stop_sample": 0}, sprung={"400": 3}),
    # Issue 19: member removal (soft_delete). Erasures whose answers are lost after CrowdTwist queued them
    # (the retry meets a queued or erased member: "Queued" again or 404 already gone). Kills in the middle
    # of erasures and deactivations are in the soak (and test_member_removal.py).
    Scenario("drop/profiles-erase", "profiles", {"drop_rate": 0.2, "seed": 26}, rows=24, mode="soft_delete",
             config={**RETRIES, "delete_behaviour": "erase", "erase_status_wait_seconds": 0}, sprung={"dropped": 2}),
    # Issue 20: 429s and the maintenance page answered at once by a gateway while real work takes 30 ms
    # (the sandbox's refuse_immediately): fast refusals shrink nothing, lose nothing, double nothing.
    Scenario("429-at-once/credits", "credits", {**STORM, "retry_after": False, "latency_ms": 30}, rows=24,
             sprung={"429": 2}),
    Scenario("maintenance-at-once/profiles", "profiles", {"latency_ms": 30}, midway={"maintenance_first_n": 6},
             sprung={"503": 6}),
    # Issue 18: the credit stream before the member stream of a first sync. Each credit answers "not found",
    # waits for its member, and is credited once the member exists; states wait for it; fail-fast (on by
    # default) sees final outcomes only. (Killed while credits wait, and the platform's replay: in the soak.)
    Scenario("credits-first/two-streams/stream-states", "both", every=5, credits_first=True, sprung={"404": 5}),
]

#: The soak (``make soak``): the rows above in more combinations, more rows, more kill points, more seeds.
SOAK: list[Scenario] = [
    Scenario("soak/429+retry-after/profiles", "profiles", STORM, sprung={"429": 2}),
    Scenario("soak/429-no-retry-after/credits", "credits", {**STORM, "retry_after": False}, sprung={"429": 2}),
    Scenario("soak/maintenance-midway/profiles", "profiles", {"latency_ms": 10}, midway={"maintenance_first_n": 6},
             sprung={"503": 6}),
    Scenario("soak/slow-within-timeout/credits", "credits", {"slow_rate": 0.3, "slow_ms": 300, "seed": 8},
             sprung={"slow": 5}),
    Scenario("soak/sigterm/profiles", "profiles", {"latency_ms": 30}, rows=36, interrupt="term", interruptions=1,
             seed=18),
    Scenario("soak/bad-input/credits/stream-states", "credits", bad_input=True, seed=20),
    Scenario("soak/drop+5xx-after-apply/credits", "credits",
             {"drop_rate": 0.1, "error_rate": 0.1, "error_after_apply": True, "seed": 301, "queue_delay_ms": 40},
             rows=150, every=10, config={**RETRIES, "max_concurrency": 8}, sprung={"dropped": 5, "500": 5}),
    *(
        Scenario(f"soak/kill-9x6/credits/{replay}-states/seed{seed}", "credits", KILL, rows=120, every=8,
                 interrupt="kill", interruptions=6, replay=replay, seed=seed, config={"max_concurrency": 8})
        for seed in (101, 102) for replay in ("same", "shifted")
    ),
    Scenario("soak/kill-9x3/profiles-upsert/shifted", "profiles", KILL, rows=60, interrupt="kill", interruptions=3,
             replay="shifted", seed=13),
    *(
        Scenario(f"soak/kill-9x4/two-streams/{kind.lower()}-states/seed{seed}", "both", KILL, rows=120, every=8,
                 state_type=kind, interrupt="kill", interruptions=4, replay="shifted", seed=seed)
        for seed in (201, 202) for kind in ("STREAM", "GLOBAL")
    ),
    # Issue 21, the other history answers that prove nothing (see the history rows of SCENARIOS).
    *(
        Scenario(f"soak/history-{shape}/full-resend", "credits", rows=6, resend={"history_answer_shape": shape},
                 resend_stops="transient_error", sprung={f"history:{shape}": 1})
        for shape in ("empty_object", "null")
    ),
    Scenario("soak/history-endless-pages/full-resend", "credits", rows=6,
             resend={"history_answer_shape": "endless_pages"}, resend_stops="config_error",
             sprung={"history:endless_pages": 100}),
    # Issue 19: kill -9 three times in the middle of deactivations (see the removal rows of SCENARIOS).
    Scenario("soak/kill-9x3/profiles-deactivate/shifted", "profiles", KILL, rows=48, mode="soft_delete",
             interrupt="kill", interruptions=3, replay="shifted", seed=28),
    Scenario("soak/trickle-headers/profiles-insert", "profiles",
             {"trickle_headers_rate": 0.1, "trickle_headers_interval_ms": 500, "seed": 33}, rows=36, mode="append",
             config=SLOW_TIMEOUT, sprung={"trickled_headers": 2}),
    # Issue 18, credits before members (see SCENARIOS), in GLOBAL states, killed three times.
    Scenario("soak/credits-first/kill-9x3/two-streams/global-states", "both", KILL, rows=60, every=8,
             state_type="GLOBAL", interrupt="kill", interruptions=3, replay="shifted", seed=27, credits_first=True,
             sprung={"404": 3}),
    # Rows of SCENARIOS moved here to keep make test within its budget (each is also covered by its own
    # test file in make test: test_history_answers, test_member_removal, test_attempt_deadline, test_members_later).
    Scenario("soak/history-user_not_found/full-resend", "credits", rows=6,
             resend={"history_answer_shape": "user_not_found"}, resend_stops="transient_error",
             sprung={"history:user_not_found": 1}),
    Scenario("soak/kill-9/profiles-erase", "profiles", KILL, rows=36, mode="soft_delete", interrupt="kill",
             interruptions=1, seed=39, config={"delete_behaviour": "erase", "erase_status_wait_seconds": 0}),
    # Status line and headers trickled a byte every 500 ms (within the 1 s read timeout, ~100 s in all), after
    # the sandbox applied the request: each such attempt ends at its 2 s deadline (credits: verified).
    Scenario("soak/trickle-headers/credits", "credits",
             {"trickle_headers_rate": 0.1, "trickle_headers_interval_ms": 500, "seed": 31, "queue_delay_ms": 40},
             rows=20, config=SLOW_TIMEOUT, sprung={"trickled_headers": 2}),
    Scenario("soak/credits-first/kill-9/two-streams/shifted", "both", KILL, rows=36, interrupt="kill", interruptions=1,
             replay="shifted", seed=26, credits_first=True, sprung={"404": 3}),
]


# -- running a row -----------------------------------------------------------------------------------


def _catalog(scenario: Scenario) -> dict[str, Any]:
    if scenario.shape == "both":
        streams = [
            {"stream": {"name": DA_PROFILES, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
             "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
             "destination_object_name": "user_profile", "primary_key": [["third_party_id"]]},
            {"stream": {"name": DA_CREDITS, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
             "sync_mode": "full_refresh", "destination_sync_mode": "append",
             "destination_object_name": "activity_credit", "primary_key": [["third_party_id"]]},
        ]
    else:
        mode = scenario.mode if scenario.shape == "profiles" else "append"
        streams = [{"stream": {"name": STREAMS[scenario.shape][0], "json_schema": {},
                               "supported_sync_modes": ["full_refresh", "incremental"]},
                    "sync_mode": "incremental", "destination_sync_mode": mode}]
    return {"streams": streams}


def _config(sandbox: Sandbox, scenario: Scenario, tmp_path: Path, base_url: str) -> dict[str, Any]:
    object_type = "user_profile" if scenario.shape == "profiles" else "activity_credit"
    config = credit_config(sandbox, hmac=scenario.auth == "hmac", object_type=object_type, **scenario.config)
    config["api_base_url"] = base_url
    if scenario.bad_input or scenario.pii:
        config["rejected_records_path"] = str(tmp_path / "rejects.jsonl")  # masked (the default)
        config["max_record_bytes"] = MAX_RECORD_BYTES
    if scenario.outside_changes:
        config["member_index_path"] = str(tmp_path / "members.sqlite")
        config["member_index_max_age_days"] = INDEX_MAX_AGE_DAYS
    return config


@dataclass
class Outcome:
    """A row's result: the attempts it took and the checker's verdict."""

    attempts: list[Attempt]
    verdict: Verdict
    seconds: float

    def attempts_label(self) -> str:
        """How the attempts ended, e.g. ``36r kill@r9+0.02s→-9 2s, 24r→0 5s``."""
        return ", ".join(attempt.label() for attempt in self.attempts)


class _SlowCounter:
    """The sandbox's sleep, counting the sleeps of a slow answer (``slow_ms``)."""

    def __init__(self, slow_seconds: float) -> None:
        self.slow_seconds = slow_seconds
        self.count = 0
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        if self.slow_seconds and seconds == self.slow_seconds:
            with self._lock:
                self.count += 1
        time.sleep(seconds)


def run_scenario(scenario: Scenario, sandbox_factory: Any, tmp_path: Path) -> Outcome:
    """Run one row of the matrix end to end and judge it."""
    started = time.monotonic()
    knobs = dict(scenario.faults)
    slow = _SlowCounter(knobs.get("slow_ms", 0) / 1000.0)
    knobs["sleep"] = slow.sleep  # counts the slow answers, which the sandbox does not count itself
    if scenario.auth == "hmac":
        knobs.update(hmac_public_key=HMAC_PUBLIC_KEY, hmac_private_key=HMAC_PRIVATE_KEY)
    sandbox = sandbox_factory(**knobs)
    prefix = "".join(ch if ch.isalnum() else "-" for ch in scenario.name)[-40:].strip("-")
    delete = scenario.config.get("delete_behaviour", "deactivate") if scenario.mode == "soft_delete" else None
    data = build_rows(scenario.shape, scenario.rows, prefix=prefix, insert=scenario.mode == "append", delete=delete)
    for member in data.seed_members:
        sandbox.add_member(**member)
    rows = data.rows
    if scenario.bad_input:
        rows = mix(rows, bad_corpus(scenario.shape, max_record_bytes=MAX_RECORD_BYTES), scenario.seed)
    if scenario.pii:
        planted, data.people = pii_corpus(scenario.shape, scenario.pii, prefix=prefix, seed=scenario.seed)
        rows = mix(rows, planted, scenario.seed + 1)
    if scenario.credits_first:
        rows = [line for line in rows if line.stream == DA_CREDITS] + [line for line in rows if line.stream != DA_CREDITS]
    streams = STREAMS[scenario.shape]
    lines = layout(rows, scenario.every, scenario.state_type, streams, first_id=1)

    proxy = FaultProxy(sandbox.base_url, **scenario.proxy).start() if scenario.proxy else None
    deleted = 0
    try:
        attempts = _attempts(scenario, sandbox, lines, tmp_path, proxy.base_url if proxy else sandbox.base_url)
        if scenario.outside_changes:
            deleted = _change_outside_and_age_the_index(scenario, sandbox, data.effects, tmp_path)
            resync = layout(rows, scenario.every, scenario.state_type, streams, first_id=900)
            attempts.append(run_attempt(tmp_path / "config.json", tmp_path / "catalog.json", resync, sandbox))
    finally:
        if proxy is not None:
            proxy.stop()
    verdict = judge(
        sandbox, attempts, data.effects,
        secrets=(SANDBOX_API_KEY, HMAC_PRIVATE_KEY), emails=data.emails, sprung=scenario.sprung,
        signal_expected=scenario.interruptions > 0,
        extra_counters={**(proxy.counts if proxy else {}), "slow": slow.count, "outside_deleted": deleted},
        people=data.people, masked_files=[tmp_path / "rejects.jsonl"] if scenario.pii else [],
    )
    if scenario.bad_input:
        # Every rejected row is kept in the reject file, once per attempt that rejected it.
        stored = (tmp_path / "rejects.jsonl").read_text().splitlines()
        rejected = sum(1 for attempt in attempts for line in attempt.lines if not line.is_state and not line.good)
        if len(stored) != rejected:
            verdict.counts.append(f"the reject file holds {len(stored)} rows, {rejected} were rejected")
    return Outcome(attempts, verdict, time.monotonic() - started)


#: member_index_max_age_days of the index rows; the index is aged past it before the re-sync.
INDEX_MAX_AGE_DAYS = 7


def _change_outside_and_age_the_index(
    scenario: Scenario, sandbox: Sandbox, effects: list[Any], tmp_path: Path
) -> int:
    """Delete ``outside_changes`` members and change as many others in CrowdTwist, as Control Center or
    another integration would, then age the index as if ``INDEX_MAX_AGE_DAYS`` + 1 days passed. Returns
    how many members were deleted."""
    members = [effect for effect in effects if effect.kind == "member"]
    n = scenario.outside_changes
    deleted = 0
    for effect in members[:n]:
        sandbox.delete_member(effect.id_type, effect.member)
        deleted += 1
    for effect in members[n : 2 * n]:
        answer = requests.put(
            f"{sandbox.base_url}/v2/users/{effect.member}", params={"id_type": effect.id_type},
            json={"first_name": "Outside"}, headers={"X-CT-Authorization": f"CTApiKey {SANDBOX_API_KEY}"}, timeout=10,
        )
        assert answer.status_code == 200, answer.text
    # The index file as it is days later: every entry was written (updated_at) before the max age.
    db = sqlite3.connect(tmp_path / "members.sqlite")
    try:
        with db:  # one transaction
            db.execute("UPDATE members SET updated_at = updated_at - ?", ((INDEX_MAX_AGE_DAYS + 1) * 86400,))
    finally:
        db.close()
    return deleted


def _attempts(scenario: Scenario, sandbox: Sandbox, lines: list[Line], tmp_path: Path, base_url: str) -> list[Attempt]:
    """The first attempt, its interruptions and replays, and the last attempt that runs to the end."""
    streams = STREAMS[scenario.shape]
    original = lines
    config_path, catalog_path = tmp_path / "config.json", tmp_path / "catalog.json"
    config_path.write_text(json.dumps(_config(sandbox, scenario, tmp_path, base_url)))
    catalog_path.write_text(json.dumps(_catalog(scenario)))

    # A burst in the middle: once a third of the first attempt's rows could have been written.
    midway = (max(1, scenario.rows // 3), lambda: sandbox.set_options(**scenario.midway)) if scenario.midway else None
    rng = random.Random(scenario.seed)
    attempts: list[Attempt] = []
    for number in range(scenario.interruptions):
        records = sum(1 for line in lines if not line.is_state)
        # Every row costs at least one request, so the point falls inside the attempt's work.
        disruption = Disruption(
            "kill" if scenario.interrupt == "kill" else "term",
            after_requests=rng.randint(2, max(2, records)),
            delay=round(rng.uniform(0.0, 0.05), 3),
        )
        attempt = run_attempt(config_path, catalog_path, lines, sandbox, disruption,
                              midway=midway if number == 0 else None)
        attempts.append(attempt)
        shifted = rng.choice([n for n in (3, 4, 5, 7, 9) if n != scenario.every])
        lines = replay_input(
            lines, [state.get("id") for state in attempt.echoed],
            shifted_every=shifted if scenario.replay == "shifted" else None, streams=streams,
            first_id=100 * (number + 1),
        )
    # The last attempt runs to the end, even with nothing left to send (the platform's next attempt).
    attempts.append(run_attempt(config_path, catalog_path, lines, sandbox, midway=None if attempts else midway))
    if scenario.resend is not None:
        attempts += _resend(scenario, sandbox, original, config_path, catalog_path)
    return attempts


def _resend(scenario: Scenario, sandbox: Sandbox, lines: list[Line], config_path: Path, catalog_path: Path) -> list[Attempt]:
    """Every row sent again under the ``resend`` knobs; if that attempt must stop, the platform's next attempt."""
    assert scenario.resend is not None
    streams = STREAMS[scenario.shape]
    records = [line for line in lines if not line.is_state]
    again = layout(records, scenario.every, scenario.state_type, streams, first_id=1000)
    sandbox.set_options(**scenario.resend)
    stopped = run_attempt(config_path, catalog_path, again, sandbox, expected_stop=scenario.resend_stops)
    if scenario.resend_stops is None:
        return [stopped]
    defaults = SandboxOptions()
    sandbox.set_options(**{name: scenario.faults.get(name, getattr(defaults, name)) for name in scenario.resend})
    rest = replay_input(again, [state.get("id") for state in stopped.echoed], shifted_every=None, streams=streams,
                        first_id=2000)
    return [stopped, run_attempt(config_path, catalog_path, rest, sandbox)]


# -- the table (printed at the end of the session: faultmatrix.pytest_terminal_summary) ---------------


def _check(scenario: Scenario, sandbox_factory: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    outcome = run_scenario(scenario, sandbox_factory, tmp_path)
    # The soak's rows after the matrix's, each list in its own order.
    order = SCENARIOS.index(scenario) if scenario in SCENARIOS else len(SCENARIOS) + SOAK.index(scenario)
    record_row(request.node, order, scenario.name, outcome.attempts_label(), outcome.seconds, outcome.verdict)
    if not outcome.verdict.ok:
        pytest.fail(f"{scenario.name} ({outcome.attempts_label()}):\n{outcome.verdict.explain()}", pytrace=False)


@pytest.mark.slow  # 2 to 6 s a row, a third of make check's time: make test runs it, make check skips it
@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_fault_matrix(scenario: Scenario, sandbox_factory: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _check(scenario, sandbox_factory, tmp_path, request)


@pytest.mark.soak
@pytest.mark.slow  # make check skips it
@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", SOAK, ids=lambda s: s.name)
def test_fault_matrix_soak(scenario: Scenario, sandbox_factory: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _check(scenario, sandbox_factory, tmp_path, request)


# -- the checker itself must be able to fail ----------------------------------------------------------


def test_the_checker_reports_each_planted_fault(sandbox: Sandbox) -> None:
    """A forged run with one fault per column: the checker must report each one, and only it."""
    data = build_rows("credits", 6, prefix="forged")
    for member in data.seed_members:
        sandbox.add_member(**member)
    lines = layout(data.rows, 3, "STREAM", ("credits",), first_id=1)  # states 1 and 2 close 3 rows each
    # r0..r4 credited, r5 lost, r0 credited twice with the same dedupe key.
    for line in [*data.rows[:5], data.rows[0]]:
        row = json.loads(line.raw)["record"]["data"]
        extra = {**row["extra_data"], "airbyte_dedupe_key": row.get("event_id", row["extra_data"]["row"])}
        answer = requests.post(
            f"{sandbox.base_url}/v2/users/{row['user_id']}/activities", params={"id_type": "email"},
            json={"activity_id": "1001", "extra_data": extra},
            headers={"X-CT-Authorization": f"CTApiKey {SANDBOX_API_KEY}"}, timeout=10,
        )
        assert answer.status_code == 200, answer.text
    # State 2 miscounted (3 records sent); state 3 is the stream's closing state (no records).
    stats = [{"recordCount": 3.0, "rejectedRecordCount": 0.0}, {"recordCount": 2.0}, {"recordCount": 0.0}]
    ran = [{"type": "STATE", "state": {"type": "STREAM", "id": i + 1, "destinationStats": s}} for i, s in enumerate(stats)]
    leaky = "\n".join(json.dumps(m) for m in ran) + f"\napi_key={SANDBOX_API_KEY} user forged-m1@example.com\n"
    skipped = [{"type": "STATE", "state": {"type": "STREAM", "id": 2, "destinationStats": stats[0]}}]
    attempts = [
        Attempt(lines, None, 0, leaky.encode(), b"", ran, [], False),
        Attempt(lines, None, 0, json.dumps(skipped[0]).encode(), b"", skipped, [], False),  # state 1 skipped
    ]

    verdict = judge(sandbox, attempts, data.effects, secrets=(SANDBOX_API_KEY,), emails=data.emails,
                    sprung={"500": 1}, signal_expected=False)

    assert verdict.lost == ["credit r5 of forged-m1@example.com is missing"]
    assert len(verdict.doubled) == 1 and "forged-m0@example.com" in verdict.doubled[0]
    assert verdict.counts == [
        "attempt 1: state 2: platform sent 3 records, echoed recordCount 2.0 + rejectedRecordCount 0.0",
    ]
    assert verdict.states == [
        "attempt 2: echoed ids [2] are not a prefix of the sent ids [1, 2, 3]",
        "attempt 2: ran to the end but echoed [2] of [1, 2, 3]",
    ]
    assert len(verdict.secrets) == 1 and verdict.pii == ["attempt 1: the email forged-m1@example.com is in the output unmasked"]
    assert verdict.fault == ["the fault was not sprung: 500 = 0 < 1"]
    assert not verdict.ok


def test_the_checker_reports_planted_personal_data_in_the_output_and_the_masked_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The pii column sees generated personal data (not only emails), in the output and the reject file."""
    _, people = pii_corpus("profiles", 1, prefix="forged", seed=5)
    p = people[0]
    clean = Attempt([], None, 0, b'{"type": "LOG", "log": {"message": "custom field(s) *** rejected"}}', b"", [], [],
                    False)
    leaky = Attempt([], None, 0, f"Rejected row: Invalid postal_code for {p.full_name}".encode(),
                    f"card ***{p.card[-4:]}".encode(), [], [], False)
    masked = tmp_path / "rejects.jsonl"
    masked.write_text(json.dumps({"message": f"born {p.dob} in {p.city}"}) + "\n")

    verdict = judge(sandbox, [clean, leaky], [], secrets=(), emails=set(), sprung={}, signal_expected=False,
                    people=people, masked_files=[masked])

    assert verdict.pii == [
        f"attempt 2: {p.first!r} of the planted personal data is in the output",
        f"attempt 2: {p.last!r} of the planted personal data is in the output",
        f"attempt 2: '***{p.card[-4:]}' of the planted personal data is in the output",
        *(f"rejects.jsonl: {word!r} of the planted personal data is in it" for word in p.city.split()),
        f"rejects.jsonl: {p.dob!r} of the planted personal data is in it",
    ]
    assert not verdict.lost and not verdict.counts and not verdict.states
