"""Activity Credit writer, pure parts: row parsing, dedupe keys, within-sync duplicates; and the
uncertain-outcome decisions driven through the scripted CrowdTwist (tests_support/fake_api.py: a fake
clock, no sleeping)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from destination_crowdtwist.api.errors import ConfigError, TransientError, UncertainOutcome
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.sync.replay_policy import ReplayPolicy
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD, ActivityCreditWriter, Credit, dedupe_key
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Prepared, Row, StreamContext
from destination_crowdtwist.writers.dry_run import DryRunWriter
from destination_crowdtwist.writers.history import MAX_PAGES
from destination_crowdtwist.writers.ledger import CreditLedger, ledger_scope
from tests_support.fake_api import FakeApi, Reply

STREAM = StreamContext(namespace=None, name="credits", sync_mode="append", object_name="activity_credit")
ACTIVITIES: list[dict[str, Any]] = [{"id": "1001", "num_points": 10}, {"id": 1002, "num_points": 50}]
AWARDED = Reply(200, {"awarded": True})


def history(*keys: str) -> Reply:
    """A history answer (the legacy bare list) holding our credits of activity 1001 with these dedupe keys."""
    return Reply(200, [{"activity_id": "1001", "extra_data": {DEDUPE_KEY_FIELD: k}} for k in keys])


def make_writer(api: FakeApi | None = None, **config: Any) -> ActivityCreditWriter:
    """A started writer; unless scripted otherwise, credits are awarded and histories are empty."""
    raw = {
        "api_base_url": "https://api123.crowdtwist.com",
        "credentials": {"auth_type": "api_key", "api_key": "k"},
        "object_type": "activity_credit",
        "award_queue_delay_seconds": 2,
        **config,
    }
    api = api or FakeApi()
    api.activities = [dict(a) for a in ACTIVITIES]
    api.always("credit_activity", AWARDED).always("activity_history", history())
    writer = ActivityCreditWriter(parse_config(raw), api, clock=api.clock, sleep=api.wait)
    writer.start()
    return writer


def sent(api: FakeApi) -> list[dict[str, Any]]:
    """The bodies of the credits sent, in order."""
    return [call.payload or {} for call in api.to("credit_activity")]


def history_reads(api: FakeApi) -> int:
    return len(api.to("activity_history"))


def row(data: Mapping[str, Any], seq: int = 0, stream: StreamContext = STREAM, verify: bool = False) -> Row:
    return Row(stream=stream, data=dict(data), seq=seq, verify=verify)


def parse(data: Mapping[str, Any], writer: ActivityCreditWriter | None = None, **kw: Any) -> Any:
    """The parsed Credit, or the Rejection of a row that cannot be credited."""
    writer = writer or make_writer()
    result = writer.prepare(row(data, **kw))
    if isinstance(result, Outcome):
        return result.rejection
    return result.payload


def settle(writer: ActivityCreditWriter, r: Row) -> Outcome:
    """Prepare then apply one row, as the pipeline does. The write loop marks rows to verify as the
    sync's replay policy says: under every_row that is every credit row (replay_window rows are marked
    by each test, as the window would).
    """
    if writer.cfg.credit_verification == "every_row":
        r = dataclasses.replace(r, verify=ReplayPolicy.for_sync("every_row", [r.stream]).verify(r.stream))
    result = writer.prepare(r)
    return result if isinstance(result, Outcome) else writer.apply(result)


BASE = {"user_id": "Alice@Example.com", "activity_id": "1001"}


# -- parsing --------------------------------------------------------------------------------------


def test_minimal_row_parses_and_payload_carries_the_key() -> None:
    credit = parse(BASE)
    assert isinstance(credit, Credit)
    assert credit.user_id == "alice@example.com"  # email ids are case-insensitive
    assert credit.payload() == {"activity_id": "1001", "extra_data": {DEDUPE_KEY_FIELD: credit.dedupe_key}}


def test_full_row_parses_with_coercions() -> None:
    credit = parse({**BASE, "activity_id": 1002.0, "num_points": "15", "activity_date": "2024-01-05T10:00:00+02:00",
                    "extra_data": '{"store": "NYC"}', "event_id": " ord-1 "})
    assert (credit.activity_id, credit.num_points, credit.activity_date) == ("1002", 15, 1704441600)
    assert credit.payload() == {
        "activity_id": "1002",
        "num_points": 15,
        "activity_date": 1704441600,
        "extra_data": {"store": "NYC", DEDUPE_KEY_FIELD: "ord-1"},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2024-01-05", 1704412800), (1704412800000, 1704412800), (1704412800, 1704412800), ("1704412800", 1704412800),
     ("2024-01-05T00:00:00Z", 1704412800), (1704412800.9, 1704412800)],
)
def test_activity_date_forms(value: Any, expected: int) -> None:
    assert parse({**BASE, "activity_date": value}).activity_date == expected


@pytest.mark.parametrize(
    ("change", "reason", "needle"),
    [
        ({"user_id": None}, "missing_identifier", "user_id is required"),
        ({"user_id": ""}, "missing_identifier", "user_id is required"),
        ({"user_id": True}, "validation", "user_id: expected an email address"),
        ({"user_id": ["a"]}, "validation", "user_id: expected an email address"),
        ({"user_id": "not-an-email"}, "validation", "user_id: expected an email address"),
        ({"activity_id": None}, "validation", "activity_id is required"),
        ({"activity_id": False}, "validation", "activity_id must be"),
        ({"activity_id": "9999"}, "invalid_activity", "not an active activity"),
        ({"num_points": "1.5"}, "validation", "num_points"),
        ({"num_points": 2.5}, "validation", "num_points"),
        ({"num_points": False}, "validation", "num_points"),
        ({"num_points": {}}, "validation", "num_points"),
        ({"activity_date": "yesterday"}, "validation", "activity_date"),
        ({"activity_date": True}, "validation", "activity_date"),
        ({"extra_data": "[1]"}, "validation", "extra_data"),
        ({"extra_data": "{oops"}, "validation", "extra_data"),
        ({"extra_data": 3}, "validation", "extra_data"),
    ],
)
def test_row_problems_have_a_reason_class(change: dict[str, Any], reason: str, needle: str) -> None:
    problem = parse({**BASE, **change})
    assert not isinstance(problem, Credit)
    assert problem.reason == reason
    assert needle in problem.message


def test_invalid_activity_message_says_where_to_check() -> None:
    problem = parse({**BASE, "activity_id": "77"})
    assert "Control Center" in problem.message
    assert "GET /v2/activities" in problem.message


def test_phone_and_id_identifiers_are_normalised() -> None:
    # The identifier type is the stream's (routing gives classic streams user_identifier_type).
    phone = StreamContext(None, "credits", "append", "activity_credit", id_type="mobile_phone_number")
    assert parse({**BASE, "user_id": "+1 (555) 010-2030"}, stream=phone).user_id == "15550102030"
    assert not isinstance(parse({**BASE, "user_id": "n/a"}, stream=phone), Credit)
    by_id = StreamContext(None, "credits", "append", "activity_credit", id_type="id")
    assert parse({**BASE, "user_id": 269654579.0}, stream=by_id).user_id == "269654579"


def test_a_matching_key_field_identifies_the_member_in_data_activation() -> None:
    stream = StreamContext(None, "points", "append", "activity_credit", id_field="third_party_id",
                           id_type="third_party_id")
    credit = parse({"third_party_id": " tp-42 ", "activity_id": "1001"}, stream=stream)
    assert (credit.user_id, credit.id_type) == ("tp-42", "third_party_id")
    missing = parse({"user_id": "x@example.com", "activity_id": "1001"}, stream=stream)
    assert (missing.reason, missing.field) == ("missing_identifier", "third_party_id")


def test_field_mapping_and_custom_event_id_field() -> None:
    writer = make_writer(
        field_mapping=[{"source": "who.email", "destination": "user_id"}, {"source": "pts", "destination": "num_points"}],
        event_id_field="order_id",
    )
    credit = parse({"who": {"email": "B@x.com"}, "activity_id": "1001", "pts": 3, "order_id": 991}, writer)
    assert (credit.user_id, credit.num_points, credit.dedupe_key) == ("b@x.com", 3, "991")


def test_ignored_fields_are_listed_once_per_stream_when_the_writer_closes(caplog: pytest.LogCaptureFixture) -> None:
    writer = make_writer(field_mapping=[{"source": "mail", "destination": "user_id"}])
    other = StreamContext(namespace="shop", name="credits", sync_mode="append")
    with caplog.at_level(logging.INFO, logger="airbyte"):
        for i in range(3):
            row = {"mail": "a@x.com", "activity_id": "1001", "colour": "red", "size": i, "_ab_cdc_lsn": i}
            parse(row, writer, seq=i)
        parse({"mail": "a@x.com", "activity_id": "1001", "colour": "red"}, writer, seq=3, stream=other)
        during = [r.getMessage() for r in caplog.records if "ignor" in r.getMessage()]
        writer.close()
    lines = [r.getMessage() for r in caplog.records if "ignor" in r.getMessage()]
    assert during == []  # nothing per row: one line per stream, at the end
    assert lines == [
        "Activity Credit: stream credits: fields ignored (not credit fields): 'colour', 'size'.",
        "Activity Credit: stream shop.credits: fields ignored (not credit fields): 'colour'.",
    ]


# -- dedupe keys ----------------------------------------------------------------------------------


def key(data: Mapping[str, Any], stream: StreamContext = STREAM) -> str:
    credit = parse(data, stream=stream)
    assert isinstance(credit, Credit)
    return credit.dedupe_key


def test_same_row_gives_the_same_key_in_another_writer() -> None:
    data = {**BASE, "num_points": 5, "activity_date": "2024-01-05", "extra_data": {"a": 1, "b": [1, 2]}}
    assert key(data) == key(dict(data))
    assert key(data).startswith("sha256:")
    assert len(key(data)) == len("sha256:") + 40


def test_equivalent_values_give_the_same_key() -> None:
    first = key({**BASE, "activity_date": "2024-01-05", "extra_data": {"a": 1, "b": 2}, "colour": "red"})
    same = key({"user_id": "alice@example.com", "activity_id": 1001, "activity_date": 1704412800000,
                "extra_data": '{"b": 2, "a": 1}', "colour": "blue"})  # ignored fields do not count
    assert first == same


@pytest.mark.parametrize(
    "change",
    [{"num_points": 6}, {"activity_id": "1002"}, {"user_id": "bob@example.com"}, {"activity_date": "2024-01-06"},
     {"extra_data": {"a": 2}}],
)
def test_a_different_credit_gives_a_different_key(change: dict[str, Any]) -> None:
    base = {**BASE, "num_points": 5, "activity_date": "2024-01-05", "extra_data": {"a": 1}}
    assert key({**base, **change}) != key(base)


def test_stream_and_primary_key_are_part_of_the_hash() -> None:
    other = StreamContext(namespace="shop", name="credits", sync_mode="append")
    with_pk = StreamContext(namespace=None, name="credits", sync_mode="append_dedup", primary_key=(("id",),))
    assert key(BASE, other) != key(BASE)
    assert key({**BASE, "id": 1}, with_pk) != key({**BASE, "id": 2}, with_pk)


def test_event_id_wins() -> None:
    assert key({**BASE, "event_id": "E-1", "num_points": 1}) == "E-1"
    assert key({**BASE, "event_id": "E-1", "num_points": 2, "user_id": "x@y.com"}) == "E-1"
    assert key({**BASE, "event_id": 12}) == key({**BASE, "event_id": 12.0}) == "12"
    # Blank, null or non-scalar event ids fall back to the hash.
    assert key({**BASE, "event_id": "  "}) == key(BASE) == key({**BASE, "event_id": None})
    assert key({**BASE, "event_id": {"id": 1}}).startswith("sha256:")


def test_dedupe_key_function_is_pure() -> None:
    r = row({"id": 1})
    kwargs: dict[str, Any] = {"num_points": 5, "activity_date": 1704412800, "extra_data": {"x": 1}}
    assert dedupe_key(r, "u", "1001", **kwargs) == dedupe_key(r, "u", "1001", **kwargs)
    assert dedupe_key(r, "u", "1001", **kwargs, event_id="e") == "e"


# -- duplicates within a sync -----------------------------------------------------------------------


def test_second_row_with_the_same_key_is_a_duplicate_and_not_sent(api: FakeApi) -> None:
    writer = make_writer(api, credit_verification="none")
    rows = [row({**BASE, "event_id": "e"}, 0), row({**BASE, "event_id": "e", "num_points": 9}, 1), row(BASE, 2)]
    prepared = [writer.prepare(r) for r in rows]
    assert all(isinstance(p, Prepared) and p.member == "email:alice@example.com" for p in prepared)
    ready = [p for p in prepared if isinstance(p, Prepared)]
    assert ready[1].payload.duplicate_of == 0
    kinds = [writer.apply(p).kind for p in ready]
    assert kinds == ["credited", "duplicate", "credited"]
    assert len(sent(api)) == 2


def test_rejected_rows_settle_in_prepare_without_a_request(api: FakeApi) -> None:
    writer = make_writer(api)
    outcome = writer.prepare(row({**BASE, "num_points": "x"}))
    assert isinstance(outcome, Outcome)
    assert (outcome.kind, outcome.reason) == ("rejected", "validation")
    assert sent(api) == []


def test_a_repeat_of_a_rejected_row_is_tried_again_not_counted_as_duplicate(api: FakeApi) -> None:
    api.expect("credit_activity", Reply(400, {"message": "bad"}), AWARDED)
    writer = make_writer(api, credit_verification="none")
    kinds = [settle(writer, row({**BASE, "event_id": "e"}, i)).kind for i in range(3)]
    assert kinds == ["rejected", "credited", "duplicate"]


def test_event_ids_are_scoped_by_member_and_activity(api: FakeApi) -> None:
    writer = make_writer(api, credit_verification="none")
    rows = [row({**BASE, "event_id": "1"}, 0), row({**BASE, "user_id": "bob@example.com", "event_id": "1"}, 1),
            row({**BASE, "activity_id": "1002", "event_id": "1"}, 2)]
    assert [settle(writer, r).kind for r in rows] == ["credited", "credited", "credited"]


# -- uncertain outcomes (scripted CrowdTwist, fake clock) ---------------------------------------------------


def uncertain() -> UncertainOutcome:
    return UncertainOutcome("connection dropped", request_line="POST /v2/users/a***/activities")


def test_uncertain_then_found_in_history_is_credited_without_resending(api: FakeApi) -> None:
    api.expect("credit_activity", uncertain())
    api.expect("activity_history", history(), history("e1"))  # visible on the second read (queued)
    writer = make_writer(api, credit_verification="none")
    r = row({**BASE, "event_id": "e1"})

    outcome = settle(writer, r)

    assert outcome.kind == "credited"
    assert "confirmed in activity history" in (outcome.message or "")
    assert len(sent(api)) == 1
    assert history_reads(api) == 2
    assert sum(api.waits) < 2  # stopped polling as soon as the key showed up


def test_uncertain_and_absent_after_the_queue_delay_is_resent_once(api: FakeApi) -> None:
    api.expect("credit_activity", uncertain())
    writer = make_writer(api, credit_verification="none")
    r = row({**BASE, "event_id": "e1"})

    assert settle(writer, r).kind == "credited"
    assert len(sent(api)) == 2
    assert sum(api.waits) == pytest.approx(2.0)  # trusted "absent" only after award_queue_delay_seconds
    assert history_reads(api) >= 2


def test_closing_says_how_lost_answers_were_resolved(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    # e1's answer is lost but it landed; e2's answer is lost and it had not: sent again, then accepted.
    api.expect("credit_activity", uncertain(), uncertain())
    api.expect("activity_history", history("e1"))  # then: empty histories, answers 200
    writer = make_writer(api, credit_verification="none")
    assert settle(writer, row({**BASE, "event_id": "e1"}, 0)).kind == "credited"
    assert settle(writer, row({**BASE, "event_id": "e2"}, 1)).kind == "credited"

    with caplog.at_level(logging.INFO, logger="airbyte"):
        writer.close()

    assert [c["extra_data"][DEDUPE_KEY_FIELD] for c in sent(api)] == ["e1", "e2", "e2"]
    assert ("2 credit answers were lost after sending (timeouts, dropped connections, server errors); the activity "
            "history showed 1 of them had landed (not sent again) and 1 had not (sent again).") in caplog.text


def test_uncertain_outcomes_beyond_max_retries_stop_the_sync(api: FakeApi) -> None:
    api.expect("credit_activity", uncertain(), uncertain(), uncertain())
    writer = make_writer(api, credit_verification="none", max_retries=2)
    r = row({**BASE, "event_id": "e1"})

    with pytest.raises(TransientError) as err:
        settle(writer, r)
    assert not isinstance(err.value, UncertainOutcome)
    assert "verifies this row in activity history" in err.value.message
    assert len(sent(api)) == 3  # the first try and two re-sends, each after a negative history check


def test_a_server_error_on_a_credit_is_an_uncertain_outcome_verified_before_resending(api: FakeApi) -> None:
    # The client answers a 5xx to a credit with UncertainOutcome (never retried blindly): so does the fake.
    api.expect("credit_activity", Reply(502, {"message": "bad gateway"}))
    writer = make_writer(api, credit_verification="none")
    assert settle(writer, row({**BASE, "event_id": "e1"})).kind == "credited"
    assert len(sent(api)) == 2 and history_reads(api) >= 1


def test_replay_window_rows_wait_for_the_queue_then_read_history_once_per_member(api: FakeApi) -> None:
    api.expect("activity_history", history("e1"))
    writer = make_writer(api)
    rows = [row({**BASE, "event_id": "e1"}, 0, verify=True), row({**BASE, "event_id": "e2"}, 1, verify=True),
            row({**BASE, "event_id": "e3"}, 2, verify=False)]

    kinds = [settle(writer, r).kind for r in rows]

    assert kinds == ["duplicate", "credited", "credited"]
    assert history_reads(api) == 1
    assert api.waits == [pytest.approx(2.0)]  # once, until award_queue_delay_seconds after the start
    assert [c["extra_data"][DEDUPE_KEY_FIELD] for c in sent(api)] == ["e2", "e3"]


def test_not_awarded_answer(api: FakeApi) -> None:
    api.expect("credit_activity", Reply(200, {"awarded": False, "message": "cap"}))
    writer = make_writer(api, credit_verification="none")
    r = row(BASE)
    assert settle(writer, r).kind == "not_awarded"


def test_a_credit_for_a_member_that_does_not_exist_says_to_sync_the_profile_first(api: FakeApi) -> None:
    api.expect("credit_activity", Reply(404, {"error": "page_not_found", "message": "User does not exist."}))
    outcome = settle(make_writer(api, credit_verification="none"), row(BASE))
    assert (outcome.reason, outcome.status) == ("not_found", 404)
    assert "sync the member's profile before crediting activities" in (outcome.message or "")


def test_event_already_processed_is_a_duplicate(api: FakeApi) -> None:
    api.expect("credit_activity", Reply(400, {"error": "input_error", "message": "Event already processed"}))
    outcome = settle(make_writer(api, credit_verification="none"), row(BASE))
    assert (outcome.kind, outcome.status) == (OutcomeKind.DUPLICATE, 400)


def test_a_credentials_problem_stops_the_sync_instead_of_rejecting_rows(api: FakeApi) -> None:
    api.expect("credit_activity", Reply(403, {"error": "forbidden", "message": "Invalid API key"}))
    with pytest.raises(ConfigError, match="refused the credentials"):
        settle(make_writer(api, credit_verification="none"), row(BASE))


# -- points bounds and default activity (hostile-input audit) ---------------------------------------------


@pytest.mark.parametrize("points", [1e300, 10**30, 1_000_001, "2000000"])
def test_absurd_point_values_are_rejected_before_any_request(points: Any) -> None:
    problem = parse({**BASE, "num_points": points})
    assert (problem.reason, problem.field) == ("validation", "num_points")
    assert "max_points_per_credit" in problem.message


def test_negative_points_are_refused_unless_debits_are_allowed() -> None:
    assert "negative" in parse({**BASE, "num_points": -5}).message
    assert parse({**BASE, "num_points": -5}, make_writer(allow_negative_points=True)).num_points == -5


def test_the_maximum_is_configurable() -> None:
    writer = make_writer(max_points_per_credit=50)
    assert parse({**BASE, "num_points": 50}, writer).num_points == 50
    assert parse({**BASE, "num_points": 51}, writer).reason == "validation"


def test_default_activity_id_fills_rows_without_one() -> None:
    writer = make_writer(default_activity_id="1002")
    assert parse({"user_id": "a@example.com"}, writer).activity_id == "1002"
    assert parse({"user_id": "a@example.com", "activity_id": "1001"}, writer).activity_id == "1001"


def test_a_default_activity_that_is_not_active_stops_the_sync_at_start() -> None:
    with pytest.raises(ConfigError, match="default_activity_id 4242 is not an active activity"):
        make_writer(default_activity_id="4242")


# --- the sync's memory of events is exact however long the sync (writers/credit_memory.py) ---------


def test_a_repeat_far_behind_its_first_row_is_still_a_duplicate(api: FakeApi) -> None:
    writer = make_writer(api, credit_verification="none")

    def credit(data: dict[str, Any], seq: int) -> OutcomeKind:
        prepared = writer.prepare(row(data, seq=seq))
        assert isinstance(prepared, Prepared)
        return writer.apply(prepared).kind

    first = {"user_id": "a@x.com", "activity_id": "1001", "event_id": "evt-first"}
    assert credit(first, 0) is OutcomeKind.CREDITED
    for i in range(1, 3000):
        assert credit({"user_id": f"m{i}@x.com", "activity_id": "1001", "event_id": f"e{i}"}, i) is OutcomeKind.CREDITED
    assert credit(first, 3000) is OutcomeKind.DUPLICATE
    assert len(sent(api)) == 3000
    writer.close()


def test_a_repeat_of_a_not_awarded_credit_is_a_duplicate_although_history_does_not_list_it(api: FakeApi) -> None:
    # History lists only awarded credits: only the sync's own memory can catch this repeat.
    api.expect("credit_activity", Reply(200, {"awarded": False}))
    writer = make_writer(api)
    data = {"user_id": "a@x.com", "activity_id": "1001", "event_id": "capped"}
    kinds = []
    for seq in range(2):
        prepared = writer.prepare(row(data, seq=seq))
        assert isinstance(prepared, Prepared)
        kinds.append(writer.apply(prepared).kind)
    assert kinds == [OutcomeKind.NOT_AWARDED, OutcomeKind.DUPLICATE]
    assert len(sent(api)) == 1
    writer.close()


# -- activity history pages and answers that prove nothing (the sandbox versions: test_history_answers.py) ----

NOT_FOUND_BODY = {"error": "page_not_found", "message": "User does not exist."}
HISTORY_404 = Reply(404, NOT_FOUND_BODY)


def _page(keys: list[str], next_page: int | None) -> Reply:
    items = [{"activity_id": "1001", "extra_data": {DEDUPE_KEY_FIELD: k}} for k in keys]
    return Reply(200, {"paging": {"total": None, "next_page": next_page}, "activities": items})


def test_a_key_on_page_two_is_found(api: FakeApi) -> None:
    api.expect("activity_history", _page(["a", "b"], 2), _page(["evt-9"], None))
    outcome = settle(make_writer(api), row({**BASE, "event_id": "evt-9"}))
    assert outcome.kind is OutcomeKind.DUPLICATE
    assert [(call.page, call.page_size) for call in api.to("activity_history")] == [(1, 25), (2, 25)]
    assert sent(api) == []


def test_history_404_for_a_member_who_does_not_exist_lets_the_row_go_on(api: FakeApi) -> None:
    api.expect("activity_history", HISTORY_404).expect("get_user", Reply(404, NOT_FOUND_BODY))
    settle(make_writer(api), row({**BASE, "event_id": "e"}))
    assert len(api.to("get_user")) == 1
    assert len(sent(api)) == 1  # the credit's own answer decides (a 404 rejects the row)


@pytest.mark.parametrize("answer", [HISTORY_404, Reply(200, {}), Reply(200, None), Reply(200, {"entries": []}),
                                    Reply(200, [3])])
def test_a_history_that_proves_nothing_stops_before_sending(api: FakeApi, answer: Reply) -> None:
    api.expect("activity_history", answer).always("get_user", Reply(200, {"id": 7}))  # the member exists
    with pytest.raises(TransientError, match="cannot prove whether a credit was already awarded"):
        settle(make_writer(api), row({**BASE, "event_id": "e"}))
    assert sent(api) == []


def test_a_history_that_cannot_be_read_stops_before_sending(api: FakeApi) -> None:
    api.expect("activity_history", Reply(400, {"error": "input_error", "message": "Invalid date range"}))
    with pytest.raises(TransientError, match="Activity history could not be read"):
        settle(make_writer(api), row({**BASE, "event_id": "e"}))
    assert sent(api) == []


def test_pages_without_end_stop_at_the_bound(api: FakeApi) -> None:
    api.expect("activity_history", *(_page([f"k{n}"], n + 2) for n in range(MAX_PAGES)))  # always a next page
    with pytest.raises(ConfigError, match="credit_history_days"):
        settle(make_writer(api), row({**BASE, "event_id": "e"}))
    assert history_reads(api) == MAX_PAGES
    assert sent(api) == []


def test_an_activity_id_holding_free_text_is_quoted_and_masked_in_masked_outputs() -> None:
    # Issue 21: an allow-listed field must not carry free text into a masked reject file or log.
    problem = parse({**BASE, "activity_id": "refund for Quentin Okonkwo, 42 Juniper St"})
    assert problem.reason == "invalid_activity"
    assert "Quentin" in problem.text(masked=False)
    masked = problem.text(masked=True)
    assert masked.startswith("activity_id *** is not an active activity of this program. Check the id")
    assert "Quentin" not in masked and "Juniper" not in masked
    # A plain id stays readable (it is what the user has to check in Control Center).
    assert parse({**BASE, "activity_id": "77"}).text(masked=True).startswith("activity_id 77 is not an active")


def test_a_row_tried_again_after_a_later_row_of_its_event_was_credited_is_a_duplicate(api: FakeApi) -> None:
    """A credit that waited for its member (sync/deferral.py) runs after a later row of the same event."""
    writer = make_writer(api, credit_verification="none")
    first = writer.prepare(row({**BASE, "event_id": "e1"}, seq=1))
    later = writer.prepare(row({**BASE, "event_id": "e1"}, seq=7))
    assert isinstance(first, Prepared) and isinstance(later, Prepared)
    assert writer.apply(later).kind is OutcomeKind.CREDITED  # the first row is still waiting
    again = writer.prepare(row({**BASE, "event_id": "e1"}, seq=1))  # the waiting row, prepared again
    assert isinstance(again, Prepared)
    outcome = writer.apply(again)
    assert outcome.kind is OutcomeKind.DUPLICATE
    assert outcome.message == "same event as a later row of this sync; credited once"


def test_a_dry_run_reads_the_member_and_credits_nothing(api: FakeApi, tmp_path: Path) -> None:
    api.activities = [dict(a) for a in ACTIVITIES]
    api.expect("get_user", Reply(200, {"id": 7}), Reply(200, {"id": 7}),
               Reply(404, {"error": "page_not_found", "message": "User does not exist."}))
    raw = {"api_base_url": "https://api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k"},
           "object_type": "activity_credit", "dry_run": True, "ledger_path": str(tmp_path / "ledger.sqlite")}
    writer = DryRunWriter(ActivityCreditWriter(parse_config(raw), api, clock=api.clock))
    writer.start()
    rows = [row({**BASE, "event_id": "e1"}, 0), row({**BASE, "event_id": "e1"}, 1),
            row({**BASE, "activity_id": "1002", "num_points": 3}, 2), row({**BASE, "user_id": "nobody@x.com"}, 3)]
    outcomes = []
    for r in rows:
        prepared = writer.prepare(r)
        assert isinstance(prepared, Prepared)
        outcomes.append(writer.apply(prepared))
    assert [(o.kind, o.message) for o in outcomes[:3]] == [
        (OutcomeKind.WOULD_CREDIT, "would credit activity 1001 (10 points)"),
        (OutcomeKind.DUPLICATE, "same event as row 0 of this sync; credited once"),
        (OutcomeKind.WOULD_CREDIT, "would credit activity 1002 (3 points)"),
    ]
    assert outcomes[3].reason == "not_found"
    assert api.methods() == ["GET"] * 3  # reads only: no credit, no history
    writer.close()
    assert not (tmp_path / "ledger.sqlite").exists()  # a dry run records nothing, not even an empty ledger


# -- a ledger read from the sync state in the bucket (issue 17) -------------------------------------


@pytest.mark.parametrize("from_bucket", [False, True])
def test_a_ledger_from_the_bucket_never_proves_a_key_absent(api: FakeApi, tmp_path: Path, from_bucket: bool) -> None:
    # A pending mark made just before a killed attempt's request may not have reached the bucket: a key
    # absent from a ledger read from there may have been credited, so it is verified as the policy says.
    path = str(tmp_path / "ledger.sqlite")
    seed = CreditLedger(path, scope=ledger_scope("https://api123.crowdtwist.com"))
    done, pending = (parse({**BASE, "event_id": event}).ledger_key for event in ("done", "pending"))
    seed.mark_done(done, OutcomeKind.CREDITED)
    seed.mark_pending(pending)
    seed.close()
    raw = {"api_base_url": "https://api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k"},
           "object_type": "activity_credit", "award_queue_delay_seconds": 0, "ledger_path": path}
    api.activities = [dict(a) for a in ACTIVITIES]
    api.always("credit_activity", AWARDED).always("activity_history", history())
    writer = ActivityCreditWriter(parse_config(raw), api, clock=api.clock, sleep=api.wait,
                                  ledger_proves_absence=not from_bucket)
    writer.start()
    rows = [row({**BASE, "event_id": "done"}, 0), row({**BASE, "event_id": "pending"}, 1),
            row({**BASE, "user_id": "bob@example.com", "event_id": "absent"}, 2)]  # another member: its own read
    outcomes = [settle(writer, r) for r in rows]
    # done: a duplicate without a request; pending: verified, then sent (the history does not hold it).
    assert [o.kind for o in outcomes] == ["duplicate", "credited", "credited"]
    # The absent key is verified (under every_row) only when the ledger comes from the bucket.
    assert history_reads(api) == (2 if from_bucket else 1)
    assert len(sent(api)) == 2
    writer.close()
