"""Functional tests of CrowdTwistClient through a strict fake HTTP server on 127.0.0.1."""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
import urllib3.connection
import urllib3.exceptions
import urllib3.response
from fakehttp import (
    Drop,
    FakeServer,
    Recorded,
    Reply,
    ScriptedPool,
    Stall,
    Trickle,
    free_port,
    html_reply,
    json_reply,
    serving,
)

import destination_crowdtwist.api.errors as errors_module
from destination_crowdtwist.api.client import CrowdTwistClient
from destination_crowdtwist.api.deadline import WatchedHTTPSConnectionPool
from destination_crowdtwist.api.errors import (
    Action,
    ConfigError,
    CrowdTwistError,
    TransientError,
    UncertainOutcome,
)
from destination_crowdtwist.api.flow import FlowControl, Gate
from destination_crowdtwist.api.redaction import mask_user_segment
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.api.retry import RetryPolicy
from destination_crowdtwist.api.signing import ApiKeyAuth, HmacAuth, content_md5, signature, string_to_sign
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.sync.protocol import traced
from destination_crowdtwist.wiring import client_from_config

API_KEY = "KEY-s3cr3t-9f8e7d"
PUBLIC = "ABCl3y7r0s5ukCXz5lCJOCrTZ427pjp5"
PRIVATE = "ABttp1b92Tb65445rmZL835f263n1q4Y"
MAINTENANCE = "<html><head><title>Scheduled Maintenance</title></head><body><h1>Down for maintenance</h1></body></html>"
PROFILE = {"id": 269654579, "email_address": "alice@example.com", "brand_new_key": {"nested": True}}


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    with serving() as server:
        yield server


class SpyBudget:
    """Records how the client uses the shared rate budget."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def acquire(self) -> float:
        self.calls.append(("acquire", None))
        return 0.0

    def on_throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        self.calls.append(("throttled", retry_after))

    def on_success(self, sent_at: float | None = None) -> None:
        self.calls.append(("success", None))

    def status(self) -> str:
        return "sending at most 9,000 requests/min (max_requests_per_minute 9,000)"


class Harness:
    """Builds clients whose sleeps are recorded, not slept, on a clock that only sleeping advances."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 0.0
        self.clients: list[CrowdTwistClient] = []
        ticks = itertools.count(1_700_000_000_000, 1500)
        self.hmac_clock: Callable[[], float] = lambda: next(ticks) / 1000

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def flow(self, budget: SpyBudget | None = None, gate: Gate | None = None) -> FlowControl:
        """A flow control of spies, on this harness's clock (its round trips are in harness time)."""
        return FlowControl(budget, gate, clock=lambda: self.now)

    def client(self, base_url: str, *, hmac: bool = False, **kwargs: Any) -> CrowdTwistClient:
        auth = HmacAuth(PUBLIC, PRIVATE, clock=self.hmac_clock) if hmac else ApiKeyAuth(API_KEY)
        kwargs.setdefault("timeout", (2.0, 2.0))
        kwargs.setdefault("rand", lambda: 0.0)
        kwargs.setdefault("clock", lambda: self.now)
        client = CrowdTwistClient(base_url, auth, sleep=self.sleep, **kwargs)
        self.clients.append(client)
        return client


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    for client in h.clients:
        client.close()


def assert_hmac_signed(req: Recorded) -> None:
    timestamp = req.headers["x-ct-timestamp"]
    assert len(timestamp) == 13  # milliseconds
    if req.method in ("GET", "DELETE"):
        md5, ctype = "", ""
    else:
        md5, ctype = hashlib.md5(req.body).hexdigest(), req.headers["content-type"]
        assert md5 == content_md5(req.body)
    expected = signature(PRIVATE, string_to_sign(req.method, md5, ctype, timestamp, req.target))
    assert req.headers["x-ct-authorization"] == f"CTApiV2Auth {PUBLIC}:{expected}"
    assert "api_key" not in req.target


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text
        assert PRIVATE not in text
        assert "CTApiV2Auth" not in text


# -- happy paths and request shape ----------------------------------------------------------------


