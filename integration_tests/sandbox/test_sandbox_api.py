"""The sandbox's API endpoints over real HTTP (API-key mode): users, id types, validation, credits, history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from sandbox_test_helpers import API_KEY, VALID_USER, Api, FakeClock
from sandboxes import SandboxFactory

from crowdtwist_sandbox import Sandbox

PROFILE_KEYS = (  # noqa: SIM905 - one readable block of the §2.8 key list
    "id first_name middle_name last_name date_of_birth email_address email_is_verified username "
    "mobile_phone_number third_party_id is_active gender_id gender extra_data continent country us_region "
    "ca_province state city street_address_1 street_address_2 postal_code receive_email_updates "
    "date_receive_email_opt_in date_receive_email_opt_out total_points redeemable_points num_points_purchased "
    "facebook_access_token facebook_user_id date_fb_token_expires twitter_oauth_token twitter_oauth_token_secret "
    "pinterest_access_token pinterest_user_id inst_access_token inst_username inst_user_id activity_stream_opt_in "
    "store_id date_last_login date_last_updated date_created rank weekly_rank monthly_rank password salt "
    "hash_algorithm_id password_generated lang_pref sign_up_channel_id referral_url fan_level tier_info segments "
    "household_id"
).split()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sb(sandbox_factory: SandboxFactory, clock: FakeClock) -> Sandbox:
    return sandbox_factory(clock=clock, custom_attributes=("store_loc", "opt_in_email"))


@pytest.fixture
def api(sb: Sandbox) -> Api:
    return Api(sb.base_url)


def error_of(response: requests.Response) -> tuple[int, str, str]:
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    return response.status_code, body["error"], body["message"]


# --------------------------------------------------------------------------- fixtures and defaults
def test_default_fixture_is_usable(sandbox: Sandbox) -> None:
    response = requests.get(f"{sandbox.base_url}/v2/activities", params={"api_key": API_KEY}, timeout=5)
    assert response.status_code == 200
    ids = [a["id"] for a in response.json()]
    assert ids == ["1001", "1002", "1003"]
    assert response.json()[0]["title"] == "Ad Hoc Points"
    assert response.json()[0]["num_points"] == 10
    assert sandbox.base_url.startswith("http://127.0.0.1:")


def test_activities_list_shape(api: Api, sb: Sandbox) -> None:
    sb.add_activity(id="410052775", title="Coupon", num_points=150, freq_cap=2)
    items = api.get("/v2/activities").json()
    assert isinstance(items, list)
    coupon = items[-1]
    assert coupon["id"] == "410052775"
    for key in ("title", "description", "num_points", "image", "category_id", "type_id", "extra_data",
                "date_start", "date_end", "min_tier_id", "show_as_locked_by_tier", "sandbox_unknown_field"):
        assert key in coupon


def test_empty_activity_list_is_a_valid_answer(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(activities=())
    assert Api(sb.base_url).get("/v2/activities").json() == []


# --------------------------------------------------------------------------- auth (API key)
def test_api_key_in_query_or_header(api: Api, sb: Sandbox) -> None:
    assert api.get("/v2/activities").status_code == 200
    response = requests.get(
        f"{sb.base_url}/v2/activities", headers={"X-CT-Authorization": f"CTApiKey {API_KEY}"}, timeout=5
    )
    assert response.status_code == 200


@pytest.mark.parametrize(("params", "headers"), [
    ({}, {}),
    ({"api_key": "wrong-key-0000000000000000"}, {}),
    ({"api_key": ""}, {}),
    ({}, {"X-CT-Authorization": "CTApiKey wrong-key-0000000000000000"}),
    ({}, {"X-CT-Authorization": f"CTApiKey  {API_KEY}"}),  # exactly one space
    ({}, {"X-CT-Authorization": f"Bearer {API_KEY}"}),
])  # fmt: skip
def test_bad_or_missing_key_is_403(sb: Sandbox, params: dict[str, str], headers: dict[str, str]) -> None:
    response = requests.get(f"{sb.base_url}/v2/users/1", params=params, headers=headers, timeout=5)
    assert error_of(response) == (403, "invalid_api_key", "Invalid API key")


def test_custom_api_key_option(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(api_key="another-program-key-1234567890")
    assert Api(sb.base_url).get("/v2/activities").status_code == 403
    assert Api(sb.base_url, "another-program-key-1234567890").get("/v2/activities").status_code == 200


# --------------------------------------------------------------------------- create
def test_create_returns_200_and_full_profile(api: Api, clock: FakeClock) -> None:
    body = {**VALID_USER, "date_of_birth": 344754000, "email_is_verified": 1, "receive_email_updates": 1,
            "mobile_phone_number": "2098090783", "username": "ann1", "gender_id": "2", "sign_up_channel_id": 2,
            "custom_data": {"store_loc": "575"}, "extra_data": {"src": "crm"}, "send_verify_email": 1,
            "password": "s3cret"}  # fmt: skip
    response = api.post("/v2/users", body)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    profile = response.json()
    for key in PROFILE_KEYS:
        assert key in profile, key
    assert isinstance(profile["id"], int)
    assert profile["email_is_verified"] is True
    assert profile["receive_email_updates"] is True
    assert profile["is_active"] is True
    assert profile["gender"] == "Male"
    assert (profile["city"], profile["state"], profile["us_region"], profile["country"]) == (
        "San Francisco", "CA", "West", "United States"
    )
    assert profile["postal_code"] == "94111"
    assert profile["date_created"] == int(clock.now)
    assert profile["custom_data"] == {"store_loc": "575"}
    assert profile["password"] is None
    assert profile["sign_up_channel_id"] == "2"
    assert profile["sandbox_unknown_field"]


def test_create_assigns_increasing_numeric_ids(api: Api) -> None:
    first = api.create(email_address="a1@example.com")
    second = api.create(email_address="a2@example.com")
    assert second["id"] == first["id"] + 1


@pytest.mark.parametrize(("patch", "expected"), [
    ({"first_name": None}, (400, "param_error", "Missing the first_name parameter")),
    ({"last_name": "Sm!th"}, (400, "input_error", "last_name contains invalid characters")),
    ({"email_address": "not-an-email"}, (400, "input_error", "email_address is not a valid email address")),
    ({"postal_code": "123"}, (400, "input_error", "Invalid US zip code; expected 5 or 9 digits")),
    ({"postal_code": None}, (400, "input_error", "US zip code or country/city combo is required")),
    ({"country_code": "US"}, (400, "input_error", "For domestic addresses only postal_code can be provided")),
    ({"postal_code": "K1A0B1", "country_code": "CA"}, (400, "input_error",
                                                       "Invalid Canadian postal code; expected format A1A 1A1")),
    ({"postal_code": None, "country_code": "FR"},
     (400, "input_error", "US zip code or country/city combo is required")),
    ({"date_of_birth": 344754000000}, (400, "input_error", "date_of_birth must be a UNIX timestamp in seconds")),
    ({"email_is_verified": True}, (400, "input_error", "email_is_verified must be 0 or 1")),
    ({"custom_data": {"tier": "gold"}}, (400, "input_error", "Unrecognized attribute name: tier")),
])  # fmt: skip
def test_create_validation_over_http(api: Api, patch: dict[str, Any], expected: tuple[int, str, str]) -> None:
    assert error_of(api.post("/v2/users", {**VALID_USER, **patch})) == expected


@pytest.mark.parametrize("location", [
    {"postal_code": "10010-1234"},
    {"postal_code": "K1A 0B1", "country_code": "CA"},
    {"postal_code": None, "country_code": "FR", "city_name": "Paris"},
    {"postal_code": None, "country_code": "GB", "city_id": 834694},
])  # fmt: skip
def test_create_accepts_each_location_form(api: Api, location: dict[str, Any]) -> None:
    profile = api.create(**location)
    assert profile["country"] in ("United States", "Canada", "France", "United Kingdom")


def test_canadian_profile_location(api: Api) -> None:
    profile = api.create(postal_code="K1A 0B1", country_code="CA")
    assert (profile["country"], profile["ca_province"], profile["continent"]) == ("Canada", "ON", "North America")


def test_no_custom_attributes_configured(sandbox: Sandbox) -> None:
    api = Api(sandbox.base_url)
    response = api.post("/v2/users", {**VALID_USER, "custom_data": {"store_loc": "1"}})
    assert error_of(response) == (400, "input_error", "No custom attributes setup for client")


def test_echo_input_in_errors_quotes_the_path_member_and_every_key_and_value(sandbox_factory: SandboxFactory) -> None:
    api = Api(sandbox_factory(echo_input_in_errors=True).base_url)
    body = {**VALID_USER, "postal_code": "1234"}
    status, code, message = error_of(api.post("/v2/users", body))
    assert (status, code) == (400, "input_error")
    assert message == ("Invalid US zip code; expected 5 or 9 digits for first_name: Ann, last_name: Smith, "
                       "email_address: ann@example.com, postal_code: 1234")
    nested = {**VALID_USER, "custom_data": {"Quentin Doe (spouse)": "1990-05-17"}}
    assert error_of(api.post("/v2/users", nested))[2].endswith("custom_data: Quentin Doe (spouse): 1990-05-17")
    member = api.create()
    response = api.put(f"/v2/users/{member['id']}", {"last_name": "Smith 42 Elm St!"})
    assert error_of(response)[2] == f"last_name contains invalid characters for {member['id']}, last_name: Smith 42 Elm St!"
    # Not-found answers and the default instance do not echo.
    assert error_of(api.get("/v2/users/999"))[2] == "User does not exist."
    plain = Api(sandbox_factory().base_url)
    assert error_of(plain.post("/v2/users", body))[2] == "Invalid US zip code; expected 5 or 9 digits"


def test_lenient_location_mode(sandbox_factory: SandboxFactory) -> None:
    api = Api(sandbox_factory(strict_location=False).base_url)
    profile = api.create(postal_code=None)
    assert profile["postal_code"] is None
    assert error_of(api.post("/v2/users", {**VALID_USER, "postal_code": "12"}))[0] == 400


@pytest.mark.parametrize(("field", "value", "clash"), [
    ("email_address", "taken@example.com", "TAKEN@example.com"),
    ("username", "kim", "kim"),
    ("third_party_id", "crm-1", "crm-1"),
])  # fmt: skip
def test_uniqueness_on_create_and_update(api: Api, field: str, value: str, clash: str) -> None:
    api.create(email_address="first@example.com", **{field: value} if field != "email_address" else {})
    if field == "email_address":
        api.create(email_address=value)
    response = api.post("/v2/users", {**VALID_USER, "email_address": "other@example.com", field: clash})
    assert error_of(response) == (400, "input_error", f"{field} already taken.")
    other = api.create(email_address="third@example.com")
    response = api.put(f"/v2/users/{other['id']}", {field: clash})
    assert error_of(response) == (400, "input_error", f"{field} already taken.")


def test_content_type_and_json_errors(api: Api, sb: Sandbox) -> None:
    raw = requests.post(f"{sb.base_url}/v2/users", params={"api_key": API_KEY}, data=b"{}",
                        headers={"Content-Type": "text/plain"}, timeout=5)  # fmt: skip
    assert error_of(raw) == (400, "param_error", "Content-Type must be application/json")
    bad = requests.post(f"{sb.base_url}/v2/users", params={"api_key": API_KEY}, data=b"{nope",
                        headers={"Content-Type": "application/json; charset=utf-8"}, timeout=5)  # fmt: skip
    assert error_of(bad) == (400, "param_error", "Request body is not valid JSON")
    assert error_of(api.post("/v2/users", [1, 2]))[2] == "Request body must be a JSON object"


# --------------------------------------------------------------------------- lookup and id types
def test_lookup_by_every_id_type(api: Api, sb: Sandbox) -> None:
    member = api.create(email_address="alice+tag@example.com", username="alice", third_party_id="crm-42",
                        mobile_phone_number="2125550123")  # fmt: skip
    lookups = [
        (f"/v2/users/{member['id']}", {}),  # id is the default
        (f"/v2/users/{member['id']}/", {"id_type": "id"}),  # Kit's trailing slash
        ("/v2/users/alice%2Btag%40example.com", {"id_type": "email"}),  # percent-encoded
        ("/v2/users/alice+tag@example.com/", {"id_type": "email"}),  # raw; + is not a space in a path
        ("/v2/users/ALICE+TAG@EXAMPLE.COM", {"id_type": "email"}),
        ("/v2/users/crm-42", {"id_type": "third_party_id"}),
        ("/v2/users/alice", {"id_type": "username"}),
        ("/v2/users/2125550123", {"id_type": "mobile_phone_number"}),
    ]
    for path, params in lookups:
        response = api.get(path, **params)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["id"] == member["id"]
    assert sb.existing_member("third_party_id", "crm-42")["id"] == member["id"]
    assert sb.member("email", "nobody@example.com") is None


def test_unknown_member_is_404(api: Api) -> None:
    api.create()
    for path, params in [("/v2/users/1", {}), ("/v2/users/abc", {}), ("/v2/users/x@y.com", {"id_type": "email"}),
                         ("/v2/users/x/activities", {"id_type": "username"})]:  # fmt: skip
        if "activities" in path:
            response = api.post(path, {"activity_id": "1001"}, **params)
        else:
            response = api.get(path, **params)
        assert error_of(response) == (404, "page_not_found", "User does not exist.")


@pytest.mark.parametrize("id_type", ["facebook_user_id", "bogus", ""])
def test_unsupported_id_type_is_param_error(api: Api, id_type: str) -> None:
    member = api.create()
    status, error, _ = error_of(api.get(f"/v2/users/{member['id']}", id_type=id_type))
    assert (status, error) == (400, "param_error")


def test_unknown_path_and_method(api: Api) -> None:
    assert error_of(api.get("/v2/nothing"))[0:2] == (404, "page_not_found")
    assert error_of(api.call("DELETE", "/v2/activities"))[0] == 405


# --------------------------------------------------------------------------- update
def test_partial_update_changes_only_sent_fields(api: Api, clock: FakeClock) -> None:
    member = api.create(username="annie", middle_name="Q", mobile_phone_number="2125550000")
    clock.advance(10)
    response = api.put(f"/v2/users/{member['id']}", {"receive_email_updates": 1, "middle_name": None,
                                                      "username": None})  # fmt: skip
    assert response.status_code == 200
    updated = response.json()
    assert updated["receive_email_updates"] is True
    assert updated["middle_name"] is None
    assert updated["username"] is None
    assert updated["date_receive_email_opt_in"] == int(clock.now)
    assert updated["date_last_updated"] == member["date_last_updated"] + 10
    for key in ("first_name", "last_name", "email_address", "postal_code", "mobile_phone_number", "date_created"):
        assert updated[key] == member[key]
    # The cleared username is free again; the new email is indexed, the old one not.
    api.create(email_address="b@example.com", username="annie")
    api.put("/v2/users/ann@example.com", {"email_address": "ann2@example.com"}, id_type="email")
    assert api.get("/v2/users/ann2@example.com", id_type="email").status_code == 200
    assert api.get("/v2/users/ann@example.com", id_type="email").status_code == 404


def test_update_validation_and_required_fields(api: Api) -> None:
    member = api.create()
    path = f"/v2/users/{member['id']}/"
    assert error_of(api.put(path, {"first_name": None})) == (400, "param_error", "Missing the first_name parameter")
    assert error_of(api.put(path, {"is_active": 2}))[2] == "is_active must be 0 or 1"
    assert error_of(api.put(path, {"country_code": "FR"}))[2] == "US zip code or country/city combo is required"
    assert api.get(path).json() == {**member, "date_last_updated": member["date_last_updated"]}  # untouched


def test_update_location_replaces_group(api: Api) -> None:
    member = api.create(postal_code="10010")
    moved = api.put(f"/v2/users/{member['id']}", {"country_code": "FR", "city_name": "Paris"}).json()
    assert (moved["postal_code"], moved["country_code"], moved["city"], moved["country"]) == (
        None, "FR", "Paris", "France"
    )


def test_deactivate_with_remove_points(api: Api, sb: Sandbox) -> None:
    member = sb.add_member(email_address="p@example.com", first_name="P", last_name="Q", total_points=300)
    kept = api.put(f"/v2/users/{member['id']}", {"is_active": 0}).json()
    assert (kept["is_active"], kept["total_points"]) == (False, 300)
    wiped = api.put(f"/v2/users/{member['id']}", {"is_active": 0, "remove_points": 1}).json()
    assert (wiped["total_points"], wiped["redeemable_points"]) == (0, 0)


def test_custom_data_merges_on_update(api: Api) -> None:
    member = api.create(custom_data={"store_loc": "575"})
    merged = api.put(f"/v2/users/{member['id']}", {"custom_data": {"opt_in_email": "true"}}).json()
    assert merged["custom_data"] == {"store_loc": "575", "opt_in_email": "true"}
    removed = api.put(f"/v2/users/{member['id']}", {"custom_data": {"store_loc": None}}).json()
    assert removed["custom_data"] == {"opt_in_email": "true"}
    assert error_of(api.put(f"/v2/users/{member['id']}", {"custom_data": {"nope": 1}}))[2] == (
        "Unrecognized attribute name: nope"
    )


def test_update_unknown_member_is_404(api: Api) -> None:
    assert error_of(api.put("/v2/users/ghost@example.com", {"first_name": "X"}, id_type="email"))[0] == 404


# --------------------------------------------------------------------------- credits
def test_credit_awards_and_records(api: Api, sb: Sandbox, clock: FakeClock) -> None:
    member = api.create()
    path = f"/v2/users/{member['id']}/activities"
    response = api.post(path, {"activity_id": "1001"})
    assert response.status_code == 200
    assert response.json()["awarded"] is True
    assert response.headers["Content-Type"] == "application/json"
    assert api.post(path, {"activity_id": 1002, "num_points": 150, "activity_date": 1523549197,
                           "extra_data": {"coupon_numbers": "123|456"}}).json()["awarded"] is True  # fmt: skip
    profile = api.get(f"/v2/users/{member['id']}").json()
    assert (profile["total_points"], profile["redeemable_points"]) == (160, 160)
    credits = sb.credits()
    assert [(c["user_id"], c["activity_id"], c["num_points"], c["awarded"]) for c in credits] == [
        (member["id"], "1001", 10, True), (member["id"], "1002", 150, True)
    ]
    assert credits[1]["activity_date"] == 1523549197
    assert credits[1]["extra_data"] == {"coupon_numbers": "123|456"}
    assert credits[0]["created_at"] == clock.now


def test_credit_by_email_percent_encoded(api: Api, sb: Sandbox) -> None:
    api.create(email_address="alice@crowdtwist.com")
    response = api.post("/v2/users/alice%40crowdtwist.com/activities", {"activity_id": "1001"}, id_type="email")
    assert response.json()["awarded"] is True
    assert sb.existing_member("email", "alice@crowdtwist.com")["total_points"] == 10


@pytest.mark.parametrize(("body", "expected"), [
    ({}, (400, "param_error", "Missing the activity_id parameter")),
    ({"activity_id": "999999"}, (400, "input_error", "Invalid activity id")),
    ({"activity_id": "1001", "num_points": "5"}, (400, "input_error", "num_points must be an integer")),
    ({"activity_id": "1001", "activity_date": 1523549197000},
     (400, "input_error", "activity_date must be a UNIX timestamp in seconds")),
    ({"activity_id": "1001", "extra_data": "x"}, (400, "input_error", "extra_data must be an object")),
])  # fmt: skip
def test_credit_validation(api: Api, sb: Sandbox, body: dict[str, Any], expected: tuple[int, str, str]) -> None:
    member = api.create()
    assert error_of(api.post(f"/v2/users/{member['id']}/activities", body)) == expected
    assert sb.credits() == []


def test_frequency_cap_accepts_but_does_not_award(api: Api, sb: Sandbox) -> None:
    member = api.create()
    path = f"/v2/users/{member['id']}/activities"
    assert api.post(path, {"activity_id": "1003"}).json()["awarded"] is True  # 1003 has freq_cap 1
    capped = api.post(path, {"activity_id": "1003"})
    assert capped.status_code == 200
    assert capped.json()["awarded"] is False
    assert [c["awarded"] for c in sb.credits()] == [True, False]
    assert sb.existing_member("id", member["id"])["total_points"] == 25
    other = api.create(email_address="other@example.com")
    assert api.post(f"/v2/users/{other['id']}/activities", {"activity_id": "1003"}).json()["awarded"] is True


def test_repeated_credit_credits_twice_by_default(api: Api, sb: Sandbox) -> None:
    member = api.create()
    for _ in range(2):
        assert api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"}).status_code == 200
    assert sb.existing_member("id", member["id"])["total_points"] == 20


def test_duplicate_event_mode(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, duplicate_detection=True, duplicate_window_seconds=2.0)
    api = Api(sb.base_url)
    member = api.create()
    path = f"/v2/users/{member['id']}/activities"
    body = {"activity_id": "1001", "extra_data": {"k": "1"}}
    assert api.post(path, body).status_code == 200
    clock.advance(1.9)
    duplicate = api.post(path, dict(reversed(list(body.items()))))  # same JSON, other key order
    assert error_of(duplicate) == (400, "duplicate_event", "Event already processed")
    assert api.post(path, {"activity_id": "1001", "extra_data": {"k": "2"}}).status_code == 200
    clock.advance(0.1)  # 2.0 s after the first: the window is over
    assert api.post(path, body).status_code == 200
    assert len(sb.credits()) == 3
    assert sb.existing_member("id", member["id"])["total_points"] == 30


def test_queue_delay_hides_credit_until_processed(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, queue_delay_ms=1500)
    api = Api(sb.base_url)
    member = api.create()
    assert api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"}).json()["awarded"] is True
    history = f"/v2.1/users/{member['id']}/activity_history"
    assert api.get(history).json()["activities"] == []
    assert api.get(f"/v2/users/{member['id']}").json()["total_points"] == 0
    assert len(sb.credits()) == 1  # recorded at once
    clock.advance(1.499)
    assert api.get(history).json()["activities"] == []
    clock.advance(0.001)
    assert len(api.get(history).json()["activities"]) == 1
    assert api.get(f"/v2/users/{member['id']}").json()["total_points"] == 10


def test_activity_history_window_and_fields(api: Api, sb: Sandbox, clock: FakeClock) -> None:
    member = api.create(email_address="h@example.com")
    path = "/v2/users/h%40example.com/activities"
    stamps = []
    for n in range(3):
        stamps.append(int(clock.now))
        api.post(path, {"activity_id": "1001", "num_points": n + 1, "extra_data": {"n": n}}, id_type="email")
        clock.advance(1000)
    history = "/v2.1/users/h%40example.com/activity_history"
    everything = api.get(history, id_type="email").json()["activities"]
    assert [item["extra_data"] for item in everything] == [{"n": 2}, {"n": 1}, {"n": 0}]  # newest first
    item = everything[-1]
    assert (item["activity_id"], item["num_points"], item["date_created"], item["name"]) == (
        "1001", 1, stamps[0], "Ad Hoc Points"
    )
    middle = api.get(history, id_type="email", date_start=stamps[0] + 1, date_end=stamps[2] - 1).json()["activities"]
    assert [i["extra_data"] for i in middle] == [{"n": 1}]
    exact = api.get(history, id_type="email", date_start=stamps[1], date_end=stamps[1]).json()["activities"]
    assert [i["num_points"] for i in exact] == [2]  # both ends inclusive
    assert api.get(f"/v2.1/users/{member['id']}/activity_history/", date_start=stamps[2] + 1).json()["activities"] == []
    assert error_of(api.get(history, id_type="email", date_start="yesterday"))[0:2] == (400, "param_error")
    assert error_of(api.get("/v2.1/users/nobody@x.com/activity_history", id_type="email"))[0] == 404


def test_history_excludes_capped_attempts(api: Api) -> None:
    member = api.create()
    for _ in range(2):
        api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1003"})
    assert len(api.get(f"/v2.1/users/{member['id']}/activity_history").json()["activities"]) == 1


def test_history_is_paged_like_the_v2_1_lists(api: Api, sb: Sandbox) -> None:
    """§3, §6: page and page_size (10 by default, at most 25), paging.next_page until the last page."""
    member = api.create()
    path = f"/v2/users/{member['id']}/activities"
    for n in range(27):
        api.post(path, {"activity_id": "1001", "num_points": 1, "extra_data": {"n": n}})
    history = f"/v2.1/users/{member['id']}/activity_history"
    first = api.get(history).json()
    assert first["paging"] == {"total": 27, "pages": 3, "prev_page": None, "next_page": 2}
    assert [item["extra_data"]["n"] for item in first["activities"]] == list(range(26, 16, -1))  # newest first
    seen = []
    page: int | None = 1
    while page is not None:
        answer = api.get(history, page=page, page_size=100).json()  # cut to 25
        seen += [item["extra_data"]["n"] for item in answer["activities"]]
        page = answer["paging"]["next_page"]
    assert seen == list(range(26, -1, -1))
    assert api.get(history, page=9, page_size=25).json() == {
        "paging": {"total": 27, "pages": 2, "prev_page": 2, "next_page": None}, "activities": [],
    }
    assert error_of(api.get(history, page=0))[0:2] == (400, "param_error")
    assert error_of(api.get(history, page_size="ten"))[0:2] == (400, "param_error")
    assert sb.request_counts()["history_next_page"] == 2


@pytest.mark.parametrize(
    ("shape", "looks_like"),
    [("unknown_key", lambda d: sorted(d) == ["paging", "sandbox_unknown_list"] and len(d["sandbox_unknown_list"]) == 1),
     ("empty_object", lambda d: d == {}), ("null", lambda d: d is None),
     ("bare_array", lambda d: isinstance(d, list) and d[0]["activity_id"] == "1001")],
)
def test_history_answer_shape_faults(
    sandbox_factory: SandboxFactory, shape: str, looks_like: Callable[[Any], bool]
) -> None:
    sb = sandbox_factory(history_answer_shape=shape)
    api = Api(sb.base_url)
    member = api.create()
    api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"})
    answer = api.get(f"/v2.1/users/{member['id']}/activity_history")
    assert answer.status_code == 200
    assert looks_like(answer.json())
    assert sb.request_counts()[f"history:{shape}"] == 1


def test_history_user_not_found_and_endless_pages_faults(sandbox_factory: SandboxFactory) -> None:
    sb = sandbox_factory(history_answer_shape="user_not_found")
    api = Api(sb.base_url)
    member = api.create()
    history = f"/v2.1/users/{member['id']}/activity_history"
    assert error_of(api.get(history)) == (404, "page_not_found", "User does not exist.")
    assert api.get(f"/v2/users/{member['id']}").status_code == 200  # the member exists
    sb.set_options(history_answer_shape="endless_pages")
    assert api.get(history, page=40).json()["paging"]["next_page"] == 41


# -- member erasure: DELETE /v2/users/{id} and the deletion status (§2.4) ------------------------------


def test_delete_queues_the_erasure_then_completes_it(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock, deletion_delay_ms=10_000)
    api = Api(sb.base_url)
    member = api.create()
    deleted = api.call("DELETE", "/v2/users/ann@example.com", id_type="email")
    assert deleted.status_code == 200 and deleted.json() == {"user_id": member["id"], "status": "Queued"}
    status = api.get(f"/v2/users/delete/{member['id']}").json()
    assert status["status"] == "Deletion_initiated" and status["initiated_by"] == "API"
    assert [h["status"] for h in status["status_history"]] == ["Deletion_initiated"]
    # Queued, not erased yet: still readable, and a repeat is answered "Queued" again.
    assert api.get(f"/v2/users/{member['id']}").status_code == 200
    assert api.call("DELETE", f"/v2/users/{member['id']}").json() == {"user_id": member["id"], "status": "Queued"}
    clock.advance(5)
    assert api.get(f"/v2/user_deletion/{member['id']}").json()["status"] == "Deletion_in_progress"
    clock.advance(5)
    done = api.get(f"/v2/users/delete/{member['id']}").json()
    assert done["status"] == "Deletion_completed"
    assert [h["status"] for h in done["status_history"]] == [
        "Deletion_initiated", "Deletion_in_progress", "Deletion_completed"]
    assert done["status_history"][0]["date"].endswith("+00:00")
    assert error_of(api.get(f"/v2/users/{member['id']}"))[0] == 404
    assert error_of(api.call("DELETE", f"/v2/users/{member['id']}")) == (404, "page_not_found", "Member not found")
    # The identifiers are free again.
    assert api.create()["id"] != member["id"]


def test_delete_refusals_and_unknown_statuses(sandbox_factory: SandboxFactory, clock: FakeClock) -> None:
    sb = sandbox_factory(clock=clock)
    api = Api(sb.base_url)
    member = sb.add_member(**VALID_USER, is_active=0, total_points=30)  # an inactive member with points
    refused = error_of(api.call("DELETE", f"/v2/users/{member['id']}"))
    assert refused == (400, "input_error", "Member is inactive but has redeemable points")
    other = api.create(email_address="bo@example.com")
    sb.set_options(undeletable_member_ids=[other["id"]])
    assert error_of(api.call("DELETE", f"/v2/users/{other['id']}")) == (400, "input_error", "Unable to initiate deletion")
    not_queued = "Member does not exist or not queued for deletion"
    assert error_of(api.get(f"/v2/users/delete/{other['id']}")) == (404, "page_not_found", not_queued)
    assert error_of(api.get("/v2/users/delete/not-a-number")) == (404, "page_not_found", not_queued)
    assert error_of(api.call("DELETE", "/v2/users/nobody@example.com", id_type="email"))[0] == 404
    assert sb.request_counts()["DELETE /v2/users/{id}"] == 3
