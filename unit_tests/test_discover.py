"""The data-activation destination catalog: operations, matching keys, schemas, and the protocol model."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import jsonschema
import pytest
from airbyte_cdk.models.airbyte_protocol_serializers import custom_type_resolver
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from airbyte_protocol_dataclasses.models import AirbyteMessage as ProtocolMessage
from airbyte_protocol_dataclasses.models import DestinationCatalog
from serpyco_rs import SchemaValidationError, Serializer

from destination_crowdtwist import DestinationCrowdtwist
from destination_crowdtwist.cdk_adapter import emit_raw
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.discover import (
    CREATE_REQUIRED,
    activity_choices,
    build_catalog,
    catalog_message,
    user_profile_schema,
)
from destination_crowdtwist.records.mapping import KNOWN_USER_FIELDS, MappingOptions, map_user_record
from destination_crowdtwist.records.validation import FLAG_FIELDS, validate_user

# The shape of GET /v2/activities items (as the sandbox renders them), plus an unknown key.
ACTIVITIES: list[dict[str, Any]] = [
    {"id": "1001", "title": "Ad Hoc Points", "num_points": 10, "type_id": "7", "sandbox_unknown_field": 1},
    {"id": "1002", "title": "Purchase Bonus", "num_points": 50},
    {"id": 1003, "title": "Newsletter Sign-up", "num_points": 1},
]

LOGGER = logging.getLogger("test_discover")

IDENTIFIER_KEYS = [["email_address"], ["third_party_id"], ["username"], ["mobile_phone_number"]]

CatalogSerializer: Serializer[DestinationCatalog] = Serializer(
    DestinationCatalog, omit_none=True, custom_type_resolver=custom_type_resolver
)
MessageSerializer: Serializer[ProtocolMessage] = Serializer(
    ProtocolMessage, omit_none=True, custom_type_resolver=custom_type_resolver
)


def config(**extra: Any) -> Any:
    return parse_config({
        "api_base_url": "https://api123.crowdtwist.com",
        "credentials": {"auth_type": "api_key", "api_key": "ctsbx_unit_test_key_0000000000000000"},
        **extra,
    })


def operation(catalog: dict[str, Any], object_name: str, mode: str) -> dict[str, Any]:
    found: dict[str, Any]
    [found] = [op for op in catalog["operations"] if (op["object_name"], op["sync_mode"]) == (object_name, mode)]
    return found


def properties(catalog: dict[str, Any], object_name: str, mode: str) -> dict[str, Any]:
    props: dict[str, Any] = operation(catalog, object_name, mode)["json_schema"]["properties"]
    return props


# -- operations and matching keys ----------------------------------------------------------------


def test_operations_are_user_profile_upsert_insert_update_delete_and_activity_credit_insert() -> None:
    catalog = build_catalog(config(), ACTIVITIES)
    assert [(op["object_name"], op["sync_mode"]) for op in catalog["operations"]] == [
        ("user_profile", "append_dedup"),
        ("user_profile", "append"),
        ("user_profile", "update"),
        ("user_profile", "soft_delete"),
        ("activity_credit", "append"),
    ]


@pytest.mark.parametrize(
    ("object_name", "mode", "keys"),
    [
        ("user_profile", "append_dedup", IDENTIFIER_KEYS),
        ("user_profile", "append", IDENTIFIER_KEYS),
        ("user_profile", "update", [*IDENTIFIER_KEYS, ["id"]]),
        ("activity_credit", "append", IDENTIFIER_KEYS),
    ],
)
def test_matching_keys(object_name: str, mode: str, keys: list[list[str]]) -> None:
    catalog = build_catalog(config(), ACTIVITIES)
    op = operation(catalog, object_name, mode)
    assert op["matching_keys"] == keys
    # Every key field is a property the user can map.
    for key in keys:
        assert key[0] in op["json_schema"]["properties"]


def test_the_catalog_does_not_depend_on_the_configured_object_type() -> None:
    assert build_catalog(config(object_type="activity_credit"), ACTIVITIES) == build_catalog(config(), ACTIVITIES)


# -- user_profile schema -------------------------------------------------------------------------


def test_user_profile_offers_exactly_the_fields_the_mapping_sends() -> None:
    catalog = build_catalog(config(), ACTIVITIES)
    offered: set[str] = set()
    for mode in ("append_dedup", "append", "update"):
        offered |= set(properties(catalog, "user_profile", mode))
    # "id" is the member id matching key of update, not a payload field.
    assert offered - {"id"} == set(KNOWN_USER_FIELDS)


@pytest.mark.parametrize(
    ("field", "modes"),
    [
        ("id", {"update"}),
        ("is_active", {"append_dedup", "update"}),
        ("remove_points", {"append_dedup", "update"}),
        ("invite_code", {"append_dedup", "append"}),
        ("send_verify_email", {"append_dedup", "append"}),
        ("sign_up_channel_id", {"append_dedup", "append"}),
        ("email_address", {"append_dedup", "append", "update"}),
        ("postal_code", {"append_dedup", "append", "update"}),
    ],
)
def test_create_only_and_update_only_fields(field: str, modes: set[str]) -> None:
    catalog = build_catalog(config(), ACTIVITIES)
    offered_in = {mode for mode in ("append_dedup", "append", "update") if field in properties(catalog, "user_profile", mode)}
    assert offered_in == modes


def test_insert_requires_what_crowdtwist_requires_on_create() -> None:
    problems = validate_user({}, creating=True, require_location=False)
    assert set(CREATE_REQUIRED) == {p.field for p in problems}
    catalog = build_catalog(config(), ACTIVITIES)
    assert operation(catalog, "user_profile", "append")["json_schema"]["required"] == list(CREATE_REQUIRED)
    # Upsert and update can be partial updates of existing members: nothing is required.
    for mode in ("append_dedup", "update"):
        assert "required" not in operation(catalog, "user_profile", mode)["json_schema"]


def test_every_property_has_a_type_and_a_description() -> None:
    catalog = build_catalog(config(custom_attributes=["tier"]), ACTIVITIES)
    for op in catalog["operations"]:
        for name, prop in op["json_schema"]["properties"].items():
            assert prop.get("type") in {"string", "integer", "boolean", "object"}, name
            assert isinstance(prop.get("description"), str) and len(prop["description"]) > 10, name


def test_types_and_formats_say_what_crowdtwist_expects() -> None:
    props = properties(build_catalog(config(), ACTIVITIES), "user_profile", "append_dedup")
    assert props["email_address"]["format"] == "email"
    assert props["date_of_birth"] == props["date_of_birth"] | {"type": "string", "format": "date"}
    assert "epoch seconds" in props["date_of_birth"]["description"]
    assert "5-digit" in props["postal_code"]["description"]
    assert props["city_id"]["type"] == "integer"
    assert props["extra_data"]["type"] == props["custom_data"]["type"] == "object"
    for flag in FLAG_FIELDS:
        assert props[flag]["type"] == "boolean", flag


SAMPLES: dict[str, Any] = {
    "email_address": "jane@example.com",
    "mobile_phone_number": "+1 (212) 555-1234",
    "country_code": "gb",
    "date_of_birth": "1979-11-29",
    "postal_code": "02134",
}
BY_TYPE: dict[str, Any] = {"string": "abc", "integer": 7, "boolean": True, "object": {"k": "v"}}


@pytest.mark.parametrize("mode", ["append_dedup", "append", "update"])
def test_a_value_of_each_advertised_type_is_accepted_by_the_mapping(mode: str) -> None:
    props = properties(build_catalog(config(), ACTIVITIES), "user_profile", mode)
    for name, prop in props.items():
        if name == "id":
            continue  # the member id is the row's identifier, not a payload field
        value = SAMPLES.get(name, BY_TYPE[prop["type"]])
        mapped = map_user_record({"user_id": "jane@example.com", name: value}, MappingOptions())
        assert name in mapped.payload, name


# -- custom attributes -----------------------------------------------------------------------------


def test_custom_attributes_become_string_properties_of_every_user_profile_operation() -> None:
    catalog = build_catalog(config(custom_attributes=["tier", "store_loc"]), ACTIVITIES)
    for mode in ("append_dedup", "append", "update"):
        props = properties(catalog, "user_profile", mode)
        assert list(props)[-2:] == ["tier", "store_loc"]
        assert props["tier"]["type"] == "string"
        assert "custom attribute" in props["tier"]["description"].lower()
    assert "tier" not in properties(catalog, "activity_credit", "append")


def test_without_custom_attributes_only_standard_fields_are_offered() -> None:
    props = properties(build_catalog(config(), ACTIVITIES), "user_profile", "append")
    assert set(props) <= set(KNOWN_USER_FIELDS)


def test_a_custom_attribute_named_like_a_standard_field_keeps_the_standard_field() -> None:
    standard = user_profile_schema("update")["properties"]
    props = user_profile_schema("update", ["first_name", "user_id", "id", "tier"])["properties"]
    assert props["first_name"] == standard["first_name"]
    assert props["id"] == standard["id"]
    assert "user_id" not in props
    assert set(props) - set(standard) == {"tier"}


def test_unknown_user_profile_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="overwrite"):
        user_profile_schema("overwrite")


def test_soft_delete_offers_the_update_keys_and_a_schema_of_only_those_keys() -> None:
    catalog = build_catalog(config(custom_attributes=["tier"]), ACTIVITIES)
    delete = operation(catalog, "user_profile", "soft_delete")
    assert delete["matching_keys"] == operation(catalog, "user_profile", "update")["matching_keys"]
    assert delete["matching_keys"] == [*IDENTIFIER_KEYS, ["id"]]
    # Only the key: a delete writes no field, so custom attributes and profile fields are not offered.
    assert set(delete["json_schema"]["properties"]) == {key for [key] in delete["matching_keys"]}
    assert "required" not in delete["json_schema"]
    assert [op for op in catalog["operations"] if op["object_name"] == "activity_credit"
            and op["sync_mode"] == "soft_delete"] == []


# -- activity_credit schema --------------------------------------------------------------------------


def test_activity_id_offers_the_active_activities() -> None:
    activity_id = properties(build_catalog(config(), ACTIVITIES), "activity_credit", "append")["activity_id"]
    assert activity_id["type"] == "string"
    assert activity_id["oneOf"] == [
        {"const": "1001", "title": "Ad Hoc Points (10 points)"},
        {"const": "1002", "title": "Purchase Bonus (50 points)"},
        {"const": "1003", "title": "Newsletter Sign-up (1 point)"},
    ]


def test_activity_choices_tolerate_odd_items() -> None:
    choices = activity_choices([
        {"id": "7", "title": "  ", "num_points": None},  # blank title, unknown points
        {"id": "7", "title": "Again"},  # repeated id: listed once
        {"title": "No id"},  # cannot be credited: skipped
        {"id": True, "title": "Not an id"},
        {"id": 8, "title": "Eight", "num_points": "5"},  # points not an integer: no points label
    ])
    assert choices == [{"const": "7", "title": "Activity 7"}, {"const": "8", "title": "Eight"}]


def test_no_active_activities_gives_a_valid_schema_that_says_why_there_is_no_choice() -> None:
    schema = operation(build_catalog(config(), []), "activity_credit", "append")["json_schema"]
    activity_id = schema["properties"]["activity_id"]
    assert "oneOf" not in activity_id  # an empty oneOf is invalid JSON Schema
    assert "no active activity" in activity_id["description"]
    jsonschema.Draft7Validator.check_schema(schema)


def test_activity_credit_fields_and_required() -> None:
    schema = operation(build_catalog(config(), ACTIVITIES), "activity_credit", "append")["json_schema"]
    props = schema["properties"]
    assert schema["required"] == ["activity_id"]
    assert props["num_points"]["type"] == "integer"
    assert props["activity_date"]["format"] == "date-time"
    assert props["extra_data"]["type"] == "object"
    assert props["event_id"]["type"] == "string"
    assert {"email_address", "third_party_id", "username", "mobile_phone_number"} <= set(props)


def test_activity_id_is_optional_when_default_activity_id_is_set() -> None:
    schema = operation(build_catalog(config(default_activity_id="1002"), ACTIVITIES), "activity_credit", "append")
    json_schema = schema["json_schema"]
    assert "required" not in json_schema
    assert "default activity 1002" in json_schema["properties"]["activity_id"]["description"]
    jsonschema.Draft7Validator.check_schema(json_schema)
    jsonschema.validate({"email_address": "a@example.com", "num_points": 5}, json_schema)  # no activity column


def test_the_event_id_property_follows_the_event_id_field_setting() -> None:
    props = properties(build_catalog(config(event_id_field="order_id"), ACTIVITIES), "activity_credit", "append")
    assert "order_id" in props and "event_id" not in props
    # A setting that names another field does not replace that field.
    props = properties(build_catalog(config(event_id_field="activity_id"), ACTIVITIES), "activity_credit", "append")
    assert "oneOf" in props["activity_id"]


def test_records_are_checked_against_the_activity_choices() -> None:
    schema = operation(build_catalog(config(), ACTIVITIES), "activity_credit", "append")["json_schema"]
    jsonschema.validate({"activity_id": "1002", "email_address": "a@example.com"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"activity_id": "9999"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"email_address": "a@example.com"}, schema)  # activity_id is required


# -- the Airbyte protocol model ----------------------------------------------------------------------


def test_the_catalog_is_a_valid_protocol_destination_catalog() -> None:
    catalog = build_catalog(config(custom_attributes=["tier"]), ACTIVITIES)
    loaded = CatalogSerializer.load(catalog)
    assert len(loaded.operations) == 5
    assert [op.sync_mode.value for op in loaded.operations] == [
        "append_dedup", "append", "update", "soft_delete", "append"]
    assert CatalogSerializer.dump(loaded) == catalog  # nothing dropped or renamed by the model
    for op in catalog["operations"]:
        jsonschema.Draft7Validator.check_schema(op["json_schema"])


def test_the_message_is_a_valid_protocol_destination_catalog_message() -> None:
    message = catalog_message(build_catalog(config(), ACTIVITIES))
    loaded = MessageSerializer.load(json.loads(json.dumps(message)))
    assert loaded.type.value == "DESTINATION_CATALOG"
    assert loaded.destination_catalog is not None
    assert len(loaded.destination_catalog.operations) == 5


def test_the_protocol_model_check_can_fail() -> None:
    """Proves the validation above has teeth: a mode outside the protocol enum is refused."""
    catalog = build_catalog(config(), ACTIVITIES)
    catalog["operations"][0]["sync_mode"] = "upsert"
    with pytest.raises(SchemaValidationError):
        CatalogSerializer.load(catalog)
    del catalog["operations"][1]["object_name"]
    with pytest.raises(SchemaValidationError):
        CatalogSerializer.load(catalog)


# -- entry-point plumbing ----------------------------------------------------------------------------


def test_emit_raw_writes_one_flushed_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit_raw(catalog_message({"operations": []}))
    out = capsys.readouterr().out
    assert out == '{"type":"DESTINATION_CATALOG","destination_catalog":{"operations":[]}}\n'


def test_parse_args_adds_discover_and_keeps_the_cdk_commands() -> None:
    destination = DestinationCrowdtwist()
    assert destination.parse_args(["discover", "--config", "c.json"]) == argparse.Namespace(
        command="discover", config="c.json"
    )
    assert destination.parse_args(["check", "--config", "c.json"]).command == "check"
    with pytest.raises(SystemExit):
        destination.parse_args(["discover"])  # --config is required


def test_discover_with_an_invalid_config_raises_checks_message_without_a_request() -> None:
    raw = {"api_base_url": "http://api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k" * 20}}
    destination = DestinationCrowdtwist()
    status = destination.check(LOGGER, raw)
    with pytest.raises(AirbyteTracedException) as caught:
        destination.discover(LOGGER, raw)
    assert caught.value.message == status.message
    assert "https" in (status.message or "")
    assert caught.value.failure_type is not None and caught.value.failure_type.value == "config_error"
