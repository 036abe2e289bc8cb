"""Member index (writers/member_index.py): fingerprints, scope, durability rules, flat memory."""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import types
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.writers.ledger import CreditLedger
from destination_crowdtwist.writers.member_index import (
    EXPIRY_SPREAD,
    MemberEntry,
    MemberIndex,
    _orjson_spells_alike,
    expiry_age,
    fingerprint,
)
from tests_support.sqlite_steps import sqlite_steps

PROGRAM = "https://api123.crowdtwist.com"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "members.sqlite")


def other_connection(path: str) -> MemberIndex:
    """A second process's view of the file: sees only what was committed."""
    return MemberIndex(path, PROGRAM)


# --- fingerprints ------------------------------------------------------------------------------


def test_fingerprint_is_pinned_so_a_change_of_canonical_form_is_a_decision() -> None:
    # Changing the canonical form makes every index entry stale (rows are sent again once): not a
    # correctness problem, but a cost, so it must not happen by accident.
    # = sha256(b'{"custom_data":{"tier":"gold"},"first_name":"Ann"}')[:16]
    assert fingerprint({"first_name": "Ann", "custom_data": {"tier": "gold"}}).hex() == (
        "c0644ce1d220dc4311dc5226c41ff315"
    )
    assert len(fingerprint({})) == 16


def test_fingerprint_ignores_key_order_at_every_level() -> None:
    a = {"first_name": "Ann", "last_name": "Lee", "custom_data": {"tier": "gold", "store": "7"}}
    b = {"custom_data": {"store": "7", "tier": "gold"}, "last_name": "Lee", "first_name": "Ann"}
    assert fingerprint(a) == fingerprint(b)


@pytest.mark.parametrize(
    "changed",
    [
        {"first_name": "Anne", "last_name": "Lee"},  # a value
        {"first_name": "Ann"},  # a field fewer
        {"first_name": "Ann", "last_name": "Lee", "postal_code": None},  # a null sent (clears the field)
        {"first_name": "Ann", "last_name": "Lee", "custom_data": {}},
        {"first_name": "Ann", "last_name": 1},  # a type
    ],
)
def test_fingerprint_changes_with_any_field(changed: dict[str, object]) -> None:
    assert fingerprint(changed) != fingerprint({"first_name": "Ann", "last_name": "Lee"})


def test_fingerprint_of_non_ascii_text_is_stable() -> None:
    assert fingerprint({"city_name": "Zürich"}) == fingerprint({"city_name": "Z\u00fcrich"})
    assert fingerprint({"city_name": "Zürich"}) != fingerprint({"city_name": "Zurich"})


# --- entries and scope -------------------------------------------------------------------------


def test_recorded_entry_is_seen_at_once_and_committed_by_commit(path: str) -> None:
    index = MemberIndex(path, PROGRAM)
    assert index.lookup("email", "a@x.com") is None
    index.record("email", "a@x.com", fingerprint=b"f" * 16, crowdtwist_id="42")
    assert index.lookup("email", "a@x.com") == MemberEntry("42", b"f" * 16)  # staged, seen by this sync
    assert other_connection(path).lookup("email", "a@x.com") is None  # not committed yet
    index.commit()
    assert other_connection(path).lookup("email", "a@x.com") == MemberEntry("42", b"f" * 16)
    assert index.size("email") == 1


def test_crowdtwist_id_is_kept_when_a_later_answer_has_none(path: str) -> None:
    index = MemberIndex(path, PROGRAM)
    index.record("email", "a@x.com", fingerprint=b"1" * 16, crowdtwist_id="42")
    index.commit()
    index.record("email", "a@x.com", fingerprint=b"2" * 16)
    assert index.lookup("email", "a@x.com") == MemberEntry("42", b"2" * 16)
    index.commit()
    assert other_connection(path).lookup("email", "a@x.com") == MemberEntry("42", b"2" * 16)


@pytest.mark.parametrize(
    ("program", "id_type"),
    [
        ("https://sb-api123.crowdtwist.com", "email"),  # the sandbox program, same member
        (PROGRAM, "third_party_id"),  # same program, another identifier type with the same value
    ],
)
def test_an_index_of_another_program_or_identifier_type_is_never_used(path: str, program: str, id_type: str) -> None:
    index = MemberIndex(path, program)
    index.record(id_type, "a@x.com", fingerprint=b"f" * 16)
    index.close()
    mine = MemberIndex(path, PROGRAM)
    assert mine.lookup("email", "a@x.com") is None
    assert mine.size("email") == 0
    # And writing this program's entries leaves the other one's alone.
    mine.record("email", "a@x.com", fingerprint=b"g" * 16)
    mine.close()
    assert MemberIndex(path, program).lookup(id_type, "a@x.com") == MemberEntry(None, b"f" * 16)


