"""HMAC mode over real HTTP, with requests signed by the test's own signer and an injected clock."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from sandbox_test_helpers import API_KEY, HMAC_PRIVATE, HMAC_PUBLIC, VALID_USER, FakeClock, sign, signed
from sandboxes import SandboxFactory

from crowdtwist_sandbox import Sandbox


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_505_325_876.486)


@pytest.fixture
def sb(sandbox_factory: SandboxFactory, clock: FakeClock) -> Sandbox:
    return sandbox_factory(hmac_public_key=HMAC_PUBLIC, hmac_private_key=HMAC_PRIVATE, clock=clock)


def ms(clock: FakeClock) -> str:
    return str(int(clock.now * 1000))


def body_of(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def test_fixture_hmac_sandbox_uses_conftest_keys(hmac_sandbox: Sandbox) -> None:
    ts = str(int(time.time() * 1000))
    assert signed(hmac_sandbox.base_url, "GET", "/v2/activities", timestamp=ts).status_code == 200


def test_signed_get_post_put_and_credit(sb: Sandbox, clock: FakeClock) -> None:
    ts = ms(clock)
    assert signed(sb.base_url, "GET", "/v2/activities", timestamp=ts).status_code == 200
    created = signed(sb.base_url, "POST", "/v2/users", body_of(VALID_USER), timestamp=ts)
    assert created.status_code == 200
    member_id = created.json()["id"]
    updated = signed(sb.base_url, "PUT", f"/v2/users/{member_id}?id_type=id", body_of({"first_name": "Mike"}),
                     timestamp=ts)  # fmt: skip
    assert updated.json()["first_name"] == "Mike"
    credit = signed(sb.base_url, "POST", "/v2/users/ann%40example.com/activities?id_type=email",
                    body_of({"activity_id": "1001", "num_points": 150}), timestamp=ts)  # fmt: skip
    assert credit.json()["awarded"] is True
    history = signed(sb.base_url, "GET", f"/v2.1/users/{member_id}/activity_history?date_start=0", timestamp=ts)
    assert [item["num_points"] for item in history.json()["activities"]] == [150]


def test_signature_covers_raw_undecoded_target(sb: Sandbox, clock: FakeClock) -> None:
    ts = ms(clock)
    signed(sb.base_url, "POST", "/v2/users", body_of(VALID_USER), timestamp=ts)
    target = "/v2/users/ann%40example.com?id_type=email"
    assert signed(sb.base_url, "GET", target, timestamp=ts).status_code == 200
    # Signing the decoded form while sending the encoded one must fail.
    wrong = sign("GET", "/v2/users/ann@example.com?id_type=email", b"", ts)
    response = signed(sb.base_url, "GET", target, timestamp=ts, signature=wrong)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"


def test_signature_covers_query_string(sb: Sandbox, clock: FakeClock) -> None:
    ts = ms(clock)
    sig = sign("GET", "/v2/activities", b"", ts)
    assert signed(sb.base_url, "GET", "/v2/activities?x=1", timestamp=ts, signature=sig).status_code == 401


def test_signature_covers_exact_body_bytes(sb: Sandbox, clock: FakeClock) -> None:
    ts = ms(clock)
    compact = body_of(VALID_USER)
    spaced = json.dumps(VALID_USER).encode()  # same JSON, different bytes
    sig = sign("POST", "/v2/users", compact, ts)
    response = signed(sb.base_url, "POST", "/v2/users", spaced, timestamp=ts, signature=sig)
    assert response.status_code == 401
    assert sb.members() == []


def test_bad_signature_wrong_keys(sb: Sandbox, clock: FakeClock) -> None:
    ts = ms(clock)
    wrong_private = signed(sb.base_url, "GET", "/v2/activities", timestamp=ts, private_key="Z" * 32)
    assert (wrong_private.status_code, wrong_private.json()["error"]) == (401, "invalid_signature")
    assert wrong_private.json()["message"] == "Invalid signature"
    wrong_public = signed(sb.base_url, "GET", "/v2/activities", timestamp=ts, public_key="P" * 32)
    assert wrong_public.status_code == 401
    assert wrong_private.headers["Content-Type"] == "application/json"


def test_stale_timestamp_mentions_clock(sb: Sandbox, clock: FakeClock) -> None:
    stale = str(int((clock.now - 901) * 1000))
    response = signed(sb.base_url, "GET", "/v2/activities", timestamp=stale)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_timestamp"
    assert "clock" in response.json()["message"]
    assert "X-CT-Timestamp" in response.json()["message"]
    clock.advance(-1800)  # the server clock moves, not the request: now it is in the future by 15+ min
    assert signed(sb.base_url, "GET", "/v2/activities", timestamp=ms(clock)).status_code == 200
    assert signed(sb.base_url, "GET", "/v2/activities", timestamp=str(int((clock.now + 901) * 1000))).status_code == 401


def test_seconds_timestamp_only_behind_option(sb: Sandbox, sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    seconds = str(int(clock.now))
    assert signed(sb.base_url, "GET", "/v2/activities", timestamp=seconds).status_code == 401
    lenient = sandbox_factory(hmac_public_key=HMAC_PUBLIC, hmac_private_key=HMAC_PRIVATE, clock=clock,
                              hmac_accept_seconds=True)  # fmt: skip
    assert signed(lenient.base_url, "GET", "/v2/activities", timestamp=seconds).status_code == 200
    assert signed(lenient.base_url, "GET", "/v2/activities", timestamp=ms(clock)).status_code == 200


def test_api_key_alone_refused_in_hmac_mode(sb: Sandbox) -> None:
    ways: list[dict[str, Any]] = [{"params": {"api_key": API_KEY}}, {"headers": {"X-CT-Authorization": f"CTApiKey {API_KEY}"}}]
    for kwargs in ways:
        response = requests.get(f"{sb.base_url}/v2/activities", timeout=5, **kwargs)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_signature"


def test_missing_timestamp_header(sb: Sandbox, clock: FakeClock) -> None:
    sig = sign("GET", "/v2/activities", b"", ms(clock))
    response = requests.get(f"{sb.base_url}/v2/activities", timeout=5,
                            headers={"X-CT-Authorization": f"CTApiV2Auth {HMAC_PUBLIC}:{sig}"})  # fmt: skip
    assert response.status_code == 401
    assert "X-CT-Timestamp" in response.json()["message"]


def test_lowercase_header_names_accepted(sb: Sandbox, clock: FakeClock) -> None:
    ts = ms(clock)
    sig = sign("GET", "/v2/activities", b"", ts)
    response = requests.get(f"{sb.base_url}/v2/activities", timeout=5, headers={
        "x-ct-authorization": f"CTApiV2Auth {HMAC_PUBLIC}:{sig}", "x-ct-timestamp": ts,
    })  # fmt: skip
    assert response.status_code == 200


def test_hmac_switched_on_at_run_time(sandbox: Sandbox, clock: FakeClock) -> None:
    assert requests.get(f"{sandbox.base_url}/v2/activities", params={"api_key": API_KEY}, timeout=5).ok
    sandbox.set_options(hmac_public_key=HMAC_PUBLIC, hmac_private_key=HMAC_PRIVATE, clock=clock)
    assert requests.get(f"{sandbox.base_url}/v2/activities", params={"api_key": API_KEY}, timeout=5).status_code == 401
    assert signed(sandbox.base_url, "GET", "/v2/activities", timestamp=ms(clock)).status_code == 200