def test_get_user_request_shape_and_unknown_keys_kept_but_harmless(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/users/alice%40example.com", json_reply(200, PROFILE))
    client = harness.client(fake_server.url)
    response = client.get_user("alice@example.com", "email")
    assert response.status == 200
    assert response.ok
    assert response.data["id"] == 269654579
    assert response.text is None
    assert response.resolution.action is Action.OK
    assert response.request_line == "GET /v2/users/a***?id_type=email"
    (req,) = fake_server.requests
    assert req.target == f"/v2/users/alice%40example.com?id_type=email&api_key={API_KEY}"
    assert req.body == b""
    assert "content-type" not in req.headers
    assert req.headers["accept"] == "application/json"
    assert req.headers["user-agent"].startswith("airbyte-destination-crowdtwist/")


def test_user_id_is_one_percent_encoded_path_segment(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("PUT", "/v2/users/a%2Fb%3Fc%23d%20e", json_reply(200, PROFILE))
    harness.client(fake_server.url).update_user("a/b?c#d e", "third_party_id", {"first_name": "A"})
    assert fake_server.requests[0].query["id_type"] == ["third_party_id"]


def test_post_sends_exact_compact_json_bytes_and_hmac_signs_them(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users", json_reply(200, PROFILE))
    client = harness.client(fake_server.url, hmac=True)
    client.create_user({"first_name": "Zoë", "last_name": "O'Brien", "postal_code": "10010"})
    (req,) = fake_server.requests
    assert req.body == '{"first_name":"Zoë","last_name":"O\'Brien","postal_code":"10010"}'.encode()
    assert req.headers["content-type"] == "application/json"
    assert_hmac_signed(req)


def test_credit_and_history_paths(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/103997/activities", json_reply(200, {"awarded": True, "extra": 1}))
    fake_server.expect("GET", "/v2.1/users/103997/activity_history", json_reply(200, []))
    client = harness.client(fake_server.url, hmac=True)
    assert client.credit_activity("103997", "id", {"activity_id": "410052775"}).data["awarded"] is True
    client.activity_history("103997", "id", 1_700_000_000, 1_700_086_400)
    credit, history = fake_server.requests
    assert credit.json() == {"activity_id": "410052775"}
    assert history.target == "/v2.1/users/103997/activity_history?id_type=id&date_start=1700000000&date_end=1700086400"
    for req in (credit, history):
        assert_hmac_signed(req)
    assert client.stats.snapshot().by_endpoint == {
        "POST /v2/users/{user_id}/activities": 1,
        "GET /v2.1/users/{user_id}/activity_history": 1,
    }


def test_list_activities_returns_the_list(fake_server: FakeServer, harness: Harness) -> None:
    activities = [{"id": "1006156", "title": "Ad Hoc Points", "new_field": 1}, "junk"]
    fake_server.expect("GET", "/v2/activities", json_reply(200, activities))
    assert harness.client(fake_server.url).list_activities() == [activities[0]]


def test_list_activities_non_list_is_config_error(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(200, {"activities": []}))
    with pytest.raises(ConfigError, match="JSON list"):
        harness.client(fake_server.url).list_activities()


# -- the retry loop --------------------------------------------------------------------------------


def test_503_503_200_retried_with_exact_delays_and_fresh_signatures(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("PUT", "/v2/users/alice%40example.com", json_reply(503, {}), json_reply(503, {}),
                       json_reply(200, PROFILE))
    budget = SpyBudget()
    client = harness.client(fake_server.url, hmac=True, flow=harness.flow(budget))
    response = client.update_user("alice@example.com", "email", {"first_name": "Alice"})
    assert response.status == 200
    assert harness.sleeps == [0.25, 0.5]  # base 0.5 s, doubled, equal jitter with rand() = 0
    assert len(fake_server.requests) == 3
    for req in fake_server.requests:
        assert_hmac_signed(req)
        assert req.body == b'{"first_name":"Alice"}'
    assert len({req.headers["x-ct-timestamp"] for req in fake_server.requests}) == 3
    assert len({req.headers["x-ct-authorization"] for req in fake_server.requests}) == 3
    snap = client.stats.snapshot()
    assert (snap.requests, snap.retries, snap.statuses) == (3, 2, {503: 2, 200: 1})
    # acquire before every attempt; 5xx is no reason to speed up, the final 200 is.
    assert [name for name, _ in budget.calls] == ["acquire", "acquire", "acquire", "success"]


class SpyGate:
    """Records how the client uses the in-flight gate, in one list with the budget's calls."""

    capacity = 7

    def __init__(self, calls: list[tuple[str, Any]]) -> None:
        self.calls = calls

    def enter(self) -> None:
        self.calls.append(("enter", None))

    def leave(self, rtt: float | None) -> None:
        self.calls.append(("leave", rtt))

    def status(self) -> str:
        return "up to 7 requests at once (max_concurrency 128), round trip 300 ms"


class SlowPool(ScriptedPool):
    """A scripted pool whose every answer takes 0.3 s of the harness clock."""

    harness: Harness | None = None

    def urlopen(self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                **kwargs: Any) -> urllib3.response.HTTPResponse:
        assert self.harness is not None
        self.harness.now += 0.3
        return super().urlopen(method, url, body, headers, **kwargs)


def test_every_attempt_passes_the_gate_before_the_budget_and_reports_its_round_trip(harness: Harness) -> None:
    budget = SpyBudget()

    def acquire_after_two_seconds() -> float:
        harness.now += 2.0  # waiting for a paced slot is not part of the round trip
        budget.calls.append(("acquire", None))
        return harness.now

    budget.acquire = acquire_after_two_seconds  # type: ignore[method-assign]  # this spy's acquire also moves the clock
    adapter = SlowPool().queue(
        (429, {}), urllib3.exceptions.ConnectTimeoutError("timed out"), (200, []),
    )
    adapter.harness = harness
    client = harness.client("https://api1.crowdtwist.com", pool=adapter,
                            flow=harness.flow(budget, SpyGate(budget.calls)))
    assert client.list_activities() == []
    adapter.verify()
    assert budget.calls == [
        # a 429 is no round trip of the path (a gateway may refuse at once); the retry's backoff
        # sleep happens outside the gate; a connect timeout is no round trip either
        ("enter", None), ("acquire", None), ("throttled", None), ("leave", None),
        ("enter", None), ("acquire", None), ("leave", None),
        ("enter", None), ("acquire", None), ("success", None), ("leave", pytest.approx(0.3)),
    ]
    assert client.flow.status_line() == ("up to 7 requests at once (max_concurrency 128), round trip 300 ms; "
                                   "sending at most 9,000 requests/min (max_requests_per_minute 9,000)")


def test_workers_wanted_counts_requests_pausing_before_a_retry(fake_server: FakeServer, harness: Harness) -> None:
    # A 429's Retry-After holds a worker thread but no place in flight: the pool needs one more worker.
    fake_server.expect("GET", "/v2/activities", json_reply(429, {}, {"Retry-After": "1"}), json_reply(200, []))
    client = harness.client(fake_server.url, flow=harness.flow(gate=SpyGate([])))
    seen: list[int] = []
    sleep = harness.sleep

    def sleep_and_look(seconds: float) -> None:
        seen.append(client.flow.workers_wanted())
        sleep(seconds)

    client._sleep = sleep_and_look
    assert client.flow.workers_wanted() == 7
    client.list_activities()
    assert seen == [8]
    assert client.flow.workers_wanted() == 7


def test_a_config_error_still_leaves_the_gate(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(302, {}, {"Location": "https://elsewhere.example"}))
    calls: list[tuple[str, Any]] = []
    client = harness.client(fake_server.url, flow=harness.flow(gate=SpyGate(calls)))
    with pytest.raises(ConfigError):
        client.list_activities()
    assert calls == [("enter", None), ("leave", None)]


def test_client_from_config_wires_a_gate_that_follows_the_budget() -> None:
    client = client_from_config(parse_config({
        "api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": API_KEY},
        "max_requests_per_minute": 6000, "max_concurrency": 50,
    }))
    # 100/s x the assumed 100 ms x 1.25 + 2 before the first answer; the budget paces at 6,000/min.
    assert client.flow.status_line() == ("up to 15 requests at once (max_concurrency 50), round trip not measured yet; "
                                   "sending at most 6,000 requests/min (max_requests_per_minute 6,000)")
    client.close()


def test_429_without_retry_after_backs_off_and_cuts_the_budget(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(429, {"error": "rate_limited"}), json_reply(200, []))
    budget = SpyBudget()
    client = harness.client(fake_server.url, flow=harness.flow(budget))
    assert client.list_activities() == []
    assert harness.sleeps == [0.25]
    assert budget.calls == [("acquire", None), ("throttled", None), ("acquire", None), ("success", None)]
    assert client.flow.request_totals() == (2, 1)


def test_429_with_retry_after_seconds_is_honoured(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(429, {}, {"Retry-After": "7"}), json_reply(200, []))
    budget = SpyBudget()
    harness.client(fake_server.url, flow=harness.flow(budget)).list_activities()
    assert harness.sleeps == [7.0]
    assert ("throttled", 7.0) in budget.calls


def test_429_with_retry_after_date_uses_the_server_date(fake_server: FakeServer, harness: Harness) -> None:
    server_now = 1_700_000_000
    headers = {"Retry-After": formatdate(server_now + 12, usegmt=True), "Date": formatdate(server_now, usegmt=True)}
    fake_server.expect("GET", "/v2/activities", json_reply(429, {}, headers), json_reply(200, []))
    # Our own clock is 1000 s ahead of the server's; the server's Date header wins.
    harness.client(fake_server.url, wall_clock=lambda: server_now + 1000.0).list_activities()
    assert harness.sleeps == [12.0]


def test_retry_after_date_without_date_header_uses_wall_clock(harness: Harness) -> None:
    retry_at = {"Retry-After": formatdate(1_700_000_030, usegmt=True)}
    client, adapter = _scripted_client(harness, (429, {}, retry_at), (200, []), wall_clock=lambda: 1_700_000_000.0)
    client.list_activities()
    assert harness.sleeps == [30.0]
    adapter.verify()


def test_exhausted_retries_raise_transient_error(fake_server: FakeServer, harness: Harness) -> None:
    body = {"error": "internal_error", "message": "Something went wrong on our end."}
    fake_server.expect("GET", "/v2/users/103997", *[json_reply(500, body)] * 4)
    client = harness.client(fake_server.url)
    with pytest.raises(TransientError) as info:
        client.get_user("103997", "id")
    err = info.value
    assert type(err) is TransientError
    assert len(fake_server.requests) == 4
    assert harness.sleeps == [0.25, 0.5, 1.0]
    assert (err.status, err.error_code, err.api_message) == (500, "internal_error", "Something went wrong on our end.")
    assert "Gave up after 4 attempts" in err.message
    assert err.request_line == "GET /v2/users/1***?id_type=id"
    assert_no_secret(str(err), repr(err))


def test_max_retries_and_custom_policy(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(502, {}), json_reply(502, {}))
    client = harness.client(fake_server.url, retry_policy=RetryPolicy(max_retries=1, base=2.0))
    with pytest.raises(TransientError, match="Gave up after 2 attempts"):
        client.list_activities()
    assert harness.sleeps == [1.0]


def test_html_503_maintenance_is_retried_and_reported_readably(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", html_reply(503, MAINTENANCE), html_reply(503, MAINTENANCE),
                       json_reply(200, [{"id": "1"}]))
    assert harness.client(fake_server.url).list_activities() == [{"id": "1"}]
    assert harness.sleeps == [0.25, 0.5]


def test_html_503_longer_than_the_unavailable_timeout_is_a_transient_error(
    fake_server: FakeServer, harness: Harness
) -> None:
    fake_server.expect("GET", "/v2/activities", *[html_reply(503, MAINTENANCE)] * 5)
    client = harness.client(fake_server.url, max_retries=1, unavailable_timeout=2.0)
    with pytest.raises(TransientError) as info:
        client.list_activities()
    # Backoff 0.25, 0.5, 1.0, then 2.0 cut to the 0.25 s left; the fifth 503 comes at 2.0 s and ends it.
    assert harness.sleeps == [0.25, 0.5, 1.0, 0.25]
    assert "maintenance" in info.value.message
    assert "Gave up after 5 attempts in 2s" in info.value.message
    assert info.value.api_message == "Scheduled Maintenance Down for maintenance"


# -- non-idempotent requests ----------------------------------------------------------------------


def test_credit_5xx_is_uncertain_after_one_request(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/103997/activities", json_reply(502, {}))
    client = harness.client(fake_server.url)
    with pytest.raises(UncertainOutcome) as info:
        client.credit_activity("103997", "id", {"activity_id": "1"})
    assert len(fake_server.requests) == 1
    assert harness.sleeps == []
    assert info.value.status == 502
    assert client.stats.snapshot().uncertain == 1


@pytest.mark.parametrize("drop", [Drop(), Drop(reset=True)], ids=["closed", "reset"])
def test_credit_dropped_connection_is_uncertain(fake_server: FakeServer, harness: Harness, drop: Drop) -> None:
    fake_server.expect("POST", "/v2/users/103997/activities", drop)
    with pytest.raises(UncertainOutcome, match="connection dropped"):
        harness.client(fake_server.url).credit_activity("103997", "id", {"activity_id": "1"})
    assert len(fake_server.requests) == 1
    assert harness.sleeps == []


def test_credit_read_timeout_is_uncertain(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/103997/activities", Stall(5.0))
    client = harness.client(fake_server.url, timeout=(2.0, 0.2))
    with pytest.raises(UncertainOutcome, match=r"no answer within 0.2s") as info:
        client.credit_activity("103997", "id", {"activity_id": "1"})
    assert len(fake_server.requests) == 1
    assert_no_secret(str(info.value), repr(info.value))


@pytest.mark.parametrize("status", [429, 408])
def test_credit_429_and_408_are_still_retried(fake_server: FakeServer, harness: Harness, status: int) -> None:
    # Both mean the server did not process the request, so repeating a credit cannot double it.
    fake_server.expect(
        "POST", "/v2/users/103997/activities", json_reply(status, {}), json_reply(200, {"awarded": True})
    )
    response = harness.client(fake_server.url).credit_activity("103997", "id", {"activity_id": "1"})
    assert response.data == {"awarded": True}
    assert len(fake_server.requests) == 2


def test_idempotent_read_timeout_and_drop_are_retried(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/users/1", Stall(5.0), Drop(), json_reply(200, PROFILE))
    client = harness.client(fake_server.url, timeout=(2.0, 0.2))
    assert client.get_user("1", "id").status == 200
    assert len(fake_server.requests) == 3
    assert harness.sleeps == [0.25, 0.5]
    assert client.stats.snapshot().connection_errors == 2


def test_connection_refused_is_retried_even_for_credits_then_transient(harness: Harness) -> None:
    client = harness.client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError) as info:
        client.credit_activity("alice@example.com", "email", {"activity_id": "1"})
    err = info.value
    assert type(err) is TransientError  # nothing was sent, so nothing is uncertain
    assert "Could not reach the CrowdTwist host 127.0.0.1" in err.message
    assert "Gave up after 4 attempts" in err.message
    assert harness.sleeps == [0.25, 0.5, 1.0]
    assert err.request_line == "POST /v2/users/a***/activities?id_type=email"
    assert_no_secret(str(err), repr(err))


def _scripted_client(harness: Harness, *items: Any, **kwargs: Any) -> tuple[CrowdTwistClient, ScriptedPool]:
    adapter = ScriptedPool().queue(*items)
    return harness.client("https://api1.crowdtwist.com", pool=adapter, **kwargs), adapter


def test_connect_timeout_is_retried_for_credits(harness: Harness) -> None:
    timeout = urllib3.exceptions.ConnectTimeoutError("timed out")
    client, adapter = _scripted_client(harness, timeout, (200, {"awarded": True}))
    assert client.credit_activity("1", "id", {"activity_id": "1"}).status == 200
    assert len(adapter.sent) == 2
    adapter.verify()


def test_dns_failure_says_host_unreachable_and_hides_the_key(harness: Harness) -> None:
    url = f"/v2/activities?api_key={API_KEY}"
    # The objects urllib3 builds when the resolver fails: the connection, the gaierror and the pool.
    host = "api1.crowdtwist.com"
    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    reason = urllib3.exceptions.NameResolutionError(host, urllib3.connection.HTTPSConnection(host), gaierror)
    dns = urllib3.exceptions.MaxRetryError(urllib3.HTTPSConnectionPool(host), url, reason)
    assert API_KEY in str(dns)  # the library message does carry the key
    client, adapter = _scripted_client(harness, dns, dns, dns, dns)
    with pytest.raises(TransientError) as info:
        client.list_activities()
    assert "Could not reach the CrowdTwist host api1.crowdtwist.com (connection failed: NameResolutionError)" in str(
        info.value
    )
    assert info.value.__suppress_context__
    assert_no_secret(str(info.value), repr(info.value), json.dumps(_trace(info.value)))
    adapter.verify()


# -- configuration errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (401, {"error": "invalid_signature", "message": "Signature mismatch"}, "HMAC"),
        (401, {"error": "invalid_signature", "message": "Timestamp expired"}, "clock"),
        (403, {"error": "forbidden", "message": "Invalid API key"}, "invalid API key"),
    ],
)
def test_auth_failures_are_config_errors_without_retry(
    fake_server: FakeServer, harness: Harness, status: int, body: dict[str, str], match: str
) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(status, body))
    with pytest.raises(ConfigError, match=match) as info:
        harness.client(fake_server.url, hmac=True).list_activities()
    assert info.value.status == status
    assert harness.sleeps == []
    assert_no_secret(str(info.value), repr(info.value))


def test_redirect_is_config_error_and_never_followed(fake_server: FakeServer, harness: Harness) -> None:
    target = f"https://api1.crowdtwist.com/v2/activities?api_key={API_KEY}"
    fake_server.expect("GET", "/v2/activities", json_reply(301, {}, {"Location": target}))
    with pytest.raises(ConfigError) as info:
        harness.client(fake_server.url).list_activities()
    assert "redirects to https://api1.crowdtwist.com/v2/activities?api_key=***" in info.value.message
    assert "use the final https URL" in info.value.message
    assert len(fake_server.requests) == 1  # a followed redirect would be an unexpected request
    assert_no_secret(str(info.value), repr(info.value))


@pytest.mark.parametrize(
    "reply",
    [html_reply(404, "<html><body>Not Found</body></html>"), json_reply(404, {"error": "page_not_found"})],
    ids=["html", "json"],
)
def test_404_on_activities_means_wrong_base_url(fake_server: FakeServer, harness: Harness, reply: Any) -> None:
    fake_server.expect("GET", "/v2/activities", reply)
    with pytest.raises(ConfigError, match="base URL"):
        harness.client(fake_server.url).list_activities()


def test_tls_failure_is_config_error_naming_tls(fake_server: FakeServer, harness: Harness) -> None:
    # An https URL pointing at a plain-HTTP server: the handshake fails for real.
    client = harness.client(f"https://127.0.0.1:{fake_server.port}")
    with pytest.raises(ConfigError, match=r"TLS handshake with 127\.0\.0\.1 failed"):
        client.list_activities()
    assert harness.sleeps == []


def test_invalid_base_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="base URL"):
        CrowdTwistClient("api1.crowdtwist.com", ApiKeyAuth(API_KEY))


# -- record-level answers -------------------------------------------------------------------------


def test_record_level_400_is_returned_for_the_caller(fake_server: FakeServer, harness: Harness) -> None:
    body = {"error": "input_error", "message": "US zip code or country/city combo is required", "debug": "x"}
    fake_server.expect("POST", "/v2/users", json_reply(400, body))
    response = harness.client(fake_server.url).create_user({"first_name": "A"})
    assert isinstance(response, ApiResponse)
    assert (response.status, response.error_code, response.error_message) == (400, body["error"], body["message"])
    assert response.request_line == "POST /v2/users"
    assert response.rejection() == Rejection(
        Reason.LOCATION,
        "US zip code or country/city combo is required — CrowdTwist needs a location: a 5-digit postal_code for US "
        "members, or country_code with city_id (or city_name) elsewhere. Fix the row's location fields.",
        status=400,
    )
    assert harness.sleeps == []


def test_returned_response_messages_are_redacted_and_masked(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users", json_reply(400, {"message": f"alice@example.com taken {API_KEY}"}))
    client = harness.client(fake_server.url, mask_text=lambda t: t.replace("alice@example.com", "a***"))
    response = client.create_user({})
    assert response.safe_message == "a*** taken ***"
    rejection = response.rejection()
    assert rejection.message.startswith("a*** taken *** — ")  # the masked text, never the raw one
    assert rejection.reason is Reason.VALIDATION
    assert_no_secret(str(rejection), repr(rejection))
    assert "alice@example.com" not in repr(rejection)


def test_the_servers_text_is_quoted_apart_from_the_hint(fake_server: FakeServer, harness: Harness) -> None:
    # Issue 21: CrowdTwist's text may echo the input; a masked output masks it and keeps the hint.
    echo = "Invalid postal_code for Quentin Okonkwo, 42 Juniper St, Springfield; DOB 1990-05-17"
    fake_server.expect("POST", "/v2/users", json_reply(400, {"error": "input_error", "message": echo}))
    rejection = harness.client(fake_server.url).create_user({}).rejection()
    hint = "CrowdTwist rejected a field value; see the API message, fix the source data or field mapping."
    assert rejection.text(masked=False) == f"{echo} — {hint}"
    assert rejection.text(masked=True) == f"Invalid postal_code for *** ***, *** *** ***, ***; *** *** — {hint}"


def test_unknown_member_404_is_returned(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/users/bob%40example.com",
                       json_reply(404, {"error": "page_not_found", "message": "User does not exist."}))
    response = harness.client(fake_server.url).get_user("bob@example.com", "email")
    assert response.resolution.reason is Reason.NOT_FOUND
    assert response.rejection().reason is Reason.NOT_FOUND


# -- secrets, masking, statistics, concurrency ----------------------------------------------------


def _trace(err: CrowdTwistError) -> Any:
    message = traced(err).as_airbyte_message()
    assert message.trace is not None and message.trace.error is not None
    return {"message": message.trace.error.message, "internal": message.trace.error.internal_message,
            "stack": message.trace.error.stack_trace}


def test_api_key_never_in_any_error_text(fake_server: FakeServer, harness: Harness) -> None:
    echo = f"bad key {API_KEY}"
    fake_server.expect("GET", "/v2/activities", json_reply(403, {"error": "forbidden", "message": echo}))
    fake_server.expect("POST", "/v2/users/1/activities", json_reply(500, {"message": echo}))
    fake_server.expect("PUT", "/v2/users/1", *[json_reply(502, {"message": echo})] * 2)
    client = harness.client(fake_server.url, max_retries=1)
    errors: list[CrowdTwistError] = []
    for call in (
        client.list_activities,
        lambda: client.credit_activity("1", "id", {"activity_id": "1"}),
        lambda: client.update_user("1", "id", {"first_name": "A"}),
    ):
        with pytest.raises(CrowdTwistError) as info:
            call()
        errors.append(info.value)
    assert [type(e) for e in errors] == [ConfigError, UncertainOutcome, TransientError]
    for err in errors:
        assert_no_secret(str(err), repr(err), json.dumps(_trace(err)), err.api_message or "")
        assert "bad key ***" in (err.api_message or "")
    assert API_KEY not in repr(client)


def test_custom_mask_path_and_mask_text(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("PUT", "/v2/users/alice%40example.com",
                       json_reply(500, {"message": "alice@example.com is locked"}))
    client = harness.client(fake_server.url, max_retries=0, mask_path=lambda p: p.replace("alice", "A"),
                            mask_text=lambda t: t.replace("alice@example.com", "<email>"))
    with pytest.raises(TransientError) as info:
        client.update_user("alice@example.com", "email", {})
    assert info.value.request_line == "PUT /v2/users/A%40example.com?id_type=email"
    assert info.value.api_message == "<email> is locked"


def test_mask_user_segment() -> None:
    assert mask_user_segment("/v2/users/alice%40x.com/activities") == "/v2/users/a***/activities"
    assert mask_user_segment("/v2/users") == "/v2/users"
    masked = mask_user_segment("/v2.1/users/42/activity_history", lambda v: f"<{v}>")
    assert masked == "/v2.1/users/<42>/activity_history"
    # The deletion status names the member after /users/delete/: the id is masked, not the word.
    assert mask_user_segment("/v2/users/delete/564865656") == "/v2/users/delete/5***"
    assert mask_user_segment("/v2/users/delete?id_type=username") == "/v2/users/d***?id_type=username"


def test_pool_is_configured_for_our_own_retries(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client = harness.client("https://api1.crowdtwist.com", pool_size=7)
    pool = client._transport.pool
    assert isinstance(pool, WatchedHTTPSConnectionPool)  # the watchdog can cut its connections
    # urllib3 never resends on its own (and raises its errors raw), nor follows a redirect.
    assert isinstance(pool.retries, urllib3.Retry) and pool.retries.total is False and not pool.retries.redirect
    assert pool.pool is not None and pool.pool.maxsize == 7 and pool.block is False
    assert pool.cert_reqs == "CERT_REQUIRED"  # TLS verification stays on
    assert pool.ca_certs == requests.utils.DEFAULT_CA_BUNDLE_PATH  # certifi's bundle, as requests used


def test_thread_safe_under_concurrency(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", None, *[json_reply(200, PROFILE)] * 40)
    client = harness.client(fake_server.url, pool_size=4, hmac=True)
    failures: deque[BaseException] = deque()

    def work(n: int) -> None:
        try:
            for i in range(10):
                assert client.get_user(f"user{n}-{i}", "third_party_id").status == 200
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert client.stats.snapshot().by_endpoint == {"GET /v2/users/{user_id}": 40}
    assert sorted(req.path for req in fake_server.requests) == sorted(
        f"/v2/users/user{n}-{i}" for n in range(4) for i in range(10)
    )
    for req in fake_server.requests:
        assert_hmac_signed(req)


def test_client_from_config_masks_ids_and_uses_api_key(fake_server: FakeServer) -> None:

    cfg = parse_config({"api_base_url": fake_server.url, "credentials": {"auth_type": "api_key", "api_key": API_KEY},
                        "max_retries": 0})
    fake_server.expect("GET", "/v2/users/john.doe%40example.com", json_reply(500, {}))
    client = client_from_config(cfg)
    try:
        with pytest.raises(TransientError) as info:
            client.get_user("john.doe@example.com", "email")
    finally:
        client.close()
    assert info.value.request_line == "GET /v2/users/j***@e***.com?id_type=email"
    assert fake_server.requests[0].query["api_key"] == [API_KEY]


def test_fake_server_itself_is_strict(harness: Harness) -> None:
    server = FakeServer()
    try:
        server.expect("GET", "/v2/activities", json_reply(200, []), json_reply(200, []))
        client = harness.client(server.url, max_retries=0)
        client.list_activities()
        with pytest.raises(AssertionError, match="unused queued action for GET /v2/activities"):
            server.verify()
        client.get_user("1", "id")  # consumes the second action, but on the wrong path
        with pytest.raises(TransientError):
            client.list_activities()  # nothing queued: the fake answers 599 and records an error
        with pytest.raises(AssertionError, match="expected path /v2/activities, got GET /v2/users/1") as info:
            server.verify()
        assert "unexpected request GET /v2/activities" in str(info.value)
    finally:
        server.close()


def test_429s_beyond_max_retries_cost_time_not_the_row(fake_server: FakeServer, harness: Harness) -> None:
    # Throttling refuses the request without applying it, so the client keeps trying (bounded by
    # time, not by max_retries): a rate limit below our budget slows the sync, it never drops rows.
    replies = [json_reply(429, {"error": "rate_limited"}) for _ in range(8)] + [json_reply(200, [])]
    fake_server.expect("GET", "/v2/activities", *replies)
    client = harness.client(fake_server.url, max_retries=1)
    assert client.list_activities() == []
    assert harness.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # backoff (jitter 0), capped at 2**5 * base
    assert client.flow.request_totals() == (9, 8)


def test_throttling_longer_than_the_throttle_timeout_is_a_transient_error(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", *[json_reply(429, {}, {"Retry-After": "30"}) for _ in range(3)])
    now = [0.0]

    def sleep(seconds: float) -> None:
        harness.sleeps.append(seconds)
        now[0] += seconds

    client = CrowdTwistClient(fake_server.url, ApiKeyAuth(API_KEY), sleep=sleep, clock=lambda: now[0],
                              throttle_timeout=60.0, rand=lambda: 0.0)
    harness.clients.append(client)
    with pytest.raises(TransientError) as info:
        client.list_activities()
    assert info.value.status == 429
    assert harness.sleeps == [30.0, 30.0]
    assert "Gave up after 3 attempts in 60s" in info.value.message


def test_pool_resolves_environment_once_and_keeps_a_configured_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY))
    try:
        pool = client._transport.pool
        assert isinstance(pool, WatchedHTTPSConnectionPool)  # one pool, set up once: no per-request lookups
        assert pool.ca_certs == "/etc/corp/ca.pem"
        assert pool.cert_reqs == "CERT_REQUIRED"
    finally:
        client.close()


# -- one classification per answer ----------------------------------------------------------------


PACKAGE = Path(__file__).resolve().parents[1] / "destination_crowdtwist"


def _calls_of(name: str) -> dict[str, int]:
    """Calls of a function named ``name`` in each module of the package (by module path)."""
    found: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called == name:
                    key = str(path.relative_to(PACKAGE))
                    found[key] = found.get(key, 0) + 1
    return found


def test_the_package_classifies_answers_in_one_place() -> None:
    # Finding 1 of issue 22: an answer is classified once, where its ApiResponse is built, and nowhere
    # else in the package (no writer, no sync module classifies again).
    assert _calls_of("classify_response") == {"api/response.py": 1}


#: Comparisons with a number in 100-599 that are not CrowdTwist statuses, each with why.
NOT_CROWDTWIST_STATUSES = {
    # A code point above Latin-1, not a status.
    ("config/checks.py", "ord(ch) > 255"),
    # A length limit of the sync state's records, not a status.
    ("state/codec.py", "len(raw_id) > 255"),
}
#: Modules with a status table of their own, for another service (so the guard does not apply to them).
OTHER_SERVICES_TABLES = {
    "rejects/s3_failures.py",  # S3's answers (403 denied, 404 missing, 5xx/408/429 retryable), not CrowdTwist's
}


def test_no_module_but_the_table_tests_http_statuses() -> None:
    # Status semantics live in the status table (api/errors.py) only: the client, the transport, the
    # retry decision, the flow control and the counters read its rows, and so must every other layer
    # (writers receive a reason, never a status).
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name == "api/errors.py" or name in OTHER_SERVICES_TABLES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                numbers = [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, int)]
                numbers += [e.value for v in values if isinstance(v, ast.Tuple | ast.Set | ast.List)
                            for e in v.elts if isinstance(e, ast.Constant) and isinstance(e.value, int)]
                if any(100 <= n <= 599 for n in numbers) and (name, ast.unparse(node)) not in NOT_CROWDTWIST_STATUSES:
                    found.append(f"{name}: {ast.unparse(node)}")
    assert found == []


def test_each_answer_is_classified_once(fake_server: FakeServer, harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # Count the calls wherever the package holds classify_response, not in one module only.
    calls: list[int] = []
    real = errors_module.classify_response

    def counting(status: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(status)
        return real(status, *args, **kwargs)

    holders = [module for name, module in list(sys.modules.items())
               if name.startswith("destination_crowdtwist") and getattr(module, "classify_response", None) is real]
    assert errors_module in holders and len(holders) >= 2  # the table, and whoever imported it
    for module in holders:
        monkeypatch.setattr(module, "classify_response", counting)
    fake_server.expect("POST", "/v2/users", json_reply(400, {"message": "Invalid activity"}))
    response = harness.client(fake_server.url).create_user({})
    assert not response.ok
    assert response.resolution.action is Action.REJECT
    assert response.rejection().reason is Reason.INVALID_ACTIVITY
    assert response.rejection().reason is Reason.INVALID_ACTIVITY
    assert calls == [400]


def test_rejection_without_a_crowdtwist_message_is_the_hint_alone() -> None:
    response = ApiResponse(404, {"error": "page_not_found"}, {}, endpoint="GET /v2/users/{user_id}")
    assert response.rejection() == Rejection(Reason.NOT_FOUND, response.resolution.hint, status=404)


def test_rejection_of_an_answer_that_is_no_refusal_is_a_programming_error() -> None:
    for response in (ApiResponse(200, {}, {}), ApiResponse(403, {}, {})):
        with pytest.raises(ValueError, match="not a row-level refusal"):
            response.rejection()


def test_a_staged_resolution_is_kept() -> None:
    response = ApiResponse(200, {}, {}, resolution=ApiResponse(404, {}, {}).resolution)
    assert response.rejection().reason is Reason.NOT_FOUND


# -- a 2xx that is not JSON is no success (issue 12, item 7) ----------------------------------------


def test_2xx_html_page_is_retried_not_taken_for_success(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", html_reply(200, "<html><body>Please log in to the proxy</body></html>"),
                       json_reply(200, [{"id": "1"}]))
    assert harness.client(fake_server.url).list_activities() == [{"id": "1"}]
    assert harness.sleeps == [0.25]


def test_2xx_not_json_exhausted_is_a_transient_error(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("PUT", "/v2/users/1", *[Reply(200, b"OK", (("Content-Type", "text/plain"),))] * 2)
    with pytest.raises(TransientError, match="not JSON") as info:
        harness.client(fake_server.url, max_retries=1).update_user("1", "id", {"first_name": "A"})
    assert type(info.value) is TransientError
    assert info.value.api_message == "OK"
    assert "Gave up after 2 attempts" in info.value.message


def test_2xx_html_to_a_credit_is_uncertain(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/1/activities", html_reply(200, MAINTENANCE))
    with pytest.raises(UncertainOutcome, match="HTTP 200"):
        harness.client(fake_server.url).credit_activity("1", "id", {"activity_id": "1"})
    assert len(fake_server.requests) == 1


def test_empty_2xx_body_is_success(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("PUT", "/v2/users/1", Reply(204))
    response = harness.client(fake_server.url).update_user("1", "id", {"first_name": "A"})
    assert (response.ok, response.data, response.text) == (True, None, None)


# -- Retry-After is capped (C9) ---------------------------------------------------------------------


def test_retry_after_of_an_hour_is_capped_for_the_request_and_the_budget(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", json_reply(429, {}, {"Retry-After": "3600"}), json_reply(200, []))
    budget = SpyBudget()
    harness.client(fake_server.url, flow=harness.flow(budget)).list_activities()
    assert harness.sleeps == [60.0]
    assert ("throttled", 60.0) in budget.calls  # the shared pause is capped too: no worker waits an hour


def test_retry_after_date_a_year_away_is_capped(fake_server: FakeServer, harness: Harness) -> None:
    server_now = 1_700_000_000
    headers = {"Retry-After": formatdate(server_now + 365 * 86400, usegmt=True), "Date": formatdate(server_now, usegmt=True)}
    fake_server.expect("PUT", "/v2/users/1", json_reply(503, {}, headers), json_reply(200, PROFILE))
    harness.client(fake_server.url, retry_after_cap=5.0).update_user("1", "id", {"first_name": "A"})
    assert harness.sleeps == [5.0]


def test_capped_retry_after_still_respects_the_time_bound(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", "/v2/activities", *[json_reply(429, {}, {"Retry-After": "3600"})] * 3)
    with pytest.raises(TransientError, match="Gave up after 3 attempts in 100s"):
        harness.client(fake_server.url, throttle_timeout=100.0).list_activities()
    assert harness.sleeps == [60.0, 40.0]


# -- a total deadline per attempt (C10) -------------------------------------------------------------


def test_trickling_answer_hits_the_attempt_deadline_and_is_retried(fake_server: FakeServer, harness: Harness) -> None:
    # One byte every 0.1 s: every socket read succeeds well within the 2 s read timeout, so only the
    # attempt deadline (real clock here) can stop it.
    fake_server.expect("GET", "/v2/users/1", Trickle(json.dumps(PROFILE).encode(), 0.1), json_reply(200, PROFILE))
    client = harness.client(fake_server.url, clock=time.monotonic, attempt_deadline=0.3)
    started = time.monotonic()
    assert client.get_user("1", "id").status == 200
    assert time.monotonic() - started < 1.5
    assert harness.sleeps == [0.25]
    assert client.stats.snapshot().connection_errors == 1


def test_trickling_answer_to_a_credit_is_uncertain(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/1/activities", Trickle(b'{"awarded": true}', 0.1))
    client = harness.client(fake_server.url, clock=time.monotonic, attempt_deadline=0.3)
    with pytest.raises(UncertainOutcome, match=r"no complete answer within 0\.3s"):
        client.credit_activity("1", "id", {"activity_id": "1"})
    assert len(fake_server.requests) == 1


def test_a_status_line_trickled_within_the_read_timeout_hits_the_attempt_deadline(
    fake_server: FakeServer, harness: Harness
) -> None:
    # The status line and headers a byte every 0.05 s (~70 bytes, 3.5 s): each socket read succeeds
    # within the 2 s read timeout, so only the watchdog's deadline (real time) ends the attempt.
    fake_server.expect("GET", "/v2/users/1", Trickle(json.dumps(PROFILE).encode(), 0.05, head=True),
                       json_reply(200, PROFILE))
    client = harness.client(fake_server.url, clock=time.monotonic, attempt_deadline=0.5)
    started = time.monotonic()
    assert client.get_user("1", "id").status == 200
    assert time.monotonic() - started < 2.0
    assert harness.sleeps == [0.25]
    assert client.stats.snapshot().connection_errors == 1


def test_a_status_line_trickled_to_a_credit_is_uncertain_at_the_deadline(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/1/activities", Trickle(b'{"awarded": true}', 0.05, head=True))
    client = harness.client(fake_server.url, clock=time.monotonic, attempt_deadline=0.5)
    started = time.monotonic()
    with pytest.raises(UncertainOutcome, match=r"no complete answer within 0\.5s"):
        client.credit_activity("1", "id", {"activity_id": "1"})
    assert time.monotonic() - started < 2.0
    assert len(fake_server.requests) == 1


def test_stop_ends_a_retry_wait_at_once_and_sends_nothing_more(fake_server: FakeServer, harness: Harness) -> None:
    # Real waits (no injected sleep): a 429 asks for 30 s; stop() from another thread ends the wait.
    fake_server.expect("GET", "/v2/activities", json_reply(429, {"error": "rate_limit_exceeded"}, {"Retry-After": "30"}))
    client = CrowdTwistClient(fake_server.url, ApiKeyAuth(API_KEY), rand=lambda: 0.0, timeout=(2.0, 2.0))
    harness.clients.append(client)
    timer = threading.Timer(0.3, client.stop)
    timer.start()
    started = time.monotonic()
    with pytest.raises(TransientError, match="The sync is stopping"):
        client.list_activities()
    assert time.monotonic() - started < 2.0
    assert len(fake_server.requests) == 1
    assert client.stopping


def test_abort_cuts_an_attempt_on_the_wire(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/1/activities", Stall(10.0))
    client = harness.client(fake_server.url, clock=time.monotonic, timeout=(2.0, 5.0))
    timer = threading.Timer(0.3, client.abort)
    timer.start()
    started = time.monotonic()
    # The credit may have landed: uncertain, never re-sent.
    with pytest.raises(UncertainOutcome, match="the sync is stopping and the request was cut off"):
        client.credit_activity("1", "id", {"activity_id": "1"})
    assert time.monotonic() - started < 2.0
    assert len(fake_server.requests) == 1


def test_attempt_deadline_defaults_to_connect_plus_read_timeout(harness: Harness) -> None:
    client = harness.client("https://api1.crowdtwist.com", timeout=(2.0, 5.0))
    assert client._transport.attempt_deadline == 7.0
    with pytest.raises(ValueError, match="attempt_deadline"):
        harness.client("https://api1.crowdtwist.com", attempt_deadline=0.0)


# -- bodies are streamed and capped (C11) -----------------------------------------------------------


def test_oversized_answer_is_a_server_error_and_never_read(fake_server: FakeServer, harness: Harness) -> None:
    big = json.dumps([{"id": str(i)} for i in range(200)]).encode()
    assert len(big) > 1000
    fake_server.expect("GET", "/v2/activities", Reply(200, big), Reply(200, big))
    with pytest.raises(TransientError, match="larger than 1,000 bytes") as info:
        harness.client(fake_server.url, max_retries=1, max_body_bytes=1000).list_activities()
    assert type(info.value) is TransientError
    assert "Gave up after 2 attempts" in info.value.message


def test_oversized_chunked_answer_to_a_credit_is_uncertain(fake_server: FakeServer, harness: Harness) -> None:
    # No Content-Length: the cap is enforced while reading, after a little more than the limit.
    fake_server.expect("POST", "/v2/users/1/activities", Reply(200, b" " * 200_000 + b"{}", chunked=True))
    with pytest.raises(UncertainOutcome, match="larger than 1,000 bytes"):
        harness.client(fake_server.url, max_body_bytes=1000).credit_activity("1", "id", {"activity_id": "1"})


def test_answer_at_the_cap_and_chunked_answers_are_read(fake_server: FakeServer, harness: Harness) -> None:
    exact = json.dumps({"pad": "x" * 990}).encode()
    assert len(exact) == 1001
    fake_server.expect("GET", "/v2/users/1", Reply(200, exact, (("Content-Type", "application/json"),)))
    fake_server.expect("GET", "/v2/users/2", Reply(200, exact, (("Content-Type", "application/json"),), chunked=True))
    client = harness.client(fake_server.url, max_body_bytes=1001)
    assert client.get_user("1", "id").data == {"pad": "x" * 990}
    assert client.get_user("2", "id").data == {"pad": "x" * 990}


def test_streamed_answers_keep_the_connection_alive(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("GET", None, json_reply(200, PROFILE), json_reply(404, {"message": "User does not exist."}),
                       json_reply(200, PROFILE))
    client = harness.client(fake_server.url)
    for user in ("1", "2", "3"):
        client.get_user(user, "id")
    assert len({req.peer_port for req in fake_server.requests}) == 1


# -- 503 / maintenance is waited out, bounded by time (C13) -----------------------------------------


def test_503s_beyond_max_retries_are_waited_out(fake_server: FakeServer, harness: Harness) -> None:
    replies = [html_reply(503, MAINTENANCE)] * 3 + [json_reply(503, {})] * 4 + [json_reply(200, PROFILE)]
    fake_server.expect("PUT", "/v2/users/1", *replies)
    client = harness.client(fake_server.url, max_retries=1)
    assert client.update_user("1", "id", {"first_name": "A"}).status == 200
    assert harness.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # capped backoff, jitter 0
    assert client.stats.snapshot().retries == 7


def test_503_waits_default_to_the_throttle_timeout_when_it_is_smaller(fake_server: FakeServer, harness: Harness) -> None:
    # check() builds its client with throttle_timeout=0: it reports maintenance at once.
    fake_server.expect("GET", "/v2/activities", html_reply(503, MAINTENANCE))
    with pytest.raises(TransientError, match="maintenance"):
        harness.client(fake_server.url, throttle_timeout=0.0).list_activities()
    assert harness.sleeps == []


def test_503_to_a_credit_is_uncertain(fake_server: FakeServer, harness: Harness) -> None:
    fake_server.expect("POST", "/v2/users/1/activities", html_reply(503, MAINTENANCE))
    with pytest.raises(UncertainOutcome, match="HTTP 503"):
        harness.client(fake_server.url).credit_activity("1", "id", {"activity_id": "1"})


# -- logging reaches the CDK's logger ----------------------------------------------------------------


def test_retries_log_on_a_child_of_the_airbyte_logger(
    fake_server: FakeServer, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.expect("GET", "/v2/users/1", json_reply(500, {}), json_reply(429, {}), json_reply(200, PROFILE))
    with caplog.at_level(logging.DEBUG, logger="airbyte"):
        harness.client(fake_server.url).get_user("1", "id")
    retries = [r for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert [(r.name, r.levelno) for r in retries] == [
        ("airbyte.crowdtwist", logging.INFO),  # the 500
        ("airbyte.crowdtwist", logging.DEBUG),  # the 429: routine, the rate budget reports it
    ]
    assert "retry 1 of 3" in retries[0].getMessage()
    # The CDK sets the level of "airbyte" only; a child inherits it, a module-named logger would not.
    assert logging.getLogger("airbyte.crowdtwist").parent is logging.getLogger("airbyte")


def test_oversized_content_length_is_refused_before_reading_the_body(fake_server: FakeServer, harness: Harness) -> None:
    # The body would take 1000 s to arrive: only refusing on the announced length is this fast.
    fake_server.expect("POST", "/v2/users/1/activities", Trickle(b" " * 2000, 0.5))
    client = harness.client(fake_server.url, clock=time.monotonic, max_body_bytes=1000, attempt_deadline=5.0)
    started = time.monotonic()
    with pytest.raises(UncertainOutcome, match="larger than 1,000 bytes"):
        client.credit_activity("1", "id", {"activity_id": "1"})
    assert time.monotonic() - started < 0.4


def test_hmac_debug_line_masks_the_member_id(fake_server: FakeServer, harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    fake_server.expect("GET", "/v2/users/alice%40example.com", json_reply(200, PROFILE))
    with caplog.at_level(logging.DEBUG, logger="airbyte"):
        harness.client(fake_server.url, hmac=True).get_user("alice@example.com", "email")
    [line] = [r for r in caplog.records if "string-to-sign" in r.getMessage()]
    assert line.name == "airbyte.crowdtwist"
    assert "/v2/users/a***?id_type=email" in line.getMessage()
    assert "alice" not in line.getMessage() and PRIVATE not in line.getMessage()


def test_a_retry_line_says_it_is_retrying_and_the_advice_comes_when_it_gives_up(
    fake_server: FakeServer, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 18 §4: "Retrying ... (retry 1 of 3) ... try the sync again later" contradicted itself.
    fake_server.expect("GET", "/v2/users/1", *[json_reply(500, {})] * 4)
    with caplog.at_level(logging.INFO, logger="airbyte"), pytest.raises(TransientError) as info:
        harness.client(fake_server.url).get_user("1", "id")
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert len(retries) == 3
    assert "retry 1 of 3" in retries[0] and "server error" in retries[0]
    assert not [line for line in retries if "again" in line.lower()], retries
    assert info.value.message == "CrowdTwist had a server error. Gave up after 4 attempts. Try the sync again later."


def test_an_unreachable_host_is_retried_without_advice_and_advised_when_given_up(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.INFO, logger="airbyte"), pytest.raises(TransientError) as info:
        harness.client(f"http://127.0.0.1:{port}", retry_policy=RetryPolicy(max_retries=1, base=0.0)).get_user("1", "id")
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying")]
    assert retries and not [line for line in retries if "try again" in line.lower()], retries
    assert info.value.message.endswith("Gave up after 2 attempts. Check the API base URL, DNS and firewall, then try again.")