def test_has_entries_is_per_program(path: str) -> None:
    index = MemberIndex(path, "https://sb-api123.crowdtwist.com")
    index.record("email", "a@x.com", fingerprint=None)
    index.close()
    assert MemberIndex(path, "https://sb-api123.crowdtwist.com").has_entries()
    assert not MemberIndex(path, PROGRAM).has_entries()


def test_identifiers_are_stored_hashed(path: str) -> None:
    index = MemberIndex(path, PROGRAM)
    index.record("email", "ann.lee@example.com", fingerprint=b"f" * 16, crowdtwist_id="42")
    index.close()
    assert b"ann.lee" not in Path(path).read_bytes()


# --- durability ----------------------------------------------------------------------------------


def test_forget_and_clear_fingerprint_are_durable_at_once(path: str) -> None:
    index = MemberIndex(path, PROGRAM)
    index.record("email", "a@x.com", fingerprint=b"1" * 16)
    index.record("email", "b@x.com", fingerprint=b"2" * 16)
    index.commit()
    index.clear_fingerprint("email", "a@x.com")
    index.forget("email", "b@x.com")
    view = other_connection(path)
    assert view.lookup("email", "a@x.com") == MemberEntry(None, None)  # known to exist, content unknown
    assert view.lookup("email", "b@x.com") is None


def test_after_drop_runs_once_the_clear_is_on_disk_and_before_the_call_returns(path: str) -> None:
    # With the sync state in a bucket, wiring passes the store's flush: the clear must be committed
    # to the file (which the store uploads) when it runs, and the request waits for it.
    seen: list[MemberEntry | None] = []
    index = MemberIndex(path, PROGRAM, after_drop=lambda: seen.append(other_connection(path).lookup("email", "a@x.com")))
    index.clear_fingerprint("email", "a@x.com")  # an unknown program scope: nothing to clear, nothing to flush
    assert seen == []
    index.record("email", "a@x.com", fingerprint=b"1" * 16)
    index.commit()
    index.clear_fingerprint("email", "a@x.com")
    index.forget("email", "a@x.com")
    assert seen == [MemberEntry(None, None), None]


def test_clear_fingerprint_drops_a_staged_older_fingerprint(path: str) -> None:
    # Row 1 of a member is accepted (staged), row 2 is about to change it: a later commit must not
    # write row 1's fingerprint, which row 2's write is making stale.
    index = MemberIndex(path, PROGRAM)
    index.record("email", "a@x.com", fingerprint=b"1" * 16)
    index.clear_fingerprint("email", "a@x.com")
    index.commit()
    assert other_connection(path).lookup("email", "a@x.com") is None


def test_staged_entries_are_flushed_in_batches_so_memory_stays_bounded(path: str) -> None:
    index = MemberIndex(path, PROGRAM, flush_every=10)
    for i in range(25):
        index.record("email", f"m{i}@x.com", fingerprint=b"f" * 16)
    assert other_connection(path).size("email") == 20
    assert len(index._staged) == 5
    index.commit()
    assert other_connection(path).size("email") == 25


_CRASH = textwrap.dedent(
    """
    import os, sys
    from destination_crowdtwist.writers.member_index import MemberIndex
    index = MemberIndex(sys.argv[1], sys.argv[2])
    index.clear_fingerprint("email", "known@x.com")   # a changing write is about to be sent
    index.record("email", "known@x.com", fingerprint=b"n" * 16)   # ... and was accepted
    index.record("email", "new@x.com", fingerprint=b"n" * 16)
    os._exit(1)   # killed before the checkpoint commit
    """
)


def test_a_crash_between_the_write_and_the_commit_leaves_no_entry_and_no_stale_fingerprint(path: str) -> None:
    index = MemberIndex(path, PROGRAM)
    index.record("email", "known@x.com", fingerprint=b"o" * 16)
    index.close()
    done = subprocess.run([sys.executable, "-c", _CRASH, path, PROGRAM], cwd=ROOT, timeout=60)
    assert done.returncode == 1
    view = MemberIndex(path, PROGRAM)
    assert view.lookup("email", "new@x.com") is None  # never claims a write it did not commit
    # The old fingerprint is gone: a later row carrying the old values is sent, not skipped.
    assert view.lookup("email", "known@x.com") == MemberEntry(None, None)


