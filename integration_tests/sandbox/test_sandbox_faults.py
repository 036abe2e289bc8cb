"""Fault-injection knobs over real HTTP: rate limit, 500s, maintenance, dropped connections, latency, seed."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from sandbox_test_helpers import Api, FakeClock
from sandboxes import SandboxFactory

from crowdtwist_sandbox import Sandbox
from crowdtwist_sandbox.cli import build_parser, options_from_args


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class SleepRecorder:
    """Injected sleep: records the requested delays and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# --------------------------------------------------------------------------- rate limit
def test_rate_limit_429_with_retry_after(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, rate_limit_per_minute=3)
    api = Api(sb.base_url)
    assert [api.get("/v2/activities").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/v2/activities")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json()["error"] == "rate_limit_exceeded"
    clock.advance(45)
    assert api.get("/v2/activities").headers["Retry-After"] == "15"
    clock.advance(15)
    assert api.get("/v2/activities").status_code == 200
    counts = sb.request_counts()
    assert (counts["429"], counts["200"], counts["total"]) == (2, 4, 6)


def test_rate_limit_without_retry_after(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, rate_limit_per_minute=1, retry_after=False)
    api = Api(sb.base_url)
    assert api.get("/v2/activities").status_code == 200
    refused = api.get("/v2/activities")
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers


def test_rate_limit_token_bucket_and_fixed_window(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    bucket = Api(sandbox_factory(clock=clock, rate_limit_per_minute=120, rate_limit_algorithm="token_bucket",
                                 rate_limit_burst=2).base_url)  # fmt: skip
    assert [bucket.get("/v2/activities").status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(0.5)  # 2 tokens/s
    assert bucket.get("/v2/activities").status_code == 200
    clock.now = 1_700_000_040.0 - 20  # 40 s into a clock minute (1_700_000_040 is a multiple of 60)
    fixed = Api(sandbox_factory(clock=clock, rate_limit_per_minute=1, rate_limit_algorithm="fixed_window").base_url)
    assert fixed.get("/v2/activities").status_code == 200
    refused = fixed.get("/v2/activities")
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "20")


def test_rate_limit_is_per_instance_across_connections(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, rate_limit_per_minute=4)
    statuses = [Api(sb.base_url).get("/v2/activities").status_code for _ in range(6)]  # new session each
    assert statuses == [200] * 4 + [429] * 2


def test_rate_limit_changed_at_run_time(sandbox: Sandbox, clock: FakeClock) -> None:
    sandbox.set_options(clock=clock, rate_limit_per_minute=1)
    api = Api(sandbox.base_url)
    assert [api.get("/v2/activities").status_code for _ in range(2)] == [200, 429]
    sandbox.set_options(rate_limit_per_minute=None)
    assert api.get("/v2/activities").status_code == 200


# --------------------------------------------------------------------------- 500s
def test_injected_500_does_not_apply(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(error_rate=1.0)
    response = Api(sb.base_url).post("/v2/users", {"first_name": "A", "last_name": "B",
                                                   "email_address": "a@b.co", "postal_code": "10010"})  # fmt: skip
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "Something went wrong on our end."}
    assert sb.members() == []
    assert sb.request_counts()["500"] == 1


def test_injected_500_after_apply(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(error_rate=1.0, error_after_apply=True)
    member = sb.add_member(email_address="m@example.com", first_name="M", last_name="N", postal_code="10010")
    response = Api(sb.base_url).post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"})
    assert response.status_code == 500
    assert len(sb.credits()) == 1
    assert sb.existing_member("id", member["id"])["total_points"] == 10


def test_error_rate_is_a_fraction(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(error_rate=0.3, seed=11)
    api = Api(sb.base_url)
    statuses = [api.get("/v2/activities").status_code for _ in range(200)]
    assert 30 <= statuses.count(500) <= 90
    assert set(statuses) == {200, 500}


def test_seed_reproduces_fault_sequence(sandbox_factory: SandboxFactory) -> None:
    def run(seed: int) -> list[int]:
        sb = sandbox_factory(error_rate=0.5, seed=seed)
        api = Api(sb.base_url)
        first = [api.get("/v2/activities").status_code for _ in range(30)]
        sb.reset()  # reset restarts the random sequence too
        assert [api.get("/v2/activities").status_code for _ in range(30)] == first
        return first

    assert run(42) == run(42)
    assert run(42) != run(43)


# --------------------------------------------------------------------------- maintenance
def test_maintenance_first_n_requests(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(maintenance_first_n=2)
    api = Api(sb.base_url)
    first = api.get("/v2/activities")
    assert first.status_code == 503
    assert first.headers["Content-Type"].startswith("text/html")
    assert "<html>" in first.text
    assert api.get("/v2/activities").status_code == 503
    assert api.get("/v2/activities").status_code == 200
    assert sb.request_counts()["503"] == 2
    sb.set_options(maintenance_first_n=1)  # counts from now
    assert [api.get("/v2/activities").status_code for _ in range(2)] == [503, 200]


def test_maintenance_window(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, maintenance_window=(clock.now + 10, clock.now + 20))
    api = Api(sb.base_url)
    assert api.get("/v2/activities").status_code == 200
    clock.advance(10)
    assert api.get("/v2/activities").status_code == 503
    clock.advance(9.9)
    assert api.get("/v2/activities").status_code == 503
    clock.advance(0.1)
    assert api.get("/v2/activities").status_code == 200


# --------------------------------------------------------------------------- dropped connections
def test_drop_applies_the_change_but_client_gets_connection_error(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(drop_rate=1.0, drop_credits_only=True)
    member = sb.add_member(email_address="d@example.com", first_name="D", last_name="E", postal_code="10010")
    api = Api(sb.base_url)
    assert api.get(f"/v2/users/{member['id']}").status_code == 200  # not a credit: never dropped
    with pytest.raises(requests.ConnectionError):
        api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"})
    credits = sb.credits()
    assert [(c["user_id"], c["awarded"]) for c in credits] == [(member["id"], True)]
    assert sb.existing_member("id", member["id"])["total_points"] == 10
    # A naive retry credits a second time: exactly the trap this knob exists for.
    with pytest.raises(requests.ConnectionError):
        api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"})
    assert sb.existing_member("id", member["id"])["total_points"] == 20
    counts = sb.request_counts()
    assert counts["dropped"] == 2
    assert counts["POST /v2/users/{id}/activities"] == 2


def test_drop_any_endpoint(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        Api(sb.base_url).post("/v2/users", {"first_name": "A", "last_name": "B", "email_address": "a@b.co",
                                            "postal_code": "10010"})  # fmt: skip
    assert len(sb.members()) == 1


def test_drop_never_hits_refused_requests(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(drop_rate=1.0, api_key="k" * 30)
    assert Api(sb.base_url).get("/v2/activities").status_code == 403  # auth failure is answered


# --------------------------------------------------------------------------- latency and slow responses
def test_latency_is_per_connection_not_global(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(latency_ms=300)
    durations: list[float] = []

    def one() -> None:
        started = time.perf_counter()
        assert Api(sb.base_url).get("/v2/activities").status_code == 200
        durations.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - started
    assert min(durations) >= 0.3
    assert total < 0.3 * 2  # four concurrent 300 ms requests overlap instead of queueing (1.2 s)


@pytest.mark.parametrize(("distribution", "low", "high"), [("fixed", 50, 50), ("uniform", 30, 70), ("normal", 0, 200)])
def test_latency_distributions_use_injected_sleep(
    sandbox_factory: SandboxFactory, distribution: str, low: int, high: int
) -> None:
    sleeper = SleepRecorder()
    sb = sandbox_factory(latency_ms=50, latency_spread_ms=20, latency_distribution=distribution, sleep=sleeper, seed=5)
    api = Api(sb.base_url)
    for _ in range(40):
        api.get("/v2/activities")
    assert len(sleeper.calls) == 40
    assert all(low / 1000 <= s <= high / 1000 for s in sleeper.calls)
    if distribution != "fixed":
        assert len(set(sleeper.calls)) > 20


def test_slow_responses_on_a_fraction(sandbox_factory: SandboxFactory) -> None:
    sleeper = SleepRecorder()
    sb = sandbox_factory(slow_rate=0.25, slow_ms=800, sleep=sleeper, seed=3)
    api = Api(sb.base_url)
    for _ in range(100):
        assert api.get("/v2/activities").status_code == 200
    assert set(sleeper.calls) == {0.8}
    assert 10 <= len(sleeper.calls) <= 45


def test_slow_response_really_delays(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(slow_rate=1.0, slow_ms=150)
    started = time.perf_counter()
    assert Api(sb.base_url).get("/v2/activities").status_code == 200
    assert time.perf_counter() - started >= 0.15


# --------------------------------------------------------------------------- admin is never faulted
def test_admin_endpoints_bypass_faults(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sleeper = SleepRecorder()
    sb = sandbox_factory(clock=clock, error_rate=1.0, maintenance_first_n=3, rate_limit_per_minute=1,
                         drop_rate=1.0, latency_ms=100, sleep=sleeper)  # fmt: skip
    for name in ("members", "credits", "counters", "activities", "options", "health"):
        assert requests.get(f"{sb.base_url}/__sandbox/{name}", timeout=5).status_code == 200
    assert sleeper.calls == []
    assert sb.request_counts()["total"] == 0
    api = Api(sb.base_url)
    assert [api.get("/v2/activities").status_code for _ in range(3)] == [503, 503, 503]  # count untouched


# --------------------------------------------------------------------------- refusals on arrival
def _timed_status(api: Api) -> tuple[int, float]:
    started = time.perf_counter()
    status = api.get("/v2/activities").status_code
    return status, time.perf_counter() - started


def test_429_and_maintenance_are_answered_on_arrival_by_default(sandbox_factory: SandboxFactory) -> None:
    # A gateway refuses before the application: the 429 and the maintenance page skip the latency,
    # while an accepted request pays it. Admin-switchable, so a bench can run both styles.
    sb = sandbox_factory(latency_ms=300, rate_limit_per_minute=60, rate_limit_algorithm="token_bucket",
                         rate_limit_burst=1)  # fmt: skip
    assert sb.options.refuse_immediately is True
    api = Api(sb.base_url)
    status, took = _timed_status(api)
    assert status == 200 and took >= 0.3
    status, took = _timed_status(api)
    assert status == 429 and took < 0.2
    sb.set_options(maintenance_first_n=1)
    status, took = _timed_status(api)
    assert status == 503 and took < 0.2
    # Over the admin API: delayed by the round trip like any answer (the old behaviour).
    changed = requests.post(f"{sb.base_url}/__sandbox/options", json={"refuse_immediately": False}, timeout=5)
    assert changed.status_code == 200 and changed.json()["refuse_immediately"] is False
    status, took = _timed_status(api)
    assert status == 429 and took >= 0.3
    sb.set_options(maintenance_first_n=1)
    status, took = _timed_status(api)
    assert status == 503 and took >= 0.3
    counts = sb.request_counts()
    assert (counts["200"], counts["429"], counts["503"], counts["total"]) == (1, 2, 2, 5)


def test_refuse_after_latency_flag() -> None:
    assert options_from_args(build_parser().parse_args([])).refuse_immediately is True
    assert options_from_args(build_parser().parse_args(["--refuse-after-latency"])).refuse_immediately is False
