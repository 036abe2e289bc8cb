"""Machinery of the fault matrix (test_fault_matrix.py): platform input, disrupted runs, one checker.

The matrix runs the real entry point (``python main.py write``) as the platform does: JSON lines on
stdin, protocol messages read from stdout. This module

* builds the input as :class:`Line` objects that remember what the checker needs (the stream a line
  counts in, whether it must be accepted or rejected, what it must leave in CrowdTwist);
* runs one attempt, optionally killed (SIGKILL) or stopped (SIGTERM) once it echoed some states;
* computes what the platform re-sends after an interrupted attempt: every stream from its last
  echoed state (STREAM states) or everything after the last echoed GLOBAL state, with the original
  state positions or with shifted ones (sources do not promise the same positions);
* judges the result in one place (:func:`judge`): lost, doubled, states, counts, secrets, PII (the
  input's emails, and the realistic personal data of tests_support/pii.py planted in odd places:
  names, streets, cities, dates of birth, SSNs, card numbers and their last fours).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from crowdtwist_sandbox import Sandbox
from tests_support.pii import Person, echo_message, leaks, odd_record, person

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

Shape = Literal["profiles", "credits", "both"]
StateType = Literal["STREAM", "GLOBAL"]

# Classic single-stream catalogs (object from the config) and the data-activation pair (object and
# matching key from the catalog), as in test_entrypoint.py and test_data_activation.py.
USERS, CREDITS = "users", "credits"
DA_PROFILES, DA_CREDITS = "crm_members", "point_events"
STREAMS: dict[Shape, tuple[str, ...]] = {"profiles": (USERS,), "credits": (CREDITS,), "both": (DA_PROFILES, DA_CREDITS)}

#: How the signature of an HMAC request looks (Base64 of 64 hex characters): never in any output.
SIGNATURE_SHAPE = re.compile(r"[A-Za-z0-9+/]{86}==")
HMAC_SCHEME = "CTApiV2Auth"


# -- input ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """What a good row must leave in CrowdTwist: a member with a first name, one tagged credit, or a
    member removed (``erased``: gone; ``deactivated``: still there, inactive).
    """

    kind: Literal["member", "credit", "erased", "deactivated"]
    id_type: str
    member: str
    first_name: str | None = None  # member rows
    tag: str | None = None  # credit rows: extra_data["row"] of the credit


@dataclass(frozen=True)
class Line:
    """One input line as the platform sends it, plus what the checker knows about it.

    Records: ``stream`` is the stream the line counts in (None: a line that names no stream, which
    counts only in GLOBAL states), ``good`` whether it must be accepted. States: ``state_id`` is
    set, ``stream`` is the STREAM state's stream (None for GLOBAL).
    """

    raw: bytes
    stream: str | None = None
    good: bool = True
    effect: Effect | None = None
    state_id: int | None = None

    @property
    def is_state(self) -> bool:
        """Whether this is a STATE line."""
        return self.state_id is not None


def record_line(stream: str, data: Any, effect: Effect | None = None, *, good: bool = True) -> Line:
    """A RECORD line of ``stream``."""
    body = {"type": "RECORD", "record": {"stream": stream, "emitted_at": 1_700_000_000_000, "data": data}}
    return Line(json.dumps(body).encode(), stream, good, effect)


def state_line(state_id: int, stream: str | None) -> Line:
    """A STREAM state of ``stream`` (GLOBAL when None) with the platform's ``id``."""
    if stream is None:
        body: dict[str, Any] = {"type": "GLOBAL", "global": {"shared_state": {"cursor": state_id}, "stream_states": []}}
    else:
        body = {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": {"cursor": state_id}}}
    body["id"] = state_id
    return Line(json.dumps({"type": "STATE", "state": body}).encode(), stream, state_id=state_id)


def layout(items: Sequence[Line], every: int, state_type: StateType, streams: Sequence[str], first_id: int) -> list[Line]:
    """Put a state after every ``every`` lines, and close every stream at the end.

    STREAM states rotate over ``streams`` (so a stream's segment spans other streams' states), and
    the end closes each stream once more; GLOBAL states close all streams at once.
    """
    out: list[Line] = []
    next_id = first_id
    turn = 0
    since = 0
    for item in items:
        out.append(item)
        since += 1
        if since == every:
            since = 0
            stream = None if state_type == "GLOBAL" else streams[turn % len(streams)]
            turn += 1
            out.append(state_line(next_id, stream))
            next_id += 1
    if state_type == "GLOBAL":
        if since:
            out.append(state_line(next_id, None))
    else:
        for stream in streams:
            out.append(state_line(next_id, stream))
            next_id += 1
    return out


@dataclass
class Input:
    """A scenario's data: the rows (no states yet) and the members to seed before the sync."""

    rows: list[Line]
    seed_members: list[dict[str, Any]] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)  # personal data planted by pii_corpus

    @property
    def effects(self) -> list[Effect]:
        """What every good row must leave behind."""
        return [line.effect for line in self.rows if line.effect is not None]

    @property
    def emails(self) -> set[str]:
        """Every email address in the input (must never show unmasked in the output)."""
        found: set[str] = set()
        for line in self.rows:
            found.update(re.findall(r"[A-Za-z0-9._+-]+@example\.com", line.raw.decode("utf-8", "replace")))
        return found