def test_close_commits_what_is_staged(path: str) -> None:
    index = MemberIndex(path, PROGRAM)
    index.record("email", "a@x.com", fingerprint=b"f" * 16)
    index.close()
    assert other_connection(path).lookup("email", "a@x.com") == MemberEntry(None, b"f" * 16)


def test_threads_share_one_index(path: str) -> None:
    index = MemberIndex(path, PROGRAM, flush_every=50)

    def work(t: int) -> None:
        for i in range(200):
            index.record("email", f"t{t}-{i}@x.com", fingerprint=bytes([t]) * 16)
            assert index.lookup("email", f"t{t}-{i}@x.com") == MemberEntry(None, bytes([t]) * 16)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    index.commit()
    assert other_connection(path).size("email") == 1600


# --- the file ------------------------------------------------------------------------------------


def test_a_file_that_is_not_an_index_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match="member_index_path"):
        MemberIndex(str(junk), PROGRAM)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE members (email TEXT PRIMARY KEY)")
    with pytest.raises(ConfigError, match="another layout"):
        MemberIndex(str(other), PROGRAM)
    with pytest.raises(ConfigError, match="member_index_path"):
        MemberIndex(str(tmp_path / "no-such-dir" / "members.sqlite"), PROGRAM)


def test_the_credit_ledger_and_the_index_may_share_one_file(path: str) -> None:
    ledger = CreditLedger(path, scope=PROGRAM)
    index = MemberIndex(path, PROGRAM)
    ledger.mark_done("evt-1", "credited")
    index.record("email", "a@x.com", fingerprint=b"f" * 16)
    index.commit()
    assert ledger.status("evt-1") == "done"
    assert other_connection(path).lookup("email", "a@x.com") == MemberEntry(None, b"f" * 16)
    ledger.close()
    index.close()


# --- size: lookups stay O(log n), memory stays flat ---------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _filled_index(path: str, n: int, *, flush_every: int) -> MemberIndex:
    """An index of ``n`` members, checked to be searched by its primary key (one B-tree search per
    lookup, never a scan: a scan would be O(n) per row)."""
    index = MemberIndex(path, PROGRAM, flush_every=flush_every)
    for i in range(n):
        index.record("email", f"member{i}@example.com", fingerprint=fingerprint({"n": i}))
    index.commit()
    assert index.size("email") == n
    plan = " ".join(
        str(row[-1]) for row in index._db.execute(
            "EXPLAIN QUERY PLAN SELECT crowdtwist_id, fingerprint FROM members WHERE scope = ? AND member = ?",
            (1, b"x" * 16),
        )
    )
    assert "USING PRIMARY KEY" in plan and "SCAN" not in plan
    return index


def test_lookups_search_the_primary_key_and_find_exactly_what_was_recorded(path: str) -> None:
    """The functional half of the 200k measurement below, small enough for every test run."""
    n = 2_000
    index = _filled_index(path, n, flush_every=500)
    for i in range(n):
        assert index.lookup("email", f"member{i}@example.com") == MemberEntry(None, fingerprint({"n": i}))
    assert index.lookup("email", f"member{n}@example.com") is None
    index.close()


