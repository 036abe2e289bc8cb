"""object_storage_config: the spec block is Airbyte's standard one (names, secrets, defaults, required
fields), S3Storage agrees with it field by field, and parse_config refuses bad values naming the field
and never echoing a key."""

from __future__ import annotations

import dataclasses
import json
import traceback
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config import FILE_NAME_VARIABLES, PATH_VARIABLES, S3Storage, parse_config

ROOT = Path(__file__).resolve().parents[1]
SPEC = json.loads((ROOT / "spec.json").read_text(encoding="utf-8"))["connectionSpecification"]
BLOCK = SPEC["properties"]["object_storage_config"]
NONE_OPTION, S3_OPTION = BLOCK["oneOf"]
S3_PROPS: dict[str, Any] = S3_OPTION["properties"]
FIELDS = {f.name: f for f in dataclasses.fields(S3Storage)}
HINTS = get_type_hints(S3Storage)

BASE: dict[str, Any] = {
    "api_base_url": "https://api123.crowdtwist.com",
    "credentials": {"auth_type": "api_key", "api_key": "k" * 20},
}
S3: dict[str, Any] = {"storage_type": "S3", "s3_bucket_name": "rejects", "s3_bucket_region": "us-east-1",
                      "bucket_path": "crowdtwist", "format": {"format_type": "JSONL"}}
SECRET = "wJalrXUtnFEMI0K7MDENGbPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def storage(**overrides: Any) -> S3Storage | None:
    block = {**S3, **overrides}
    return parse_config({**BASE, "object_storage_config": {k: v for k, v in block.items() if v is not ...}}).object_storage_config


# --- the spec block is Airbyte's -----------------------------------------------------------------------


def test_block_is_a_one_of_none_or_s3_with_a_storage_type_discriminator() -> None:
    assert BLOCK["type"] == "object"
    assert "object_storage_config" not in SPEC["required"]
    assert NONE_OPTION["properties"] == {"storage_type": {"type": "string", "enum": ["None"], "default": "None"}}
    assert NONE_OPTION["required"] == ["storage_type"]
    assert S3_PROPS["storage_type"] == {"type": "string", "enum": ["S3"], "default": "S3"}


def test_s3_option_has_airbytes_names_required_fields_secrets_and_defaults() -> None:
    assert list(S3_PROPS) == ["storage_type", "access_key_id", "secret_access_key", "role_arn", "s3_bucket_name",
                              "s3_bucket_region", "s3_endpoint", "bucket_path", "format", "compression",
                              "path_format", "file_name_format", "s3_ca_certificate"]
    assert S3_OPTION["required"] == ["storage_type", "s3_bucket_name", "s3_bucket_region", "bucket_path", "format"]
    assert sorted(n for n, p in S3_PROPS.items() if p.get("airbyte_secret")) == ["access_key_id", "secret_access_key"]
    assert S3_PROPS["path_format"]["default"] == "{sync_id}/{namespace}/{stream_name}/"
    assert S3_PROPS["file_name_format"]["default"] == "{date}_{timestamp}_{part_number}{format_extension}"
    assert S3_PROPS["s3_bucket_region"]["default"] == ""
    assert "" in S3_PROPS["s3_bucket_region"]["enum"] and "us-east-1" in S3_PROPS["s3_bucket_region"]["enum"]
    formats = [o["properties"]["format_type"]["enum"] for o in S3_PROPS["format"]["oneOf"]]
    assert formats == [["CSV"], ["JSONL"]]
    assert S3_PROPS["format"]["default"] == "CSV"
    compressions = [o["properties"]["compression_type"]["enum"] for o in S3_PROPS["compression"]["oneOf"]]
    assert compressions == [["No Compression"], ["GZIP"]]
    for option in S3_PROPS["format"]["oneOf"]:
        assert option["properties"]["flattening"]["enum"] == ["No flattening", "Root level flattening"]
        assert option["properties"]["flattening"]["default"] == "No flattening"


def test_s3_storage_fields_are_the_spec_properties() -> None:
    expected = (set(S3_PROPS) - {"storage_type", "format", "compression"}) | {"format_type", "flattening",
                                                                           "compression_type"}
    assert set(FIELDS) == expected