def build_rows(shape: Shape, n: int, *, prefix: str, insert: bool = False, delete: str | None = None) -> Input:
    """``n`` good rows of ``shape``.

    profiles: member i, every other one already in CrowdTwist (so upserts both update and create;
    ``insert`` seeds none). credits: n // 3 seeded members, a third of the rows keyed by a hash (no
    event_id), every credit tagged in extra_data. both: a profile row then a credit row per member
    (data activation, matched by third_party_id), so each credit depends on a create in the other stream.
    ``delete`` (profiles of a soft_delete stream; the delete_behaviour): n seeded members, one delete row each.
    """
    data = Input(rows=[])
    if shape == "profiles" and delete is not None:
        for i in range(n):
            email = f"{prefix}-{i}@example.com"
            data.seed_members.append({"email_address": email, "first_name": "Old", "last_name": "Ng",
                                      "postal_code": "10010"})
            kind: Literal["erased", "deactivated"] = "erased" if delete == "erase" else "deactivated"
            data.rows.append(record_line(USERS, {"user_id": email}, Effect(kind, "email", email)))
    elif shape == "profiles":
        for i in range(n):
            email = f"{prefix}-{i}@example.com"
            if not insert and i % 2 == 0:
                data.seed_members.append({"email_address": email, "first_name": "Old", "last_name": "Ng",
                                          "postal_code": "10010"})
            person = {"user_id": email, "first_name": f"Name{i}", "last_name": "Ng", "postal_code": "10010"}
            data.rows.append(record_line(USERS, person, Effect("member", "email", email, first_name=f"Name{i}")))
    elif shape == "credits":
        members = [f"{prefix}-m{j}@example.com" for j in range(max(1, n // 3))]
        data.seed_members = [{"email_address": email} for email in members]
        for i in range(n):
            email = members[i % len(members)]
            row: dict[str, Any] = {"user_id": email, "activity_id": "1001", "num_points": 1 + i % 7,
                                   "extra_data": {"row": f"r{i}"}}
            if i % 3:
                row["event_id"] = f"{prefix}-ev{i}"
            data.rows.append(record_line(CREDITS, row, Effect("credit", "email", email, tag=f"r{i}")))
    else:
        for j in range(n // 2):
            tp = f"{prefix}-tp{j}"
            profile = {"third_party_id": tp, "first_name": f"Name{j}", "last_name": "Lee",
                       "email_address": f"{tp}@example.com", "postal_code": "10001"}
            data.rows.append(record_line(DA_PROFILES, profile, Effect("member", "third_party_id", tp,
                                                                      first_name=f"Name{j}")))
            credit: dict[str, Any] = {"third_party_id": tp, "activity_id": "1001", "num_points": 1 + j % 5,
                                      "extra_data": {"row": f"r{j}"}}
            if j % 2:
                credit["event_id"] = f"{prefix}-ev{j}"
            data.rows.append(record_line(DA_CREDITS, credit, Effect("credit", "third_party_id", tp, tag=f"r{j}")))
    return data


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


def bad_corpus(shape: Shape, *, max_record_bytes: int) -> list[Line]:
    """Lines that must each become one rejected row, counted in the stream they name (if any).

    Invalid UTF-8, not JSON, JSON that is not an object, data that is not an object, nesting past
    the JSON parser (2,000 levels) and past ``max_nesting_depth`` (100), a record over
    ``max_record_bytes``, a RECORD without a stream, and a row CrowdTwist cannot take (no identifier).
    """
    stream = STREAMS[shape][0]
    key = "third_party_id" if shape == "both" else "user_id"
    head = f'{{"type": "RECORD", "record": {{"stream": "{stream}", "emitted_at": 0, "data": '.encode()
    deep = '{"x": ' * 2000 + '"leaf"' + "}" * 2000  # built as text: json.dumps would recurse too deep
    return [
        Line(head + b'{"first_name": "caf\xe9"}}}', stream, good=False),  # invalid UTF-8, still names its stream
        Line(b"this is not json", None, good=False),
        Line(b"[1, 2, 3]", None, good=False),
        record_line(stream, "not an object", good=False),
        Line(head + deep.encode() + b"}}", stream, good=False),  # deeper than the JSON parser goes
        record_line(stream, {key: "x@example.com", "extra_data": _nested(100)}, good=False),
        record_line(stream, {key: "big@example.com", "blob": "x" * (max_record_bytes + 10)}, good=False),
        Line(json.dumps({"type": "RECORD", "record": {"emitted_at": 0, "data": {key: "y"}}}).encode(), None, good=False),
        record_line(stream, {"first_name": "NoKey"}, good=False),  # valid JSON, but no member identifier
    ]


def pii_corpus(shape: Shape, n: int, *, prefix: str, seed: int) -> tuple[list[Line], list[Person]]:
    """Per made-up person, rows that must each be rejected, carrying the person in odd places.

    One row reaches CrowdTwist and is refused by it (unmapped columns become custom_data, which the
    sandbox's program does not have; with ``echo_input_in_errors`` the answer quotes the whole input);
    one is refused before sending (a person as a custom_data key holding an object, free text in
    allow-listed fields, nested objects and lists). For profiles streams only (a credit row never
    sends free text to CrowdTwist).
    """
    if shape == "credits":
        raise ValueError("pii_corpus builds User Profile rows")
    stream = STREAMS[shape][0]
    key = "third_party_id" if shape == "both" else "user_id"
    rng = random.Random(seed)
    people = [person(rng) for _ in range(n)]
    lines: list[Line] = []
    for i, p in enumerate(people):
        flat = {k: v for k, v in odd_record(p, rng, user_id=f"{prefix}-pii{i}@example.com").items()
                if not isinstance(v, dict | list)}
        flat.pop("user_id")
        lines.append(record_line(stream, {key: f"{prefix}-pii{i}@example.com", **flat, "first_name": p.first,
                                          "last_name": p.last, "postal_code": "10010",
                                          "notes": echo_message(p)}, good=False))
        nested = odd_record(p, rng, user_id=f"{prefix}-pii{i}b@example.com")
        nested.pop("user_id")
        lines.append(record_line(stream, {key: f"{prefix}-pii{i}b@example.com", **nested, "first_name": p.first,
                                          "custom_data": {p.relative_key: {"city": p.city}}}, good=False))
    return lines, people


def mix(good: Sequence[Line], bad: Sequence[Line], seed: int) -> list[Line]:
    """Scatter ``bad`` lines among ``good`` ones (seeded), keeping each list's own order."""
    total = len(good) + len(bad)
    slots = set(random.Random(seed).sample(range(total), len(bad)))
    good_iter, bad_iter = iter(good), iter(bad)
    return [next(bad_iter) if index in slots else next(good_iter) for index in range(total)]


def replay_input(
    lines: Sequence[Line], echoed: Sequence[int | None], *, shifted_every: int | None, streams: Sequence[str], first_id: int
) -> list[Line]:
    """What the platform sends on the next attempt, given the state ids the last one echoed.

    GLOBAL states: everything after the last echoed state. STREAM states: each stream's lines after
    that stream's last echoed state (a stream with none restarts from its start), in input order.
    ``shifted_every``: the same records with states laid out anew (new ids from ``first_id``).
    """
    echoed_set = set(echoed)
    is_global = any(line.is_state and line.stream is None for line in lines)
    resume: dict[str | None, int] = {}  # stream (None = GLOBAL) -> index of its last echoed state
    for index, line in enumerate(lines):
        if line.is_state and line.state_id in echoed_set:
            resume[line.stream] = index
    out: list[Line] = []
    for index, line in enumerate(lines):
        if is_global:
            keep = index > resume.get(None, -1)
        elif line.stream is None:
            keep = index > max(resume.values(), default=-1)
        else:
            keep = index > resume.get(line.stream, -1)
        if keep:
            out.append(line)
    records = [line for line in out if not line.is_state]
    if shifted_every is None or not records:
        return out
    return layout(records, shifted_every, "GLOBAL" if is_global else "STREAM", streams, first_id)


# -- running one attempt ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Disruption:
    """Stop the attempt with ``sig`` once the sandbox answered ``after_requests`` of its requests, plus ``delay``.

    Counting the attempt's API requests (not its output lines) puts the point inside the work however
    fast the machine is: a state echo can lag behind the requests by a whole segment.
    """

    sig: Literal["kill", "term"]
    after_requests: int
    delay: float

    def label(self) -> str:
        """For the table, e.g. ``kill@r12+0.03s``."""
        return f"{self.sig}@r{self.after_requests}+{self.delay:.2f}s"


@dataclass
class Attempt:
    """One run of ``write``: what the platform sent and what came back."""

    lines: list[Line]
    disruption: Disruption | None
    returncode: int
    stdout: bytes
    stderr: bytes
    messages: list[dict[str, Any]]
    problems: list[str]  # protocol problems found while reading (a line that is not JSON, a timeout)
    signalled: bool  # the signal was sent before the attempt ended on its own
    # The attempt must stop by itself with a TRACE of this failure type (a fault the connector must
    # not work around, e.g. an activity history that proves nothing); None: it must run to the end.
    expected_stop: str | None = None

    @property
    def echoed(self) -> list[dict[str, Any]]:
        """The echoed STATE messages' ``state`` objects, in order."""
        return [m["state"] for m in self.messages if m.get("type") == "STATE"]

    @property
    def stopped_mid_sync(self) -> bool:
        """Whether the signal ended the attempt before it echoed all the states it was sent."""
        sent = sum(1 for line in self.lines if line.is_state)
        return self.signalled and self.returncode != 0 and len(self.echoed) < sent

    def label(self) -> str:
        """For the table: records sent, how the attempt ended, states echoed, e.g. ``36r kill@r9+0.02s→-9 2s``."""
        records = sum(1 for line in self.lines if not line.is_state)
        how = f" {self.disruption.label()}" if self.disruption and self.signalled else ""
        if self.expected_stop is not None:
            how = f" stops({self.expected_stop})"
        return f"{records}r{how}→{self.returncode} {len(self.echoed)}s"


def _when_requests(sandbox: Sandbox, count: int, action: Callable[[], object], done: threading.Event) -> threading.Thread:
    """Run ``action`` once the sandbox has counted ``count`` more API requests (polled every 2 ms)."""
    target = sandbox.request_counts()["total"] + count

    def watch() -> None:
        while not done.is_set():
            if sandbox.request_counts()["total"] >= target:
                action()
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def run_attempt(
    config_path: Path,
    catalog_path: Path,
    lines: Sequence[Line],
    sandbox: Sandbox,
    disruption: Disruption | None = None,
    *,
    midway: tuple[int, Callable[[], object]] | None = None,
    timeout: float = 90.0,
    expected_stop: str | None = None,
) -> Attempt:
    """Run ``python main.py write`` on ``lines``; disrupt it as asked; read everything it printed.

    ``midway``: (n, action) runs ``action`` once the attempt made n API requests (e.g. a fault burst).
    """
    done = threading.Event()
    signalled = threading.Event()
    proc = subprocess.Popen(
        [*MAIN, "write", "--config", str(config_path), "--catalog", str(catalog_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr_pipe = proc.stdin, proc.stdout, proc.stderr

    def feed() -> None:
        try:
            for line in lines:
                stdin.write(line.raw + b"\n")
            stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the attempt died before reading all its input: what the platform sees too

    def stop() -> None:
        time.sleep(disruption.delay if disruption else 0.0)
        if disruption is not None and proc.poll() is None and not done.is_set():
            signalled.set()
            proc.send_signal(signal.SIGKILL if disruption.sig == "kill" else signal.SIGTERM)

    stderr_chunks: list[bytes] = []
    threads = [
        threading.Thread(target=feed, daemon=True),
        threading.Thread(target=lambda: stderr_chunks.append(stderr_pipe.read()), daemon=True),
    ]
    for thread in threads:
        thread.start()
    if disruption is not None:
        _when_requests(sandbox, disruption.after_requests, stop, done)
    if midway is not None:
        _when_requests(sandbox, midway[0], midway[1], done)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        raw_lines = list(stdout)
        proc.wait(timeout=30)
    finally:
        done.set()
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for thread in threads:
        thread.join(timeout=10)
    problems: list[str] = []
    if proc.returncode == -signal.SIGKILL and not signalled.is_set():
        problems.append(f"attempt killed by the {timeout:.0f}s watchdog (hung?)")
    messages: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_lines):
        if not raw.strip():
            continue
        try:
            message = json.loads(raw)
        except ValueError:
            # A line cut by SIGKILL mid-write is the only excuse for a line that is not JSON.
            last = index == len(raw_lines) - 1 and not raw.endswith(b"\n")
            if not (last and signalled.is_set()):
                problems.append(f"stdout line {index + 1} is not a protocol message: {raw[:80]!r}")
            continue
        if not isinstance(message, dict) or "type" not in message:
            problems.append(f"stdout line {index + 1} is not a protocol message: {raw[:80]!r}")
            continue
        messages.append(message)
    return Attempt(list(lines), disruption, proc.returncode, b"".join(raw_lines), b"".join(stderr_chunks),
                   messages, problems, signalled.is_set(), expected_stop)


# -- the one checker --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The checker's findings per column; a column with no findings is ok."""

    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    pii: list[str] = field(default_factory=list)
    fault: list[str] = field(default_factory=list)

    COLUMNS = ("fault", "lost", "doubled", "states", "counts", "secrets", "pii")

    @property
    def ok(self) -> bool:
        """True when every column is clean."""
        return not any(getattr(self, column) for column in self.COLUMNS)

    def cell(self, column: str) -> str:
        """The table cell: ``ok`` or the number of findings."""
        found = getattr(self, column)
        if column in ("lost", "doubled"):
            return str(len(found))
        return "ok" if not found else f"FAIL({len(found)})"

    def explain(self) -> str:
        """Every finding, one per line (the assertion message)."""
        lines = []
        for column in self.COLUMNS:
            for finding in getattr(self, column)[:12]:
                lines.append(f"{column}: {finding}")
            more = len(getattr(self, column)) - 12
            if more > 0:
                lines.append(f"{column}: ... and {more} more")
        return "\n".join(lines)


def expected_stats(lines: Sequence[Line]) -> dict[int, tuple[int, int]]:
    """Per state id: (good, bad) lines the platform sent for it (the segment the state closes).

    STREAM state: that stream's lines since its previous state; GLOBAL: every line since the
    previous GLOBAL state, including lines that name no stream.
    """
    pending: dict[str | None, list[int]] = {}
    out: dict[int, tuple[int, int]] = {}
    for line in lines:
        if line.is_state:
            assert line.state_id is not None
            if line.stream is None:
                good = sum(v[0] for v in pending.values())
                bad = sum(v[1] for v in pending.values())
                pending.clear()
            else:
                good, bad = pending.pop(line.stream, [0, 0])
            out[line.state_id] = (good, bad)
        else:
            counts = pending.setdefault(line.stream, [0, 0])
            counts[0 if line.good else 1] += 1
    return out


def judge(
    sandbox: Sandbox,
    attempts: Sequence[Attempt],
    effects: Sequence[Effect],
    *,
    secrets: Sequence[str],
    emails: set[str],
    sprung: Mapping[str, int],
    signal_expected: bool,
    extra_counters: Mapping[str, int] | None = None,
    people: Sequence[Person] = (),
    masked_files: Sequence[Path] = (),
) -> Verdict:
    """The one checker of the matrix. See the module docstring of test_fault_matrix.py for the columns.

    ``people``: personal data planted in the input (tests_support/pii.py); none of it may show in
    stdout, stderr or the ``masked_files`` (reject files written without PII).
    """
    verdict = Verdict()
    _judge_sandbox(sandbox, effects, verdict)
    for number, attempt in enumerate(attempts, start=1):
        _judge_attempt(number, attempt, len(attempts), verdict)
        _judge_output(number, attempt, secrets, emails, verdict, people)
    for path in masked_files:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        verdict.pii += [f"{path.name}: {piece!r} of the planted personal data is in it" for piece in leaks(text, list(people))]
    counters = {**sandbox.request_counts(), **(extra_counters or {})}
    for key, minimum in sprung.items():
        if counters.get(key, 0) < minimum:
            verdict.fault.append(f"the fault was not sprung: {key} = {counters.get(key, 0)} < {minimum}")
    if signal_expected and not any(attempt.stopped_mid_sync for attempt in attempts):
        verdict.fault.append("no attempt was actually stopped by the signal mid-sync")
    return verdict


def _judge_sandbox(sandbox: Sandbox, effects: Sequence[Effect], verdict: Verdict) -> None:
    members = sandbox.members()
    by_id = {m["id"]: m for m in members}
    for id_type in ("email_address", "third_party_id"):
        seen = Counter(str(m[id_type]).lower() for m in members if m.get(id_type))
        verdict.doubled += [f"{n} members with {id_type} {value}" for value, n in seen.items() if n > 1]
    credits = sandbox.credits()
    per_key = Counter((c["user_id"], (c.get("extra_data") or {}).get("airbyte_dedupe_key")) for c in credits)
    verdict.doubled += [
        f"{n} credits for member {by_id.get(uid, {}).get('email_address') or uid} with dedupe key {key}"
        for (uid, key), n in per_key.items() if n > 1
    ]
    tags = Counter(((c.get("extra_data") or {}).get("row"), c["user_id"]) for c in credits)
    for effect in effects:
        member = sandbox.member(effect.id_type, effect.member)
        if effect.kind == "erased":
            if member is not None:
                verdict.lost.append(f"member {effect.member} was not erased (or was created again)")
        elif effect.kind == "deactivated":
            if member is None:
                verdict.lost.append(f"member {effect.member} is gone; it was to be deactivated")
            elif member.get("is_active") is not False:
                verdict.lost.append(f"member {effect.member} is still active")
        elif effect.kind == "member":
            if member is None:
                verdict.lost.append(f"member {effect.member} was never created")
            elif member.get("first_name") != effect.first_name:
                verdict.lost.append(
                    f"member {effect.member} has first_name {member.get('first_name')!r}, not {effect.first_name!r}"
                )
        elif member is None or tags[(effect.tag, member["id"])] == 0:
            verdict.lost.append(f"credit {effect.tag} of {effect.member} is missing")


def _judge_attempt(number: int, attempt: Attempt, total: int, verdict: Verdict) -> None:
    name = f"attempt {number}"
    verdict.states += [f"{name}: {problem}" for problem in attempt.problems]
    sent = [line for line in attempt.lines if line.is_state]
    echoed = attempt.echoed
    ids = [state.get("id") for state in echoed]
    sent_ids = [line.state_id for line in sent]
    if ids != sent_ids[: len(ids)]:
        verdict.states.append(f"{name}: echoed ids {ids} are not a prefix of the sent ids {sent_ids}")
    for state, line in zip(echoed, sent, strict=False):
        kind = "GLOBAL" if line.stream is None else "STREAM"
        if state.get("type") != kind:
            verdict.states.append(f"{name}: state {line.state_id} echoed as {state.get('type')}, sent as {kind}")
    finished = not attempt.signalled or attempt.returncode == 0
    if attempt.expected_stop is not None:
        errors = [m["trace"].get("error", {}) for m in attempt.messages if m.get("type") == "TRACE"]
        if attempt.returncode == 0:
            verdict.states.append(f"{name}: ran to the end, but it had to stop with a {attempt.expected_stop}")
        elif not any(e.get("failure_type") == attempt.expected_stop for e in errors):
            verdict.states.append(f"{name}: stopped without a {attempt.expected_stop} trace: {errors}")
        finished = attempt.returncode == 0
    elif finished:
        if attempt.returncode != 0:
            traces = [m["trace"].get("error", {}).get("message") for m in attempt.messages if m.get("type") == "TRACE"]
            verdict.states.append(f"{name}: exit code {attempt.returncode} without a disruption; traces: {traces}")
        if ids != sent_ids:
            verdict.states.append(f"{name}: ran to the end but echoed {ids} of {sent_ids}")
    elif attempt.disruption is not None and attempt.disruption.sig == "term":
        errors = [m["trace"].get("error", {}) for m in attempt.messages if m.get("type") == "TRACE"]
        if not any(e.get("failure_type") == "transient_error" for e in errors):
            verdict.states.append(f"{name}: stopped by SIGTERM without a transient_error trace: {errors}")
    if number == total and not finished:
        verdict.states.append(f"{name}: the last attempt did not finish")
    expected = expected_stats(attempt.lines)
    for state in echoed:
        state_id = state.get("id")
        if state_id not in expected:
            continue
        stats = state.get("destinationStats") or {}
        got = (stats.get("recordCount"), stats.get("rejectedRecordCount", 0.0))
        good, bad = expected[state_id]
        if got[0] is None or got[0] + (got[1] or 0) != good + bad:
            verdict.counts.append(
                f"{name}: state {state_id}: platform sent {good + bad} records, echoed recordCount {got[0]} + "
                f"rejectedRecordCount {got[1]}"
            )
        elif (got[0], got[1]) != (good, bad):
            verdict.counts.append(
                f"{name}: state {state_id}: expected {good} accepted + {bad} rejected, echoed {got[0]} + {got[1]}"
            )


def _judge_output(
    number: int, attempt: Attempt, secrets: Sequence[str], emails: set[str], verdict: Verdict,
    people: Sequence[Person] = (),
) -> None:
    text = (attempt.stdout + b"\n" + attempt.stderr).decode("utf-8", "replace")
    for secret in secrets:
        if secret and secret in text:
            verdict.secrets.append(f"attempt {number}: a secret ({secret[:6]}...) is in the output")
    if HMAC_SCHEME in text:
        verdict.secrets.append(f"attempt {number}: an HMAC authorization header ({HMAC_SCHEME}) is in the output")
    for found in SIGNATURE_SHAPE.findall(text):
        verdict.secrets.append(f"attempt {number}: a signature-shaped value is in the output: {found[:12]}...")
    for email in sorted(emails):
        if re.search(rf"(?<![A-Za-z0-9._+-]){re.escape(email)}", text):
            verdict.pii.append(f"attempt {number}: the email {email} is in the output unmasked")
    for piece in leaks(text, list(people)):
        verdict.pii.append(f"attempt {number}: {piece!r} of the planted personal data is in the output")


# -- the table --------------------------------------------------------------------------------------


#: The key of a scenario's row in its test report's ``user_properties``. The table is printed from the
#: reports at the end of the session, not by the test module: under pytest-xdist (``make test`` runs on
#: several processes) only the reports reach the controlling process, never a worker's output.
ROW_PROPERTY = "fault_matrix_row"


def record_row(item: pytest.Item, order: int, name: str, attempts: str, seconds: float, verdict: Verdict) -> None:
    """Attach one scenario's row of the table to its test report (``order``: its place in the table)."""
    cells = [name, attempts, f"{seconds:.1f}", *(verdict.cell(c) for c in Verdict.COLUMNS)]
    item.user_properties.append((ROW_PROPERTY, {"order": order, "seconds": seconds, "cells": cells}))


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """The matrix as text: scenario | attempts | seconds | fault | lost | doubled | states | counts | secrets | pii."""
    header = ("scenario", "attempts", "secs", *Verdict.COLUMNS)
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    rule = "-+-".join("-" * w for w in widths)
    out = [" | ".join(str(v).ljust(w) for v, w in zip(header, widths, strict=True)), rule]
    out += [" | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return out


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the table of every scenario that ran, passed or failed (registered by conftest.py)."""
    rows: list[dict[str, Any]] = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            rows += [value for key, value in getattr(report, "user_properties", ()) if key == ROW_PROPERTY]
    if not rows:
        return
    rows.sort(key=lambda row: int(row["order"]))
    terminalreporter.write_line("")
    terminalreporter.write_sep("-", f"fault matrix ({sum(float(row['seconds']) for row in rows):.0f}s)")
    for line in table([row["cells"] for row in rows]):
        terminalreporter.write_line(line)