def test_a_lookup_and_a_record_cost_the_same_sqlite_steps_at_any_size(tmp_path: Path) -> None:
    """The O(log n) lookup of the 200k measurement below, exactly and without a clock: the real
    statements (not a copy of their SQL) do the same work in an index of 10 as in one of 5,000."""
    small, large = (_filled_index(str(tmp_path / f"{n}.sqlite"), n, flush_every=500) for n in (10, 5_000))

    def work(index: MemberIndex, n: int) -> list[int]:
        db = index._db
        return [
            *(sqlite_steps(db, partial(index.lookup, "email", f"member{i}@example.com")) for i in (0, n // 2, n - 1)),
            sqlite_steps(db, lambda: index.lookup("email", "nobody@example.com")),
            sqlite_steps(db, lambda: index.record("email", "new@example.com", fingerprint=b"f" * 16)),
            sqlite_steps(db, lambda: index.record("email", "member1@example.com", fingerprint=b"g" * 16)),
        ]

    assert work(small, 10) == work(large, 5_000)
    # The count has teeth: a statement that scans does work in proportion to the rows.
    scan = "SELECT count(*) FROM members WHERE fingerprint = ?"
    steps = [sqlite_steps(index._db, partial(index._db.execute, scan, (b"f" * 16,))) for index in (small, large)]
    assert steps[1] > 100 * steps[0]
    small.close()
    large.close()


# A measurement (200,000 entries, resident memory and time per lookup): marker perf, run by
# `make perf` and CI, not by `make test` (unit_tests/test_packaging.py checks the marker).
@pytest.mark.perf
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident memory is read from /proc (Linux)")
def test_a_200k_member_index_is_searched_by_primary_key_with_flat_memory(path: str) -> None:
    n = 200_000
    index = _filled_index(path, n, flush_every=20_000)

    before = _rss_kib()
    started = time.perf_counter()
    for i in range(0, n, 2):
        assert index.lookup("email", f"member{i}@example.com") == MemberEntry(None, fingerprint({"n": i}))
    for i in range(n, n + 20_000):
        assert index.lookup("email", f"member{i}@example.com") is None
    elapsed = time.perf_counter() - started
    grown_mib = (_rss_kib() - before) / 1024
    # Nothing is loaded whole: SQLite's page cache (2 MB by default) is all the lookups may add.
    assert grown_mib < 16, f"resident memory grew by {grown_mib:.1f} MiB over 120k lookups"
    assert elapsed / 120_000 < 0.001  # well under a millisecond each (about 10 us here)
    index.close()


# --- age: entries are trusted for at most max_age, expiries spread per member ----------------------

DAY = 86400.0
WEEK = 7 * DAY
T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def expired_members(index: MemberIndex, members: list[str]) -> set[str]:
    found = {m: index.lookup("email", m) for m in members}
    assert all(entry is not None for entry in found.values())
    return {m for m, entry in found.items() if entry is not None and entry.expired}


def test_an_entry_expires_at_its_own_age_limit_within_the_last_half_of_max_age(path: str) -> None:
    clock = FakeClock()
    index = MemberIndex(path, PROGRAM, clock=clock, max_age=WEEK)
    index.record("email", "a@example.com", fingerprint=b"f" * 16, crowdtwist_id="7")
    assert index.lookup("email", "a@example.com") == MemberEntry("7", b"f" * 16)  # staged: fresh
    index.commit()
    digest = hashlib.sha256(b"a@example.com").digest()[:16]
    limit = expiry_age(digest, int(T0), WEEK)
    assert WEEK * (1 - EXPIRY_SPREAD) <= limit <= WEEK
    clock.now = T0 + math.floor(limit) - 1
    assert index.lookup("email", "a@example.com") == MemberEntry("7", b"f" * 16, expired=False)
    clock.now = T0 + math.ceil(limit)
    assert index.lookup("email", "a@example.com") == MemberEntry("7", b"f" * 16, expired=True)
    # A new accepted write dates the entry afresh.
    index.record("email", "a@example.com", fingerprint=b"g" * 16)
    index.commit()
    assert index.lookup("email", "a@example.com") == MemberEntry("7", b"g" * 16, expired=False)
    index.close()


def test_entries_written_together_expire_spread_over_days_not_in_one_sync(path: str) -> None:
    """Daily syncs of one table, all of it written on day 0: each sync re-sends a bounded share."""
    clock = FakeClock()
    index = MemberIndex(path, PROGRAM, clock=clock, max_age=WEEK, flush_every=10_000)
    members = [f"member{i}@example.com" for i in range(2000)]
    for member in members:
        index.record("email", member, fingerprint=b"f" * 16)
    index.commit()
    resent_per_day: list[int] = []
    last_sent = dict.fromkeys(members, 0)
    for day in range(1, 50):
        clock.now = T0 + day * DAY
        due = expired_members(index, members)
        for member in due:  # the sync sends them again; the accepted writes date them afresh
            index.record("email", member, fingerprint=b"f" * 16)
            last_sent[member] = day
        index.commit()
        resent_per_day.append(len(due))
        # Nobody waits longer than max_age to be sent again.
        assert all(day - sent <= 7 for sent in last_sent.values())
    # Nothing before half the period; then at most about 2/7 of the table per daily sync (uniform over
    # the last 3.5 days), never the whole table at once, and the syncs do not fall into step later.
    assert resent_per_day[:3] == [0, 0, 0]
    assert max(resent_per_day) <= 0.33 * len(members), resent_per_day
    later = resent_per_day[14:]
    assert max(later) <= 0.3 * len(members) and min(later) >= 0.08 * len(members), resent_per_day
    assert sum(resent_per_day[3:7]) == len(members)  # every member re-sent within the first period
    # Deterministic per member: another process agrees on who is due.
    other = MemberIndex(path, PROGRAM, clock=FakeClock(clock.now + 3 * DAY), max_age=WEEK)
    assert expired_members(other, members) == expired_members(
        MemberIndex(path, PROGRAM, clock=FakeClock(clock.now + 3 * DAY), max_age=WEEK), members)
    other.close()
    index.close()


def test_an_entry_dated_in_the_future_is_not_trusted(path: str) -> None:
    writer_clock = FakeClock(T0 + 30 * DAY)  # written by a machine whose clock ran a month ahead
    index = MemberIndex(path, PROGRAM, clock=writer_clock)
    index.record("email", "a@example.com", fingerprint=b"f" * 16)
    index.close()
    reader = MemberIndex(path, PROGRAM, clock=FakeClock(T0), max_age=WEEK)
    entry = reader.lookup("email", "a@example.com")
    assert entry is not None and entry.expired
    reader.close()


def test_an_index_written_before_entries_aged_ages_from_its_last_writes(path: str) -> None:
    """Files from earlier versions have the same layout (updated_at was always written): no migration,
    and their entries are as old as their last write, not new."""
    old = MemberIndex(path, PROGRAM, clock=FakeClock(T0))  # max_age=None: how the earlier version used it
    old.record("email", "a@example.com", fingerprint=b"f" * 16)
    old.record("email", "b@example.com", fingerprint=b"f" * 16)
    old.close()
    assert [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(members)")] == [
        "scope", "member", "crowdtwist_id", "fingerprint", "updated_at"]
    assert expired_members(MemberIndex(path, PROGRAM, clock=FakeClock(T0 + DAY), max_age=WEEK),
                           ["a@example.com", "b@example.com"]) == set()
    assert expired_members(MemberIndex(path, PROGRAM, clock=FakeClock(T0 + WEEK), max_age=WEEK),
                           ["a@example.com", "b@example.com"]) == {"a@example.com", "b@example.com"}


# --- the fast paths of a re-sync's unchanged rows: the same answers as the plain formulas -------------


def reference_fingerprint(payload: object) -> bytes:
    """The fingerprint as every index file was written: the standard encoder's canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).digest()[:16]


def nested_dicts(levels: int) -> object:
    value: object = {}
    for _ in range(levels):
        value = {"n": value}
    return value


def nested_lists(levels: int) -> object:
    value: object = []
    for _ in range(levels):
        value = [value]
    return value


class Tier(enum.IntEnum):
    GOLD = 1


class Label(str):
    pass


TRICKY_PAYLOADS: list[object] = [
    {},
    {"first_name": "Ann", "last_name": "Lee", "postal_code": "10010"},
    {"first_name": "Ann", "custom_data": {"tier": "gold"}},
    {"b": 1, "a": 2, "B": 3, "": 4, "é": 5, "\U0001f600": 6, "\uffff": 7, "z": 8, "aa": 9},  # code point order
    {"city_name": "Zürich\u2028\u2029\ufeff\x85\x7f", "quote": '"\\/', "controls": "".join(map(chr, range(32)))},
    {"date_of_birth": 0, "city_id": -(2**63), "big": 2**64 - 1, "neg": -1, "flag": True, "off": False},
    {"beyond_64_bits": 2**64, "below": -(2**63) - 1},  # orjson refuses: the standard encoder's answer
    {"gender_id": None, "postal_code": None},
    {"extra_data": {"nested": {"deeper": [1, "two", None, True, {"x": [], "y": {}}]}, "list": []}},
    {"extra_data": {"score": 1.5, "big": 1e16, "small": 1e-7, "nan": math.nan, "inf": -math.inf, "zero": -0.0}},
    {"tier": Tier.GOLD, "label": Label("x"), "when": datetime.date(2024, 1, 31)},  # exact types only
    {"custom_data": {"tuple": (1, 2), "set_like": frozenset()}},
    {Label("k"): "subclass key"},
    {"deep": nested_dicts(40)},  # beyond the walk's depth
    {"deep_list": nested_lists(40)},
    {"a": {"b": "c"}, "a.b": "d"},
]


@pytest.mark.parametrize("payload", TRICKY_PAYLOADS, ids=range(len(TRICKY_PAYLOADS)))
def test_fingerprint_is_the_standard_encoders_on_tricky_payloads(payload: dict[str, object]) -> None:
    assert fingerprint(payload) == reference_fingerprint(payload)


def test_fingerprint_of_text_that_is_not_utf8_raises_as_before() -> None:
    payload = {"first_name": "lone \ud800 surrogate"}
    with pytest.raises(UnicodeEncodeError):
        reference_fingerprint(payload)
    with pytest.raises(UnicodeEncodeError):
        fingerprint(payload)


def test_fingerprint_of_a_mapping_that_is_not_a_dict_is_the_standard_encoders() -> None:
    # json.dumps spells a non-dict Mapping with default=str; so must the fingerprint.
    proxy = types.MappingProxyType({"first_name": "Ann"})
    assert fingerprint(proxy) == reference_fingerprint(proxy)


_json_leaves = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=True)
_json_values = st.recursive(
    _json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(), _json_values, max_size=6))
def test_fingerprint_is_the_standard_encoders_on_any_json_payload(payload: dict[str, object]) -> None:
    try:
        expected = reference_fingerprint(payload)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            fingerprint(payload)
        return
    assert fingerprint(payload) == expected


def reference_expired(clock: float, member: bytes, updated_at: object, max_age: float | None) -> bool:
    """The age rule as it was written before the shortcut (rule 4 of writers/member_index.py)."""
    if max_age is None:
        return False
    if not isinstance(updated_at, int):
        return True
    age = clock - updated_at
    return age >= expiry_age(member, updated_at, max_age) or age < -3600.0


def test_the_age_rule_shortcut_answers_as_the_formula_does() -> None:
    # Every age around the shortcut's bound (half of max_age), the future slack and the limit itself,
    # for several members, write times and max ages (0 and a negative one included).
    members = [hashlib.sha256(str(i).encode()).digest()[:16] for i in range(40)]
    for max_age in (WEEK, 30 * DAY, DAY, 1.0, 0.0, -DAY, 1e12):
        for member in members:
            for updated_at in (int(T0), 0, 1, -5, int(T0) + 7):
                limit = expiry_age(member, updated_at, max_age)
                ages = {0.0, 1.0, -1.0, -3600.0, -3600.5, -3599.5, max_age / 2, max_age / 2 - 1e-6,
                        math.nextafter(max_age / 2, -math.inf), math.nextafter(max_age / 2, math.inf),
                        limit, math.nextafter(limit, -math.inf), math.nextafter(limit, math.inf), limit - 1,
                        limit + 1, max_age, max_age * 10}
                for age in ages:
                    clock = updated_at + age
                    index = object.__new__(MemberIndex)
                    index._clock = lambda clock=clock: clock  # type: ignore[misc]
                    index._max_age = max_age
                    assert index._expired(member, updated_at) == reference_expired(
                        clock, member, updated_at, max_age), (max_age, updated_at, age)


def test_a_write_time_beyond_64_bits_raises_as_before() -> None:
    # Not a time this code wrote (a damaged file): the formula cannot spell it, and neither path hides that.
    index = object.__new__(MemberIndex)
    index._clock = lambda: T0
    index._max_age = WEEK
    for updated_at in (2**63, -(2**63) - 1, 2**70):
        with pytest.raises(OverflowError):
            reference_expired(T0, b"m" * 16, updated_at, WEEK)
        with pytest.raises(OverflowError):
            index._expired(b"m" * 16, updated_at)


def test_plain_payloads_take_orjson_and_the_others_the_standard_encoder() -> None:
    # What the equivalence above rests on: only shapes both encoders spell alike go to orjson.
    assert _orjson_spells_alike({"first_name": "Ann", "city_id": 7, "custom_data": {"a": [None, True]}}, 0)
    others: list[object] = [{"score": 1.5}, {"tier": Tier.GOLD}, {"name": Label("x")}, {Label("k"): 1},
                            {"t": (1,)}, types.MappingProxyType({}), {"deep": nested_dicts(40)}]
    for payload in others:
        assert not _orjson_spells_alike(payload, 0), payload
