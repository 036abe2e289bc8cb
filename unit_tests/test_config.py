"""Connector configuration: every spec.json property reaches ConnectorConfig with a matching type,
and parse_config (JSON Schema against spec.json, then the rules it cannot express) refuses bad input
with an error naming the field (and never echoing a key)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
from jsonschema import Draft7Validator

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.api.signing import HmacAuth, with_api_key
from destination_crowdtwist.config import (
    INTERNAL_FIELDS,
    ApiKeyCredentials,
    ConnectorConfig,
    Credentials,
    HmacCredentials,
    S3Storage,
    SyncState,
    parse_config,
)
from destination_crowdtwist.records import identifiers, mapping
from destination_crowdtwist.records.mapping import FieldMapping

ROOT = Path(__file__).resolve().parents[1]
# Read the file itself, not through the code under test, so a test cannot agree with a broken loader.
SPEC = json.loads((ROOT / "spec.json").read_text(encoding="utf-8"))["connectionSpecification"]
PROPS: dict[str, dict[str, Any]] = SPEC["properties"]
FIELDS = {f.name: f for f in dataclasses.fields(ConnectorConfig)}
HINTS = get_type_hints(ConnectorConfig)

ENUM_PROPS = sorted(name for name, prop in PROPS.items() if "enum" in prop)
BOOL_PROPS = sorted(name for name, prop in PROPS.items() if prop["type"] == "boolean")
NUMBER_PROPS = sorted(name for name, prop in PROPS.items() if prop["type"] in ("integer", "number"))

BASE: dict[str, Any] = {
    "api_base_url": "https://api123.crowdtwist.com",
    "credentials": {"auth_type": "api_key", "api_key": "k" * 20},
}

# The fields added for hostile input (sync/, writers/ and api/ read them): pinned so a rename fails here.
HOSTILE_INPUT_FIELDS = {
    "max_record_bytes": (1_000_000, 1000, 50_000_000),
    "max_nesting_depth": (32, 2, 200),
    "max_points_per_credit": (1_000_000, 1, None),
    "allow_negative_points": (False, None, None),
    "default_activity_id": (None, None, None),
    "max_retry_wait_seconds": (60, 1, 3600),
    "server_unavailable_wait_seconds": (300, 0, 3600),
    "reject_stop_sample": (100, 0, None),
    "reject_stop_share": (0.9, 0, 1),
}


def parse(**overrides: Any) -> ConnectorConfig:
    return parse_config({**BASE, **overrides})


def expected_default(prop: dict[str, Any]) -> Any:
    """The spec default in the form the dataclass holds it (tuples, floats for `number`)."""
    value = prop["default"]
    if prop["type"] == "object":
        return SyncState(**value)  # the one object setting with a default
    if prop["type"] == "array":
        return tuple(value)
    if prop["type"] == "number":
        return float(value)
    return value


# --- every spec property reaches ConnectorConfig ----------------------------------------------------


def test_spec_json_is_a_valid_draft_7_schema_whose_defaults_are_valid() -> None:
    Draft7Validator.check_schema(SPEC)
    for name, prop in PROPS.items():
        if "default" in prop:
            assert Draft7Validator(prop).is_valid(prop["default"]), name


def test_every_spec_property_is_a_config_field_and_back() -> None:
    assert set(PROPS) == set(FIELDS) - INTERNAL_FIELDS
    # Adding an internal (not user-facing) field is a decision: list it here and in config/spec.py.
    assert {"progress_interval_seconds"} == INTERNAL_FIELDS


@pytest.mark.parametrize("name", sorted(PROPS))
def test_field_type_matches_the_spec_type(name: str) -> None:
    # The Python types are the one thing the model adds to the spec (mypy needs them); an enum's
    # Literal type holds exactly the spec's values.
    prop, hint = PROPS[name], HINTS[name]
    optional = "default" not in prop and name not in SPEC["required"]
    simple = {"boolean": bool, "integer": int, "number": float}
    if "enum" in prop:
        assert get_origin(hint) is Literal
        assert list(get_args(hint)) == prop["enum"]
    elif prop["type"] in simple:
        assert hint is simple[prop["type"]]
    elif prop["type"] == "string":
        assert hint == (str | None if optional else str)
    elif prop["type"] == "array":
        assert get_origin(hint) is tuple
    elif name == "object_storage_config":
        assert hint == S3Storage | None  # storage_type None is None
    elif name == "sync_state":
        assert hint is SyncState
        storage = get_type_hints(SyncState)["storage"]
        assert list(get_args(storage)) == prop["properties"]["storage"]["enum"]
    else:
        assert name == "credentials"
        assert hint == Credentials


def test_one_identifier_type_list_for_records_config_and_spec() -> None:
    assert mapping.ID_TYPES is identifiers.ID_TYPES
    assert HINTS["user_identifier_type"] is identifiers.IdType


def test_parse_fills_every_spec_default_and_the_model_has_the_same_defaults() -> None:
    cfg = parse()
    for name, prop in PROPS.items():
        if "default" in prop:
            assert getattr(cfg, name) == expected_default(prop), name
            assert type(getattr(cfg, name)) is type(expected_default(prop)), name
        elif name not in SPEC["required"]:
            assert getattr(cfg, name) is None, name
    assert ConnectorConfig(api_base_url=cfg.api_base_url, credentials=cfg.credentials) == cfg


def test_every_setting_reaches_the_config() -> None:
    """A non-default value of every enum, boolean and number arrives in ConnectorConfig unchanged."""
    raw: dict[str, Any] = dict(BASE)
    for name in ENUM_PROPS:
        raw[name] = next(v for v in PROPS[name]["enum"] if v != PROPS[name]["default"])
    for name in BOOL_PROPS:
        raw[name] = not PROPS[name]["default"]
    for name in NUMBER_PROPS:
        prop = PROPS[name]
        raw[name] = prop["minimum"] if prop["minimum"] != prop["default"] else prop["default"] + 1
    strings = {"rejected_records_path": "/tmp/rejects.jsonl", "ledger_path": "/tmp/ledger.sqlite",
               "event_id_field": "order_id", "default_activity_id": "1001",
               "member_index_path": "/tmp/members.sqlite"}
    raw.update(strings)
    raw["field_mapping"] = [{"source": "a.b", "destination": "postal_code"}]
    raw["custom_attributes"] = ["tier"]
    raw["object_storage_config"] = {"storage_type": "S3", "s3_bucket_name": "rejects", "bucket_path": "x",
                                    "s3_bucket_region": "eu-west-1", "format": {"format_type": "JSONL"}}
    raw["sync_state"] = {"storage": "bucket"}
    cfg = parse_config(raw)
    for name in [*ENUM_PROPS, *BOOL_PROPS, *NUMBER_PROPS, *strings]:
        assert getattr(cfg, name) == raw[name], name
        assert getattr(cfg, name) != FIELDS[name].default, name
    assert cfg.field_mapping == (FieldMapping("a.b", "postal_code"),)
    assert cfg.custom_attributes == ("tier",)
    assert cfg.object_storage_config == S3Storage("rejects", "eu-west-1", "x", format_type="JSONL")
    assert cfg.sync_state == SyncState("bucket") != FIELDS["sync_state"].default
    assert cfg.sync_state.in_bucket
    covered = {*ENUM_PROPS, *BOOL_PROPS, *NUMBER_PROPS, *strings, "field_mapping", "custom_attributes",
               "api_base_url", "credentials", "object_storage_config", "sync_state"}
    assert covered == set(PROPS)


@pytest.mark.parametrize("name", sorted(HOSTILE_INPUT_FIELDS))
def test_hostile_input_fields_have_the_agreed_default_and_range(name: str) -> None:
    default, lo, hi = HOSTILE_INPUT_FIELDS[name]
    prop = PROPS[name]
    assert prop.get("default") == default
    assert prop.get("minimum") == lo
    assert prop.get("maximum") == hi
    assert prop["title"] and prop["description"]
    assert prop["order"] > max(p["order"] for n, p in PROPS.items() if n not in HOSTILE_INPUT_FIELDS)


def test_spec_orders_are_unique() -> None:
    orders = [prop["order"] for prop in PROPS.values()]
    assert len(orders) == len(set(orders))


# --- ranges come from the spec ---------------------------------------------------------------------


def _step(prop: dict[str, Any]) -> float:
    return 1 if prop["type"] == "integer" else 0.001


@pytest.mark.parametrize("name", NUMBER_PROPS)
def test_spec_minimum_and_maximum_are_accepted(name: str) -> None:
    prop = PROPS[name]
    hi = prop.get("maximum", 10**12)
    assert getattr(parse(**{name: prop["minimum"]}), name) == prop["minimum"]
    assert getattr(parse(**{name: hi}), name) == hi
    assert isinstance(getattr(parse(**{name: hi}), name), int if prop["type"] == "integer" else float)


@pytest.mark.parametrize("name", NUMBER_PROPS)
def test_values_outside_the_spec_range_are_refused_naming_the_field(name: str) -> None:
    prop = PROPS[name]
    outside = [prop["minimum"] - _step(prop)]
    if "maximum" in prop:
        outside.append(prop["maximum"] + _step(prop))
    for value in outside:
        with pytest.raises(ConfigError, match=rf"^{name} must be (between|at least) "):
            parse(**{name: value})


@pytest.mark.parametrize("name", NUMBER_PROPS)
@pytest.mark.parametrize("value", ["20", True, None, float("nan"), float("inf"), [1]], ids=repr)
def test_non_numbers_are_refused_naming_the_field(name: str, value: Any) -> None:
    if value is None:  # null means "use the default"
        assert getattr(parse(**{name: None}), name) == expected_default(PROPS[name])
        return
    with pytest.raises(ConfigError, match=rf"^{name} must be a (whole )?number"):
        parse(**{name: value})


@pytest.mark.parametrize("name", [n for n in NUMBER_PROPS if PROPS[n]["type"] == "integer"])
def test_integer_fields_refuse_fractions_and_accept_whole_floats(name: str) -> None:
    prop = PROPS[name]
    with pytest.raises(ConfigError, match=rf"^{name} must be a whole number"):
        parse(**{name: prop["minimum"] + 0.5})
    value = parse(**{name: float(prop["minimum"] + 1)})
    assert getattr(value, name) == prop["minimum"] + 1
    assert type(getattr(value, name)) is int


# --- parse_config errors, each naming the field ------------------------------------------------------

ERRORS: list[tuple[str, Any, str]] = [
    # (case, raw config or a change to BASE, text the message starts with)
    ("not an object", ["x"], "the configuration must be a JSON object"),
    ("sync state in no bucket", {"sync_state": {"storage": "bucket"}},
     "sync_state.storage is bucket, but object_storage_config is not an S3 bucket"),
    ("sync state in no bucket (None)", {"sync_state": {"storage": "bucket"}, "object_storage_config": {"storage_type": "None"}},
     "sync_state.storage is bucket, but object_storage_config is not an S3 bucket"),
    ("unknown sync state storage", {"sync_state": {"storage": "disk"}}, "sync_state.storage must be one of none, bucket (got 'disk')"),
    ("sync state not an object", {"sync_state": "bucket"}, "sync_state must be an object"),
    ("no base url", {"api_base_url": None}, "api_base_url is required"),
    ("base url with path", {"api_base_url": "https://api123.crowdtwist.com/v2"}, "api_base_url must not contain a path"),
    ("base url over http", {"api_base_url": "http://api123.crowdtwist.com"}, "api_base_url must use https://"),
    ("no credentials", {"credentials": None}, "credentials is required"),
    ("credentials not an object", {"credentials": "key"}, "credentials must be an object with auth_type api_key or hmac"),
    ("unknown auth type", {"credentials": {"auth_type": "oauth"}}, "credentials.auth_type must be one of api_key, hmac (got 'oauth')"),
    ("no api key", {"credentials": {"auth_type": "api_key"}}, "credentials.api_key is required"),
    ("blank api key", {"credentials": {"auth_type": "api_key", "api_key": "  \n"}}, "credentials.api_key is required"),
    ("api key not text", {"credentials": {"auth_type": "api_key", "api_key": 12345}}, "credentials.api_key must be text"),
    ("no public key", {"credentials": {"auth_type": "hmac", "private_key": "p" * 20}}, "credentials.public_key is required"),
    ("no private key", {"credentials": {"auth_type": "hmac", "public_key": "p" * 20}}, "credentials.private_key is required"),
    ("unknown identifier type", {"user_identifier_type": "phone"}, "user_identifier_type must be one of email, id,"),
    ("object type not text", {"object_type": 5}, "object_type must be one of user_profile, activity_credit (got a value of type int)"),
    ("unmapped_fields typo", {"unmapped_fields": "keep"}, "unmapped_fields must be one of custom_data, drop"),
    ("null_values typo", {"null_values": "null"}, "null_values must be one of skip, send"),
    ("credit_verification typo", {"credit_verification": "always"}, "credit_verification must be one of"),
    ("upsert_strategy typo", {"upsert_strategy": "update-first"}, "upsert_strategy must be one of"),
    ("boolean as text", {"dry_run": "yes"}, "dry_run must be true or false"),
    ("boolean as number", {"allow_negative_points": 1}, "allow_negative_points must be true or false"),
    ("field_mapping not a list", {"field_mapping": {"a": "b"}}, "field_mapping must be a list"),
    ("field_mapping item", {"field_mapping": [{"source": "a"}]}, "field_mapping[0].destination is required"),
    ("field_mapping empty source", {"field_mapping": [{"source": "", "destination": "b"}]}, "field_mapping[0].source is required"),
    ("field_mapping unknown key", {"field_mapping": [{"source": "a", "destination": "b", "strem": "x"}]},
     "field_mapping[0] has the unknown key 'strem'; known: stream, source, destination"),
    ("field_mapping stream not text", {"field_mapping": [{"source": "a", "destination": "b", "stream": 3}]},
     "field_mapping[0].stream must be text (got a value of type int)"),
    ("custom_attributes blank", {"custom_attributes": ["tier", " "]}, "custom_attributes must be a list of non-empty names"),
    ("path not text", {"rejected_records_path": 5}, "rejected_records_path must be text (got a value of type int)"),
    ("ledger path not text", {"ledger_path": ["a"]}, "ledger_path must be text (got a value of type list)"),
    ("event id field not text", {"event_id_field": 5}, "event_id_field must be text (got a value of type int)"),
    ("default activity not text", {"default_activity_id": 1001}, "default_activity_id must be text (got a value of type int)"),
    ("share above one", {"reject_stop_share": 1.5}, "reject_stop_share must be between 0 and 1 (got 1.5)"),
    ("negative sample", {"reject_stop_sample": -1}, "reject_stop_sample must be at least 0 (got -1)"),
    ("zero points cap", {"max_points_per_credit": 0}, "max_points_per_credit must be at least 1 (got 0)"),
    ("tiny record limit", {"max_record_bytes": 999}, "max_record_bytes must be between 1000 and 5e+07 (got 999)"),
    ("flat nesting", {"max_nesting_depth": 1}, "max_nesting_depth must be between 2 and 200 (got 1)"),
    ("retry wait zero", {"max_retry_wait_seconds": 0}, "max_retry_wait_seconds must be between 1 and 3600 (got 0)"),
    ("unavailable wait", {"server_unavailable_wait_seconds": 3601}, "server_unavailable_wait_seconds must be between 0 and 3600"),
]


@pytest.mark.parametrize(("raw", "message"), [(raw, msg) for _, raw, msg in ERRORS], ids=[c for c, _, _ in ERRORS])
def test_parse_config_errors_name_the_field(raw: Any, message: str) -> None:
    config = {**BASE, **raw} if isinstance(raw, dict) else raw
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert str(info.value).startswith(message)


def test_long_enum_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        parse(object_type="x" * 500)
    assert "xxxxx" not in str(info.value)
    assert str(info.value).endswith("(got a value of type str)")


# --- keys with characters no header or query string can carry ----------------------------------------

SECRET = "SeCrEt0123456789"
BAD_KEY_CHARS = [
    ("line break", "\n", "control character"),
    ("carriage return", "\r", "control character"),
    ("tab", "\t", "control character"),
    ("NUL", "\x00", "control character"),
    ("DEL", "\x7f", "control character"),
    ("C1 control NEL", "\x85", "control character"),
    ("space", " ", "whitespace inside the key"),
    ("no-break space", "\u00a0", "whitespace inside the key"),
    ("ideographic space", "\u3000", "whitespace inside the key"),
    ("typographic quote", "\u2019", "not Latin-1"),
    ("zero-width space", "\u200b", "not Latin-1"),
    ("emoji", "\U0001f511", "not Latin-1"),
]


def credentials_with(name: str, key: str) -> dict[str, Any]:
    if name == "api_key":
        return {"auth_type": "api_key", "api_key": key}
    other = "private_key" if name == "public_key" else "public_key"
    return {"auth_type": "hmac", name: key, other: "Other0123456789"}


@pytest.mark.parametrize("name", ["api_key", "public_key", "private_key"])
@pytest.mark.parametrize(("char", "problem"), [(c, p) for _, c, p in BAD_KEY_CHARS], ids=[i for i, _, _ in BAD_KEY_CHARS])
def test_keys_with_unsendable_characters_are_refused_without_echoing_them(name: str, char: str, problem: str) -> None:
    key = SECRET[:8] + char + SECRET[8:]
    with pytest.raises(ConfigError) as info:
        parse(credentials=credentials_with(name, key))
    message = str(info.value)
    assert message.startswith(f"credentials.{name} ")
    assert problem in message
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert SECRET[:8] not in rendered
    assert SECRET[8:] not in rendered
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize("raw", [
    {"credentials": SECRET},  # the key pasted where the block belongs
    {"credentials": {"auth_type": "api_key", "api_key": [SECRET]}},
    {"credentials": {"auth_type": "hmac", "public_key": "pub", "private_key": {"k": SECRET}}},
    {"object_storage_config": SECRET},
    {"object_storage_config": {"s3_bucket_name": "b", "secret_access_key": [SECRET]}},
], ids=["credentials", "api_key", "private_key", "storage", "secret_access_key"])
def test_schema_errors_where_a_secret_belongs_never_show_the_value(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse(**raw)
    assert " must be " in str(info.value)
    assert SECRET not in str(info.value)
    assert "(got" not in str(info.value)


ACCEPTED_KEYS = [
    ("plain", "abcDEF0123456789", "abcDEF0123456789"),
    ("punctuation", "a-b_c.d~e+f/g=h:", "a-b_c.d~e+f/g=h:"),
    ("pasted with a trailing newline", "abc123\n", "abc123"),
    ("pasted with outer spaces", "  abc123 \t", "abc123"),
    ("Latin-1 letter", "cl\u00e9123", "cl\u00e9123"),
]


@pytest.mark.parametrize(("raw_key", "stored"), [(r, s) for _, r, s in ACCEPTED_KEYS], ids=[i for i, _, _ in ACCEPTED_KEYS])
def test_accepted_keys_are_trimmed_and_fit_in_a_header_and_a_query(raw_key: str, stored: str) -> None:
    api = parse(credentials=credentials_with("api_key", raw_key)).credentials
    assert api == ApiKeyCredentials(api_key=stored)
    hmac = parse(credentials=credentials_with("public_key", raw_key)).credentials
    assert isinstance(hmac, HmacCredentials)
    assert hmac.public_key == stored
    # What used to fail with a ValueError holding the header: http.client validates and encodes here
    # (putrequest/putheader only fill a buffer; nothing connects).
    _, authorization = HmacAuth(hmac.public_key, hmac.private_key, clock=lambda: 0.0).sign(
        "GET", "https://api123.crowdtwist.com/v2/activities", None, ""
    )
    connection = http.client.HTTPSConnection("api123.crowdtwist.com")
    connection.putrequest("GET", with_api_key("/v2/activities", stored))
    connection.putheader("X-CT-Authorization", authorization)
    connection.close()


# --- happy paths ---------------------------------------------------------------------------------------


def test_api_key_config_with_defaults_filled() -> None:
    cfg = parse_config({"api_base_url": "https://api123.crowdtwist.com/", "credentials": {"api_key": " key123 "}})
    assert cfg.api_base_url == "https://api123.crowdtwist.com"
    assert cfg.credentials == ApiKeyCredentials(api_key="key123")
    assert cfg.secrets == ("key123",)
    assert cfg.user_identifier_type == "email"
    assert cfg.object_type == "user_profile"
    assert cfg.max_concurrency == 256
    assert cfg.award_queue_delay_seconds == 10.0
    assert cfg.field_mapping == ()
    assert cfg.custom_attributes == ()
    assert cfg.rejected_records_path is None
    assert cfg.default_activity_id is None
    assert cfg.allow_negative_points is False
    assert cfg.max_record_bytes == 1_000_000
    assert cfg.reject_stop_share == 0.9
    assert cfg.progress_interval_seconds == 10.0
    assert "key123" not in repr(cfg)


def test_hmac_config_and_inferred_auth_type() -> None:
    explicit = parse(credentials={"auth_type": "hmac", "public_key": "pub123", "private_key": "priv456"})
    inferred = parse(credentials={"public_key": "pub123", "private_key": "priv456"})
    assert explicit.credentials == inferred.credentials == HmacCredentials(public_key="pub123", private_key="priv456")
    assert explicit.secrets == ("priv456",)
    assert "priv456" not in repr(explicit)
    assert "pub123" in repr(explicit)


def test_nulls_and_blanks_take_the_spec_default() -> None:
    cfg = parse(max_retries=None, object_type=None, dry_run=None, event_id_field="  ", ledger_path="",
                default_activity_id=" ", field_mapping=None, custom_attributes=[])
    assert cfg == parse()


def test_strings_are_trimmed_and_custom_attributes_deduplicated() -> None:
    cfg = parse(default_activity_id=" 1001 ", event_id_field=" order_id ", custom_attributes=["tier", " tier", "vip"])
    assert cfg.default_activity_id == "1001"
    assert cfg.event_id_field == "order_id"
    assert cfg.custom_attributes == ("tier", "vip")


def test_unknown_keys_are_ignored() -> None:
    assert parse(some_future_setting=1) == parse()


def test_mapping_options_follow_the_config() -> None:
    cfg = parse(user_identifier_type="third_party_id", unmapped_fields="drop", null_values="send",
                field_mapping=[{"source": "zip", "destination": "postal_code"}])
    options = cfg.mapping_options()
    assert (options.id_type, options.unmapped_fields, options.null_values) == ("third_party_id", "drop", "send")
    assert options.field_mapping == (FieldMapping("zip", "postal_code"),)



# --- docs/crowdtwist.md lists every setting with the spec default ------------------------------------


def configuration_table() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "crowdtwist.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    return {cells[0].strip("`"): cells[1:] for cells in rows}


@pytest.mark.parametrize("name", sorted(PROPS))
def test_docs_configuration_table_matches_the_spec(name: str) -> None:
    table = configuration_table()
    assert name in table, f"docs/crowdtwist.md Configuration table has no row for {name}"
    required, default = table[name][0], table[name][1]
    assert required == ("yes" if name in SPEC["required"] else "no")
    value = PROPS[name].get("default")
    expected = "" if value in (None, []) else f"`{json.dumps(value).strip(chr(34))}`"
    assert default == expected


def test_docs_configuration_table_has_no_stale_rows() -> None:
    assert set(configuration_table()) == set(PROPS)


def test_field_mapping_rules_may_name_their_stream_and_the_global_form_stays_accepted() -> None:
    cfg = parse_config({**BASE, "field_mapping": [
        {"source": "email", "destination": "user_id"},
        {"source": "id", "destination": "third_party_id", "stream": "users"},
        {"source": "user_id", "destination": "third_party_id", "stream": " shop.purchases "},
        {"source": "zip", "destination": "postal_code", "stream": ""},  # an emptied form field: every stream
    ]})
    assert cfg.field_mapping == (
        FieldMapping("email", "user_id"),
        FieldMapping("id", "third_party_id", stream="users"),
        FieldMapping("user_id", "third_party_id", stream="shop.purchases"),
        FieldMapping("zip", "postal_code"),
    )


def test_the_spec_offers_a_stream_per_field_mapping_rule() -> None:
    items = PROPS["field_mapping"]["items"]
    assert items["required"] == ["source", "destination"]
    assert set(items["properties"]) == {"stream", "source", "destination"}
    assert items["properties"]["stream"]["type"] == "string"


# --- the form: groups (issue 18 §4) ----------------------------------------------------------------


def test_every_setting_has_a_description_and_one_of_the_forms_groups() -> None:
    # The Airbyte form shows `groups` (id, title) in their order and each property under its `group`
    # (the CDK's own vector-db destination spec uses the same two keys).
    spec = SPEC
    groups = [g["id"] for g in spec["groups"]]
    assert [g["title"] for g in spec["groups"]] == [
        "Connection", "Objects and mapping", "Delivery and exactly-once", "Rejected rows and state", "Performance"
    ]
    for name, prop in spec["properties"].items():
        assert prop.get("description"), name
        assert prop.get("group") in groups, name
    used = {prop["group"] for prop in spec["properties"].values()}
    assert used == set(groups)
    # What a first sync needs is in the first group; the rest are optional (the form folds optional
    # fields of a group away) and have defaults that work.
    assert set(spec["required"]) <= {n for n, p in spec["properties"].items() if p["group"] == "connection"}


def test_parsing_a_config_does_not_load_the_cdk() -> None:
    # jsonschema validates the config (test_layers.py only imports the package; this also parses).
    code = ("import sys\nfrom destination_crowdtwist.config import parse_config\n"
            "parse_config({'api_base_url': 'https://api123.crowdtwist.com', 'credentials': {'api_key': 'k'}})\n"
            "print(sorted(m.split('.')[0] for m in sys.modules if m.startswith('airbyte_cdk')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