@pytest.mark.parametrize(("field", "path"), [
    ("format_type", ("format", "format_type")),
    ("flattening", ("format", "flattening")),
    ("compression_type", ("compression", "compression_type")),
])
def test_nested_literal_types_equal_the_spec_enums(field: str, path: tuple[str, str]) -> None:
    hint = HINTS[field]
    assert get_origin(hint) is Literal
    values: list[str] = []
    for option in S3_PROPS[path[0]]["oneOf"]:
        values += [v for v in option["properties"][path[1]]["enum"] if v not in values]
    assert list(get_args(hint)) == values


def test_s3_storage_defaults_are_the_spec_defaults() -> None:
    bare = S3Storage("b")
    assert bare.s3_bucket_region == S3_PROPS["s3_bucket_region"]["default"]
    assert bare.path_format == S3_PROPS["path_format"]["default"]
    assert bare.file_name_format == S3_PROPS["file_name_format"]["default"]
    assert bare.format_type == S3_PROPS["format"]["default"]
    assert bare.compression_type == "No Compression"
    assert bare.flattening == "No flattening"
    assert storage(format=..., s3_bucket_region=..., bucket_path=...) == S3Storage("rejects")


def test_template_descriptions_name_every_variable() -> None:
    for name, variables in (("path_format", PATH_VARIABLES), ("file_name_format", FILE_NAME_VARIABLES)):
        for variable in variables:
            shown = "{date:yyyy_MM}" if variable == "date:PATTERN" else "{" + variable + "}"
            assert shown in S3_PROPS[name]["description"], (name, variable)


# --- parsing ---------------------------------------------------------------------------------------------


def test_absent_null_and_none_mean_no_bucket() -> None:
    assert parse_config(BASE).object_storage_config is None
    assert parse_config({**BASE, "object_storage_config": None}).object_storage_config is None
    assert parse_config({**BASE, "object_storage_config": {"storage_type": "None"}}).object_storage_config is None
    assert parse_config({**BASE, "object_storage_config": {}}).object_storage_config is None


def test_a_full_s3_block_is_parsed() -> None:
    parsed = storage(access_key_id=f" {KEY_ID} ", secret_access_key=SECRET + "\n",
                     role_arn="arn:aws:iam::123456789012:role/dlq", s3_endpoint="http://127.0.0.1:9000/",
                     bucket_path="/a/b/", format={"format_type": "CSV", "flattening": "Root level flattening"},
                     compression={"compression_type": "GZIP"}, path_format="{stream_name}/{year}/",
                     file_name_format="{date:yyyy_MM}_{part_number}{format_extension}")
    assert parsed == S3Storage(
        s3_bucket_name="rejects", s3_bucket_region="us-east-1", bucket_path="a/b", s3_endpoint="http://127.0.0.1:9000",
        access_key_id=KEY_ID, secret_access_key=SECRET, role_arn="arn:aws:iam::123456789012:role/dlq",
        format_type="CSV", flattening="Root level flattening", compression_type="GZIP",
        path_format="{stream_name}/{year}/", file_name_format="{date:yyyy_MM}_{part_number}{format_extension}",
    )
    assert parsed.location == "s3://rejects/a/b/"
    cfg = parse_config({**BASE, "object_storage_config": {**S3, "access_key_id": KEY_ID, "secret_access_key": SECRET}})
    assert KEY_ID in cfg.secrets and SECRET in cfg.secrets
    assert SECRET not in repr(cfg) and KEY_ID not in repr(cfg)


def test_storage_type_is_inferred_from_a_bucket_name_and_format_may_be_a_bare_name() -> None:
    parsed = parse_config({**BASE, "object_storage_config": {"s3_bucket_name": "rejects", "format": "JSONL"}})
    assert parsed.object_storage_config == S3Storage("rejects", format_type="JSONL")
    # So may compression (a block that is only a choice of names), and nulls inside take the defaults.
    parsed = parse_config({**BASE, "object_storage_config": {"s3_bucket_name": "rejects", "compression": "GZIP",
                                                             "format": {"format_type": None, "flattening": None}}})
    assert parsed.object_storage_config == S3Storage("rejects", compression_type="GZIP")


def test_blank_templates_take_the_defaults_and_keys_may_both_be_empty() -> None:
    parsed = storage(path_format=" ", file_name_format="", access_key_id="", secret_access_key=None)
    assert parsed == S3Storage("rejects", "us-east-1", "crowdtwist", format_type="JSONL")


