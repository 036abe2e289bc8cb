"""Pure unit tests of the sandbox cores: HMAC verifier (vectors V1-V4), validators, limiter, dice, options."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pytest

from crowdtwist_sandbox.errors import ApiError
from crowdtwist_sandbox.faults import FaultDice, RateLimiter, retry_after_header
from crowdtwist_sandbox.hmac_auth import (
    HmacVerdict,
    compute_signature,
    parse_timestamp,
    string_to_sign,
    verify_request,
)
from crowdtwist_sandbox.options import SandboxOptions, json_to_changes, options_to_json, replace_options
from crowdtwist_sandbox.validation import (
    LOCATION_REQUIRED_MESSAGE,
    is_valid_email,
    is_valid_name,
    validate_credit_payload,
    validate_custom_data,
    validate_location,
    validate_user_payload,
)

# --------------------------------------------------------------------------- HMAC vectors (§1.3)
DOC_PUBLIC = "ABCl3y7r0s5ukCXz5lCJOCrTZ427pjp5"
DOC_PRIVATE = "ABttp1b92Tb65445rmZL835f263n1q4Y"
VECTORS = [
    ("V1", "GET", "/v2/activities", "1505325876486", b"",
     "OTA2MTk5ZDZlYjY1MzhjN2M0ODE0NmZjMWI4ZjA0MTczMGNjNGJlZGEwOGVmZWEwNTA5YWZmOTY4ODI3M2RiYw=="),
    ("V2", "POST", "/v2/users/alice%40crowdtwist.com/activities?id_type=email", "1505325876486",
     b'{"activity_id":"410052775","num_points":150}',
     "ZDUwYjIzMzA5MzA3NjQ5ODFlNTllYjVkYzU2ODYxMGQxN2E1MGQyMzhhMTZkYmE1YjVjNzRmOTQyODZiODJkNA=="),
    ("V3", "PUT", "/v2/users/103997?id_type=third_party_id", "1505325876486",
     b'{"first_name":"Mike","last_name":"Smith"}',
     "YjY0NGNhMjM0MTJjMzIwYzNlNGUzYzk5YmZkOWFhOGRmOGY4MjVlODNhMzIwY2NkNmJiYTIyYzg5OGNmMTRlYw=="),
    ("V4", "POST", "/v2/users", "1505325876",
     b'{"first_name":"Mike","last_name":"Smith","email_address":"a@gmail.com","postal_code":"10010"}',
     "NmZkMjRhNmRjNDA5MmM3MTg4YmVhNDBmZWFjOTQxYWI3Mjk4NmFiMzhlZjYzN2JjZmQzMzY5MDNlODk0NjhkYg=="),
]  # fmt: skip


def _verify(
    method: str, target: str, ts: str, body: bytes, sig: str, *, now: float, accept_seconds: bool = False,
    public: str = DOC_PUBLIC,
) -> HmacVerdict:
    return verify_request(
        method=method,
        request_target=target,
        body=body,
        authorization=f"CTApiV2Auth {public}:{sig}",
        timestamp=ts,
        content_type="" if method == "GET" else "application/json",
        public_key=DOC_PUBLIC,
        private_key=DOC_PRIVATE,
        now=now,
        accept_seconds=accept_seconds,
    )


def test_string_to_sign_intermediates_v1_v2() -> None:
    assert string_to_sign("GET", b"", "application/json", "1505325876486", "/v2/activities") == (
        "GET\n\n\n1505325876486\n/v2/activities"
    )
    assert string_to_sign(
        "POST", VECTORS[1][4], "application/json", "1505325876486", VECTORS[1][2]
    ) == (
        "POST\n449754e6a058d4a41ce6e30f09758c31\napplication/json\n1505325876486\n"
        "/v2/users/alice%40crowdtwist.com/activities?id_type=email"
    )


@pytest.mark.parametrize(("name", "method", "target", "ts", "body", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_signature_vectors(name: str, method: str, target: str, ts: str, body: bytes, expected: str) -> None:
    to_sign = string_to_sign(method, body, "application/json", ts, target)
    assert compute_signature(DOC_PRIVATE, to_sign) == expected
    assert len(expected) == 88


@pytest.mark.parametrize(("name", "method", "target", "ts", "body", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_verifier_accepts_vectors_with_injected_clock(
    name: str, method: str, target: str, ts: str, body: bytes, expected: str
) -> None:
    seconds_vector = len(ts) == 10
    now = int(ts) + 60.0 if seconds_vector else int(ts) / 1000 + 60.0
    verdict = _verify(method, target, ts, body, expected, now=now, accept_seconds=seconds_vector)
    assert verdict.ok, verdict


def test_verifier_seconds_timestamp_refused_by_default() -> None:
    _, method, target, ts, body, sig = VECTORS[3]
    verdict = _verify(method, target, ts, body, sig, now=int(ts) + 60.0)
    assert not verdict.ok
    assert verdict.status == 401
    assert "clock" in verdict.message


def test_verifier_stale_and_future_timestamps() -> None:
    _, method, target, ts, body, sig = VECTORS[0]
    base = int(ts) / 1000
    assert _verify(method, target, ts, body, sig, now=base + 900).ok
    assert _verify(method, target, ts, body, sig, now=base - 900).ok
    for now in (base + 901, base - 901):
        verdict = _verify(method, target, ts, body, sig, now=now)
        assert (verdict.ok, verdict.status, verdict.error) == (False, 401, "invalid_timestamp")
        assert "15 minutes" in verdict.message


def test_verifier_rejects_tampering() -> None:
    _, method, target, ts, body, sig = VECTORS[1]
    now = int(ts) / 1000
    decoded_target = target.replace("%40", "@")
    for verdict in (
        _verify(method, decoded_target, ts, body, sig, now=now),  # signature is over the RAW target
        _verify(method, target, ts, body + b" ", sig, now=now),  # raw body bytes matter
        _verify("PUT", target, ts, body, sig, now=now),
        _verify(method, target, ts, body, sig.lower(), now=now),
        _verify(method, target, ts, body, sig, now=now, public="SomeOtherPublicKey0000000000"),
    ):
        assert (verdict.ok, verdict.status, verdict.error) == (False, 401, "invalid_signature")


@pytest.mark.parametrize("header", [None, "", "CTApiKey abc", "CTApiV2Auth nocolon", "Bearer x:y"])
def test_verifier_malformed_authorization(header: str | None) -> None:
    verdict = verify_request(
        method="GET", request_target="/v2/activities", body=b"", authorization=header, timestamp="1",
        content_type=None, public_key=DOC_PUBLIC, private_key=DOC_PRIVATE, now=0.0,
    )  # fmt: skip
    assert (verdict.ok, verdict.status) == (False, 401)


def test_parse_timestamp_units() -> None:
    assert parse_timestamp("1505325876486", accept_seconds=False) == 1505325876.486
    assert parse_timestamp("1505325876", accept_seconds=False) == 1505325.876  # read as ms
    assert parse_timestamp("1505325876", accept_seconds=True) == 1505325876.0
    assert parse_timestamp("1505325876486", accept_seconds=True) == 1505325876.486
    assert parse_timestamp("12.5", accept_seconds=True) is None
    assert parse_timestamp("abc", accept_seconds=False) is None


# --------------------------------------------------------------------------- validators
@pytest.mark.parametrize(
    "name", ["Ann", "Zoë", "李", "O'Brien", "O\u2019Brien", "Anne-Marie", "J. R.", "a_b@c,d", "R2"]
)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "Ann!", "Ann\n", "<b>", "Ann;", "😀", "Ann/Bob"])
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


@pytest.mark.parametrize(("email", "ok"), [
    ("a@b.co", True), ("first.last+tag@sub.example.com", True), ("a@b", False), ("a b@c.com", False),
    ("@c.com", False), ("a@@c.com", False), ("a@c..com", False), ("x" * 250 + "@c.com", False),
])  # fmt: skip
def test_email_rule(email: str, ok: bool) -> None:
    assert is_valid_email(email) is ok


LOCATION_CASES = [
    ({"postal_code": "10010"}, None),
    ({"postal_code": "10010-1234"}, None),
    ({"postal_code": "100101234"}, None),
    ({"postal_code": "1001"}, "Invalid US zip code"),
    ({"postal_code": "ABCDE"}, "Invalid US zip code"),
    ({"postal_code": 10010}, "postal_code must be a string"),
    ({"postal_code": "10010", "country_code": "US"}, "only postal_code"),
    ({"postal_code": "10010", "city_name": "New York"}, "only postal_code"),
    ({"postal_code": "10010", "city_id": 5}, "only postal_code"),
    ({"country_code": "CA", "postal_code": "K1A 0B1"}, None),
    ({"country_code": "ca", "postal_code": "k1a 0b1", "city_id": 99}, None),
    ({"country_code": "CA", "postal_code": "K1A0B1"}, "Canadian postal code"),
    ({"country_code": "CA"}, "Canadian postal code"),
    ({"country_code": "FR", "city_name": "Paris"}, None),
    ({"country_code": "GB", "city_id": 834694}, None),
    ({"country_code": "GB", "city_id": "834694", "postal_code": "SW1A 1AA"}, None),
    ({"country_code": "FR"}, LOCATION_REQUIRED_MESSAGE),
    ({"country_code": "US"}, LOCATION_REQUIRED_MESSAGE),
    ({"city_name": "Paris"}, LOCATION_REQUIRED_MESSAGE),
    ({}, LOCATION_REQUIRED_MESSAGE),
    ({"country_code": "FRA", "city_name": "Paris"}, "two-letter"),
]


@pytest.mark.parametrize(("location", "error"), LOCATION_CASES)
def test_location_rules(location: dict[str, Any], error: str | None) -> None:
    if error is None:
        validate_location(location, required=True)
    else:
        with pytest.raises(ApiError) as info:
            validate_location(location, required=True)
        assert (info.value.status, info.value.error) == (400, "input_error")
        assert error in info.value.message


def test_location_relaxed_mode_only_allows_absence() -> None:
    assert validate_location({}, required=False)["postal_code"] is None
    with pytest.raises(ApiError, match="combo is required"):
        validate_location({"country_code": "FR"}, required=False)


def test_location_normalises() -> None:
    out = validate_location({"country_code": "ca", "postal_code": "k1a 0b1", "city_id": "12"}, required=True)
    assert out == {"postal_code": "K1A 0B1", "country_code": "CA", "city_id": 12, "city_name": None}


def _user(
    payload: Mapping[str, Any], *, creating: bool = True, attrs: Collection[str] = (), strict: bool = True
) -> dict[str, Any]:
    return validate_user_payload(payload, creating=creating, custom_attributes=attrs, strict_location=strict, now=2e9)


BASE = {"first_name": "Ann", "last_name": "Smith", "email_address": "ann@example.com", "postal_code": "94111"}


@pytest.mark.parametrize(("patch", "error", "message"), [
    ({"first_name": None}, "param_error", "Missing the first_name parameter"),
    ({"last_name": None}, "param_error", "Missing the last_name parameter"),
    ({"email_address": None}, "param_error", "Missing the email_address parameter"),
    ({"first_name": "Ann!"}, "input_error", "first_name contains invalid characters"),
    ({"last_name": 5}, "input_error", "last_name contains invalid characters"),
    ({"middle_name": "x#"}, "input_error", "middle_name contains invalid characters"),
    ({"email_address": "nope"}, "input_error", "email_address is not a valid email address"),
    ({"date_of_birth": "1990-01-01"}, "input_error", "date_of_birth"),
    ({"date_of_birth": 312724800000}, "input_error", "date_of_birth"),
    ({"date_of_birth": 1.5}, "input_error", "date_of_birth"),
    ({"email_is_verified": True}, "input_error", "email_is_verified must be 0 or 1"),
    ({"receive_email_updates": 2}, "input_error", "receive_email_updates must be 0 or 1"),
    ({"is_active": "1"}, "input_error", "is_active must be 0 or 1"),
    ({"remove_points": -1}, "input_error", "remove_points must be 0 or 1"),
    ({"username": 7}, "input_error", "username must be a string"),
    ({"third_party_id": [1]}, "input_error", "third_party_id must be a string"),
    ({"extra_data": "x"}, "input_error", "extra_data must be an object"),
    ({"custom_data": {"a": 1}}, "input_error", "No custom attributes setup for client"),
    ({"postal_code": None}, "input_error", LOCATION_REQUIRED_MESSAGE),
])  # fmt: skip
def test_user_payload_errors(patch: dict[str, Any], error: str, message: str) -> None:
    with pytest.raises(ApiError) as info:
        _user({**BASE, **patch})
    assert info.value.status == 400
    assert info.value.error == error
    assert message in info.value.message


def test_user_payload_accepts_documented_shapes() -> None:
    changes = _user({
        **BASE, "date_of_birth": 312724800, "email_is_verified": 1, "receive_email_updates": 0,
        "third_party_id": 103997, "mobile_phone_number": "2098090783", "gender_id": 2, "lang_pref": "en",
        "extra_data": {"a": 1}, "unknown_field": "ignored",
    })  # fmt: skip
    assert changes["third_party_id"] == "103997"
    assert changes["gender_id"] == "2"
    assert "unknown_field" not in changes
    assert _user({**BASE, "date_of_birth": -315619200})["date_of_birth"] == -315619200  # born before 1970


def test_user_payload_partial_update_only_sent_fields() -> None:
    assert _user({"receive_email_updates": 1}, creating=False) == {"receive_email_updates": 1}
    assert _user({"middle_name": None, "username": None}, creating=False) == {"middle_name": None, "username": None}
    with pytest.raises(ApiError, match="Missing the first_name"):
        _user({"first_name": None}, creating=False)
    # Any location key replaces the whole group, validated as on create.
    assert _user({"city_name": "Paris", "country_code": "FR"}, creating=False)["postal_code"] is None
    with pytest.raises(ApiError, match="combo is required"):
        _user({"country_code": "FR"}, creating=False)


def test_custom_data_allow_list() -> None:
    assert validate_custom_data({"store_loc": "575"}, ["store_loc", "opt_in_email"]) == {"store_loc": "575"}
    with pytest.raises(ApiError, match="Unrecognized attribute name: Store_Loc"):
        validate_custom_data({"Store_Loc": "575"}, ["store_loc"])
    with pytest.raises(ApiError, match="No custom attributes setup for client"):
        validate_custom_data({}, [])
    with pytest.raises(ApiError, match="scalar"):
        validate_custom_data({"store_loc": {"x": 1}}, ["store_loc"])


def test_credit_payload_rules() -> None:
    ids = {"1001", "410052775"}
    assert validate_credit_payload({"activity_id": 410052775}, ids).activity_id == "410052775"
    ok = validate_credit_payload(
        {"activity_id": "1001", "num_points": 150, "activity_date": 1523549197, "extra_data": {"k": "v"}}, ids
    )
    assert (ok.num_points, ok.activity_date, ok.extra_data) == (150, 1523549197, {"k": "v"})
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({}, "param_error", "Missing the activity_id parameter"),
        ({"activity_id": "999"}, "input_error", "Invalid activity id"),
        ({"activity_id": True}, "input_error", "Invalid activity id"),
        ({"activity_id": "1001", "num_points": "10"}, "input_error", "num_points must be an integer"),
        ({"activity_id": "1001", "num_points": 1.5}, "input_error", "num_points must be an integer"),
        ({"activity_id": "1001", "activity_date": 1523549197000}, "input_error", "activity_date"),
        ({"activity_id": "1001", "activity_date": "2024-01-01"}, "input_error", "activity_date"),
        ({"activity_id": "1001", "extra_data": [1]}, "input_error", "extra_data must be an object"),
    ]
    for body, error, message in cases:
        with pytest.raises(ApiError) as info:
            validate_credit_payload(body, ids)
        assert (info.value.status, info.value.error) == (400, error)
        assert message in info.value.message


# --------------------------------------------------------------------------- limiter and dice
def test_sliding_window_limiter() -> None:
    limiter = RateLimiter(3, "sliding_window")
    assert [limiter.check(100.0).allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check(100.0)
    assert (refused.allowed, refused.retry_after) == (False, 60.0)
    assert limiter.check(130.0).retry_after == 30.0
    assert limiter.check(160.0).allowed


def test_fixed_window_limiter() -> None:
    limiter = RateLimiter(2, "fixed_window")
    assert limiter.check(59.0).allowed
    assert limiter.check(59.5).allowed
    assert limiter.check(59.9).allowed is False
    assert limiter.check(60.0).allowed  # new clock minute


def test_token_bucket_limiter() -> None:
    limiter = RateLimiter(60, "token_bucket", burst=2)
    assert limiter.check(0.0).allowed
    assert limiter.check(0.0).allowed
    refused = limiter.check(0.0)
    assert refused.allowed is False
    assert refused.retry_after == pytest.approx(1.0)
    assert limiter.check(0.5).allowed is False
    assert limiter.check(1.0).allowed


def test_retry_after_header_rounds_up() -> None:
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 59.5)] == ["1", "1", "1", "2", "60"]


def test_fault_dice_reproducible() -> None:
    a, b, c = FaultDice(7), FaultDice(7), FaultDice(8)
    seq_a = [a.chance(0.5) for _ in range(64)]
    assert seq_a == [b.chance(0.5) for _ in range(64)]
    assert seq_a != [c.chance(0.5) for _ in range(64)]
    assert FaultDice(1).chance(0.0) is False
    assert FaultDice(1).chance(1.0) is True


def test_latency_distributions() -> None:
    dice = FaultDice(3)
    assert dice.latency_ms("fixed", 40, 10) == 40
    uniform = [dice.latency_ms("uniform", 50, 20) for _ in range(200)]
    assert all(30 <= v <= 70 for v in uniform)
    assert max(uniform) - min(uniform) > 20
    normal = [dice.latency_ms("normal", 5, 20) for _ in range(200)]
    assert min(normal) == 0.0  # clamped, never negative
    assert any(v > 20 for v in normal)


# --------------------------------------------------------------------------- options
def test_options_validation_and_replace() -> None:
    with pytest.raises(ValueError, match="together"):
        SandboxOptions(hmac_public_key="only-public-key-000000000")
    with pytest.raises(ValueError, match="error_rate"):
        SandboxOptions(error_rate=1.5)
    with pytest.raises(ValueError, match="latency_distribution"):
        SandboxOptions(latency_distribution="pareto")
    with pytest.raises(TypeError, match="unknown sandbox option"):
        replace_options(SandboxOptions(), nonsense=1)
    opts = replace_options(SandboxOptions(), custom_attributes=["a"], maintenance_window=[1, 2])
    assert opts.custom_attributes == ("a",)
    assert opts.maintenance_window == (1.0, 2.0)
    assert SandboxOptions(hmac_public_key="p" * 24, hmac_private_key="s" * 24).hmac_enabled


def test_options_json_round_trip() -> None:
    opts = SandboxOptions(clock=lambda: 1000.0)
    data = options_to_json(opts)
    assert "clock" not in data
    assert data["activities"][0]["id"] == "1001"
    assert json_to_changes(opts, {"maintenance_seconds": 30}) == {"maintenance_window": (1000.0, 1030.0)}
    with pytest.raises(TypeError, match="cannot be set over HTTP"):
        json_to_changes(opts, {"clock": 1})
