"""The pure parts of rejects/ for the bucket: the layout of a rejected line, CSV/JSONL encoding and
gzip, path and file-name expansion, and the explanation of S3 failures. (The sink and check run
against a real S3 API in integration_tests/test_object_storage_s3.py.)"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from destination_crowdtwist.config import FILE_NAME_VARIABLES, PATH_VARIABLES, S3Storage
from destination_crowdtwist.records.rejection import Reason, Rejection, key, server
from destination_crowdtwist.rejects.encoding import encode_part
from destination_crowdtwist.rejects.layout import known_variables, object_key
from destination_crowdtwist.rejects.s3_failures import explain
from destination_crowdtwist.rejects.schema import AIRBYTE_COLUMNS, BucketLine, bucket_line
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row, StreamContext

STREAM = StreamContext("crm", "members", "append_dedup", sync_id=42, generation_id=3)
NO_NAMESPACE = StreamContext(None, "members", "append_dedup", sync_id=7, generation_id=None)
STARTED = datetime(2026, 3, 4, 5, 6, 7, 89_000, tzinfo=UTC)
DATA = {"user_id": "jane.doe@example.com", "first_name": "Jane", "postal_code": "1234", "tags": ["a", "b"]}


def rejected(reason: Reason = Reason.LOCATION, message: str | tuple[Any, ...] = "postal_code must have 5 digits",
             field: str | None = "postal_code", status: int | None = None) -> Outcome:
    return Outcome.rejected("j***@e***.com", Rejection(reason, message, field=field, status=status))


def row(data: dict[str, Any] | None = None, stream: StreamContext = STREAM, emitted_at: int | None = 1_764_400_000_000) -> Row:
    return Row(stream=stream, data=DATA if data is None else data, seq=0, emitted_at=emitted_at)


def line(**kwargs: Any) -> BucketLine:
    return bucket_line(row(**kwargs), rejected(), new_id=lambda: "new-uuid")


# --- one rejected line -----------------------------------------------------------------------------------


def test_a_rejected_line_has_airbytes_layout_with_the_rejection_in_meta_and_the_data_unmasked() -> None:
    assert line() == {
        "_airbyte_raw_id": "new-uuid",
        "_airbyte_extracted_at": 1_764_400_000_000,
        "_airbyte_meta": {
            "sync_id": 42,
            "changes": [],
            "rejection": {"reason": "location", "message": "postal_code must have 5 digits", "http_status": None,
                          "field": "postal_code"},
        },
        "_airbyte_generation_id": 3,
        "_airbyte_data": DATA,
    }
    assert list(line()) == [*AIRBYTE_COLUMNS, "_airbyte_data"]


def test_the_records_own_raw_id_is_kept() -> None:
    assert line(data={**DATA, "_airbyte_raw_id": "abc-123"})["_airbyte_raw_id"] == "abc-123"
    assert line(data={**DATA, "_airbyte_raw_id": ""})["_airbyte_raw_id"] == "new-uuid"
    assert line(data={**DATA, "_airbyte_raw_id": 5})["_airbyte_raw_id"] == "new-uuid"


def test_each_line_without_an_id_gets_a_new_uuid() -> None:
    first, second = (bucket_line(row(), rejected())["_airbyte_raw_id"] for _ in range(2))
    assert first != second
    assert len(first) == 36


def test_the_message_is_masked_but_the_data_is_not() -> None:
    # CrowdTwist's text (quoted by the client) echoes the input; the connector's hint stays readable.
    message = (server("email jane.doe@example.com of Jane Doe, 42 Elm St is already taken"), " — use upsert")
    outcome = rejected(Reason.ALREADY_TAKEN, message, None, 409)
    out = bucket_line(row(), outcome)
    assert out["_airbyte_meta"]["rejection"] == {
        "reason": "already_taken", "message": "email ***.***@***.*** of *** ***, *** *** *** is already taken — use upsert",
        "http_status": 409, "field": None,
    }
    assert out["_airbyte_data"]["user_id"] == "jane.doe@example.com"


def test_a_field_that_is_a_key_of_the_row_is_masked_in_the_meta() -> None:
    outcome = rejected(Reason.VALIDATION, (key("custom_data.Quentin Doe (spouse)"), ": expected a string"),
                       "custom_data.Quentin Doe (spouse)")
    meta = bucket_line(row(), outcome)["_airbyte_meta"]["rejection"]
    assert meta["field"] == "custom_data.***"
    assert meta["message"] == "custom_data.***: expected a string"


def test_missing_ids_and_reason_have_airbytes_defaults() -> None:
    out = bucket_line(row(stream=NO_NAMESPACE, emitted_at=None), Outcome(OutcomeKind.REJECTED, message=None))
    assert out["_airbyte_meta"]["sync_id"] == 7
    assert out["_airbyte_generation_id"] == 0
    assert out["_airbyte_extracted_at"] is None
    assert out["_airbyte_meta"]["rejection"] == {"reason": "rejected_by_api", "message": "", "http_status": None,
                                                 "field": None}
    bare = bucket_line(row(stream=StreamContext(None, "s", "append")), rejected())
    assert bare["_airbyte_meta"]["sync_id"] == 0


# --- encoding --------------------------------------------------------------------------------------------


def storage(**kwargs: Any) -> S3Storage:
    return S3Storage(**{"s3_bucket_name": "rejects", "s3_bucket_region": "us-east-1", "bucket_path": "dlq", **kwargs})


def test_jsonl_is_one_line_per_row_in_layout_order() -> None:
    lines = [line(), line(data={"x": "é"})]
    body = encode_part(lines, storage(format_type="JSONL")).decode("utf-8")
    assert body.endswith("\n") and body.count("\n") == 2
    assert [json.loads(text) for text in body.splitlines()] == lines
    assert "é" in body  # UTF-8, not \\u escapes


def test_jsonl_root_level_flattening_puts_data_fields_beside_the_airbyte_columns() -> None:
    collide = line(data={"a": 1, "_airbyte_raw_id": "from-data"})
    body = encode_part([collide], storage(format_type="JSONL", flattening="Root level flattening"))
    out = json.loads(body)
    assert list(out) == [*AIRBYTE_COLUMNS, "a"]
    assert out["_airbyte_raw_id"] == "from-data"  # the record's own id is its raw id
    assert out["a"] == 1


def test_csv_has_a_header_and_json_cells_for_objects() -> None:
    body = encode_part([line(), line(data={"user_id": 'a,"b"'})], storage(format_type="CSV")).decode("utf-8")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == [*AIRBYTE_COLUMNS, "_airbyte_data"]
    assert len(rows) == 3
    assert rows[1][0] == "new-uuid" and rows[1][1] == "1764400000000" and rows[1][3] == "3"
    assert json.loads(rows[1][2])["rejection"]["reason"] == "location"
    assert json.loads(rows[1][4]) == DATA
    assert json.loads(rows[2][4]) == {"user_id": 'a,"b"'}


def test_csv_root_level_flattening_has_the_union_of_fields_as_columns() -> None:
    lines = [line(data={"a": 1, "b": None}), line(data={"c": {"d": True}, "a": "x"})]
    body = encode_part(lines, storage(format_type="CSV", flattening="Root level flattening")).decode("utf-8")
    header, first, second = list(csv.reader(io.StringIO(body)))
    assert header == [*AIRBYTE_COLUMNS, "a", "b", "c"]
    assert first[4:] == ["1", "", ""]
    assert second[4:] == ["x", "", '{"d": true}']


@pytest.mark.parametrize("format_type", ["JSONL", "CSV"])
def test_gzip_wraps_the_same_bytes_deterministically(format_type: Any) -> None:
    plain = encode_part([line()], storage(format_type=format_type))
    zipped = encode_part([line()], storage(format_type=format_type, compression_type="GZIP"))
    assert zipped[:2] == b"\x1f\x8b"
    assert gzip.decompress(zipped) == plain
    assert encode_part([line()], storage(format_type=format_type, compression_type="GZIP")) == zipped


# --- where objects go ------------------------------------------------------------------------------------

KEYS: list[tuple[str, dict[str, Any], StreamContext, int, str]] = [
    ("defaults, JSONL", {"format_type": "JSONL"}, STREAM, 1,
     "dlq/42/crm/members/2026-03-04_2026-03-04T05:06:07.089Z_1.jsonl"),
    ("no namespace: the empty segment is dropped", {"format_type": "JSONL"}, NO_NAMESPACE, 2,
     "dlq/7/members/2026-03-04_2026-03-04T05:06:07.089Z_2.jsonl"),
    ("CSV gzip extension", {"compression_type": "GZIP"}, STREAM, 3,
     "dlq/42/crm/members/2026-03-04_2026-03-04T05:06:07.089Z_3.csv.gz"),
    ("JSONL gzip extension", {"format_type": "JSONL", "compression_type": "GZIP"}, STREAM, 1,
     "dlq/42/crm/members/2026-03-04_2026-03-04T05:06:07.089Z_1.jsonl.gz"),
    ("no bucket path", {"bucket_path": ""}, STREAM, 1, "42/crm/members/2026-03-04_2026-03-04T05:06:07.089Z_1.csv"),
    ("date parts unpadded, epoch in ms", {"path_format": "{namespace}/{stream_name}/{year}_{month}_{day}_{epoch}"},
     STREAM, 1, "dlq/crm/members/2026_3_4_1772600767089/2026-03-04_2026-03-04T05:06:07.089Z_1.csv"),
    ("path without a trailing slash is still a folder", {"path_format": "{sync_id}-{generation_id}"}, STREAM, 1,
     "dlq/42-3/2026-03-04_2026-03-04T05:06:07.089Z_1.csv"),
    ("date pattern and sync id in the file name", {"file_name_format": "{date:yyyy_MM}-{sync_id}-{part_number}"},
     STREAM, 12, "dlq/42/crm/members/2026_03-42-12"),
    ("date pattern with every token", {"file_name_format": "{date:yyyy-MM-dd HH.mm.ss}_{part_number}"}, STREAM, 1,
     "dlq/42/crm/members/2026-03-04 05.06.07_1"),
    ("literal text and a percent sign survive", {"path_format": "rejects%/{stream_name}/",
                                                 "file_name_format": "x_{part_number}{format_extension}"},
     STREAM, 5, "dlq/rejects%/members/x_5.csv"),
]


@pytest.mark.parametrize(("overrides", "stream", "part", "expected"), [k[1:] for k in KEYS], ids=[k[0] for k in KEYS])
def test_object_key_expands_path_and_file_name_formats(
    overrides: dict[str, Any], stream: StreamContext, part: int, expected: str
) -> None:
    assert object_key(storage(**overrides), stream, STARTED, part) == expected


def test_the_module_expands_exactly_the_variables_the_config_accepts() -> None:
    assert known_variables() == (PATH_VARIABLES, FILE_NAME_VARIABLES)


# --- explaining failures ---------------------------------------------------------------------------------

S3 = S3Storage("rejects", "eu-west-1", "dlq", s3_endpoint="http://127.0.0.1:9000",
               access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key="wJalrXUtnFEMI0K7MDENGbPxRfiCYEXAMPLEKEY",
               role_arn="arn:aws:iam::1:role/dlq")

FAILURES: list[tuple[str, dict[str, Any], str, bool, str]] = [
    # (case, facts, kind, permanent, text in the message)
    ("no such bucket", {"code": "NoSuchBucket", "status": 404}, "missing", True, "S3 bucket 'rejects' does not exist at http://127.0.0.1:9000"),
    ("head 404", {"code": "404", "status": 404}, "missing", True, "does not exist"),
    ("redirect", {"code": "301", "status": 301, "bucket_region": "us-west-2"}, "region", True, "is in region us-west-2, not in eu-west-1"),
    ("region header differs", {"status": 200, "bucket_region": "us-west-2"}, "region", True, "Set object_storage_config.s3_bucket_region to us-west-2"),
    ("malformed auth header", {"code": "AuthorizationHeaderMalformed", "status": 400}, "region", True, "is in another region"),
    ("access denied", {"code": "AccessDenied", "status": 403}, "denied", True, "Access to S3 bucket 'rejects' was denied (AccessDenied)"),
    ("head 403", {"code": "403", "status": 403}, "denied", True, "s3:PutObject on dlq/*"),
    ("unknown key", {"code": "InvalidAccessKeyId", "status": 403}, "denied", True, "does not know the access key id"),
    ("wrong secret", {"code": "SignatureDoesNotMatch", "status": 403}, "denied", True, "secret access key does not belong"),
    ("expired token", {"code": "ExpiredToken", "status": 400}, "credentials", True, "no longer valid"),
    ("no credentials", {"no_credentials": True}, "credentials", True, "No AWS credentials were found"),
    ("role", {"code": "AccessDenied", "role": True}, "role", True, "The role arn:aws:iam::1:role/dlq could not be assumed"),
    ("unreachable", {"connection": "connection refused or closed"}, "unreachable", False, "The S3 endpoint http://127.0.0.1:9000 is unreachable"),
    ("server error", {"code": "InternalError", "status": 500}, "server", False, "S3 answered InternalError (HTTP 500)"),
    ("slow down", {"code": "SlowDown", "status": 503}, "server", False, "usually temporary"),
    ("throttled", {"status": 429}, "server", False, "HTTP 429"),
    ("anything else", {"code": "InvalidRequest", "status": 400}, "other", True, "InvalidRequest, HTTP 400"),
]


@pytest.mark.parametrize(("facts", "kind", "permanent", "text"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failures_are_explained_naming_the_bucket_and_no_secret(
    facts: dict[str, Any], kind: str, permanent: bool, text: str
) -> None:
    failure = explain(S3, **facts)
    assert (failure.kind, failure.permanent) == (kind, permanent)
    assert text in failure.message
    for secret in (S3.access_key_id, S3.secret_access_key):
        assert secret is not None and secret not in failure.message


def test_a_region_is_only_wrong_when_one_is_configured() -> None:
    unset = dataclasses.replace(S3, s3_bucket_region="")
    assert explain(unset, status=200, bucket_region="us-west-2").kind == "other"
    assert explain(unset, connection="timed out").reason == "The S3 endpoint http://127.0.0.1:9000 is unreachable (timed out)"
    aws = dataclasses.replace(S3, s3_endpoint=None)
    assert explain(aws, connection="timed out").reason == "The S3 endpoint Amazon S3 in region eu-west-1 is unreachable (timed out)"