S3_ERRORS: list[tuple[str, Any, str]] = [
    ("not an object", "S3", "object_storage_config must be an object with storage_type 'None' or 'S3'"),
    ("unknown storage type", {"storage_type": "GCS"}, "object_storage_config.storage_type must be one of 'None', 'S3'"),
    ("no bucket", {"s3_bucket_name": None}, "object_storage_config.s3_bucket_name is required"),
    ("bucket url", {"s3_bucket_name": "s3://rejects/x"}, "object_storage_config.s3_bucket_name must be the bucket's name only"),
    ("bucket with space", {"s3_bucket_name": "my bucket"}, "object_storage_config.s3_bucket_name must be a bucket name"),
    ("bucket not text", {"s3_bucket_name": 5}, "object_storage_config.s3_bucket_name must be text (got a value of type int)"),
    ("unknown region", {"s3_bucket_region": "mars-1"}, "object_storage_config.s3_bucket_region must be one of"),
    ("endpoint without scheme", {"s3_endpoint": "minio:9000"}, "object_storage_config.s3_endpoint must be a URL"),
    ("endpoint with query", {"s3_endpoint": "https://minio/?x=1"}, "object_storage_config.s3_endpoint must not contain a query"),
    ("only the key id", {"access_key_id": KEY_ID}, "object_storage_config.secret_access_key is missing"),
    ("only the secret", {"secret_access_key": SECRET}, "object_storage_config.access_key_id is missing"),
    ("role not an arn", {"role_arn": "dlq-writer"}, "object_storage_config.role_arn must be an IAM role ARN"),
    ("unknown format", {"format": {"format_type": "PARQUET"}}, "object_storage_config.format.format_type must be one of 'CSV', 'JSONL'"),
    ("format not an object", {"format": 5}, "object_storage_config.format must be an object with format_type"),
    ("unknown flattening", {"format": {"format_type": "JSONL", "flattening": "deep"}}, "object_storage_config.format.flattening must be one of"),
    ("unknown compression", {"compression": {"compression_type": "ZSTD"}}, "object_storage_config.compression.compression_type must be one of"),
    ("unknown path variable", {"path_format": "{stream}/"}, "object_storage_config.path_format has the unknown variable {stream}; known:"),
    ("file variable in path", {"path_format": "{part_number}/"}, "object_storage_config.path_format has the unknown variable {part_number}"),
    ("unknown date letters", {"file_name_format": "{date:EEE}_{part_number}"}, "object_storage_config.file_name_format has the unknown variable {date:EEE}"),
    ("unmatched brace", {"path_format": "{stream_name/"}, "object_storage_config.path_format has an unmatched brace"),
    ("no part number", {"file_name_format": "{date}{format_extension}"}, "object_storage_config.file_name_format must contain {part_number}"),
    ("template not text", {"path_format": ["a"]}, "object_storage_config.path_format must be text"),
]


@pytest.mark.parametrize(("block", "message"), [(b, m) for _, b, m in S3_ERRORS], ids=[c for c, _, _ in S3_ERRORS])
def test_s3_block_errors_name_the_field(block: Any, message: str) -> None:
    raw = {**S3, **block} if isinstance(block, dict) else block
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "object_storage_config": raw})
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("name", ["access_key_id", "secret_access_key"])
@pytest.mark.parametrize("char", ["\n", " ", "\u2019"], ids=["line break", "space", "typographic quote"])
def test_keys_with_unsendable_characters_are_refused_without_echoing_them(name: str, char: str) -> None:
    keys = {"access_key_id": KEY_ID, "secret_access_key": SECRET}
    keys[name] = keys[name][:10] + char + keys[name][10:]
    with pytest.raises(ConfigError) as info:
        storage(**keys)
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert str(info.value).startswith(f"object_storage_config.{name} ")
    assert keys[name][:10] not in rendered and keys[name][11:] not in rendered


def test_an_endpoint_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as info:
        storage(s3_endpoint=f"https://{KEY_ID}:{SECRET}@minio.example.com")
    assert SECRET not in str(info.value) and KEY_ID not in str(info.value)
    assert "must not contain credentials" in str(info.value)
