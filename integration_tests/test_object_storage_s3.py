"""Rejected rows in the user's bucket (object_storage_config, S3), against a real S3 API.

moto's server runs as a subprocess on 127.0.0.1 with IAM authentication on (moto_s3.py); the
connector talks to it with boto3 exactly as it would to AWS (nothing in boto3 is mocked). Input is
gated: the rows after a state are handed over only once that state was echoed, so which rows an
object holds is deterministic, and what the bucket holds at the moment a state is echoed can be
checked (uploaded first, echoed after).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from airbyte_cdk.models import AirbyteMessage, ConfiguredAirbyteCatalog, Status
from airbyte_cdk.models.airbyte_protocol_serializers import ConfiguredAirbyteCatalogSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from helpers import credit_config, state_id, state_ids, stats
from moto_s3 import MotoS3, free_port, listening_addresses

from crowdtwist_sandbox import Sandbox
from destination_crowdtwist import DestinationCrowdtwist
from destination_crowdtwist.api.errors import ConfigError, TransientError
from destination_crowdtwist.api.retry import RetryPolicy
from destination_crowdtwist.cdk_adapter import load_message
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_sink import S3RejectSink
from destination_crowdtwist.writers.base import Outcome, Row, StreamContext

ROOT = Path(__file__).resolve().parents[1]
SYNC_ID, GENERATION_ID = 42, 3
KEY_NAME = r"\d{4}-\d{2}-\d{2}_\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z_(\d+)"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

pytestmark = pytest.mark.timeout(60)


# --- building input --------------------------------------------------------------------------------------


def catalog(*streams: tuple[str | None, str]) -> ConfiguredAirbyteCatalog:
    """User-profile upsert streams as the platform configures them (with sync and generation ids)."""
    configured = []
    for namespace, name in streams:
        stream: dict[str, Any] = {"name": name, "json_schema": {"type": "object"},
                                  "supported_sync_modes": ["full_refresh", "incremental"]}
        if namespace is not None:
            stream["namespace"] = namespace
        configured.append({"stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
                           "sync_id": SYNC_ID, "generation_id": GENERATION_ID, "minimum_generation_id": 0})
    return ConfiguredAirbyteCatalogSerializer.load({"streams": configured})


_emitted = iter(range(1_764_400_000_000, 1_764_500_000_000, 1000))


def rec(data: dict[str, Any], stream: str = "members", namespace: str | None = "crm") -> AirbyteMessage:
    body: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": next(_emitted)}
    if namespace is not None:
        body["namespace"] = namespace
    return load_message({"type": "RECORD", "record": body})


def st(state_id: int, stream: str = "members", namespace: str | None = "crm") -> AirbyteMessage:
    descriptor: dict[str, Any] = {"name": stream}
    if namespace is not None:
        descriptor["namespace"] = namespace
    return load_message({"type": "STATE", "state": {
        "type": "STREAM", "id": state_id, "stream": {"stream_descriptor": descriptor, "stream_state": {"c": state_id}}}})


def good(i: int) -> dict[str, Any]:
    return {"user_id": f"member{i}@example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}


def bad_location(i: int) -> dict[str, Any]:
    return {**good(i), "postal_code": "ABC"}


def no_id(i: int) -> dict[str, Any]:
    return {"first_name": f"Nobody{i}", "last_name": "Lee", "postal_code": "10001"}


@dataclass(frozen=True)
class Hold:
    """In a script: hand nothing more over until state ``state_id`` was echoed, then run ``then``."""

    state_id: int
    then: Callable[[], None] | None = None


@dataclass
class Run:
    out: list[AirbyteMessage]
    error: BaseException | None
    stored_at_echo: dict[int, int]  # state id -> rejected lines in the bucket when it was echoed

    @property
    def state_ids(self) -> list[int | None]:
        return state_ids(self.out)


def run_gated(
    config: dict[str, Any], configured: ConfiguredAirbyteCatalog, script: Iterable[AirbyteMessage | Hold],
    stored: Callable[[], int] = lambda: 0,
) -> Run:
    """Run ``write`` in-process on ``script``; ``stored()`` is read each time a state is echoed."""
    echoed: set[int] = set()
    done = False
    cond = threading.Condition()

    def feed() -> Iterator[AirbyteMessage]:
        for item in script:
            if isinstance(item, Hold):
                state_id = item.state_id
                with cond:
                    cond.wait_for(lambda: state_id in echoed or done, timeout=30)  # noqa: B023 - waited on here
                    if state_id not in echoed:
                        return
                if item.then is not None:
                    item.then()
                continue
            yield item

    out: list[AirbyteMessage] = []
    at_echo: dict[int, int] = {}
    error: BaseException | None = None
    try:
        for message in DestinationCrowdtwist().write(config, configured, feed()):
            out.append(message)
            echoed_id = state_id(message)
            if echoed_id is None:  # write yields states only; anything else is no echo to wait for
                continue
            at_echo[echoed_id] = stored()
            with cond:
                echoed.add(echoed_id)
                cond.notify_all()
    except Exception as exc:
        error = exc
    finally:
        with cond:
            done = True
            cond.notify_all()
    return Run(out, error, at_echo)


def lines_in(objects: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    return {key: [json.loads(line) for line in body.decode().splitlines()] for key, body in objects.items()}


def config_for(sandbox: Sandbox, moto_s3: MotoS3, bucket: str, **storage: Any) -> dict[str, Any]:
    return credit_config(sandbox, object_type="user_profile", reject_stop_sample=0,
                         object_storage_config=moto_s3.storage_config(bucket, **storage))


# --- the server fixture itself ---------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the Linux socket table")
def test_moto_server_listens_on_loopback_only_and_stop_ends_it() -> None:
    server = MotoS3().start()
    try:
        assert listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or IPv6
        server.create_bucket("probe-bucket")
    finally:
        process = server.process
        server.stop()
    assert process is not None and process.returncode is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()


# --- a sync with rejections across several states ----------------------------------------------------------


def test_rejected_rows_land_in_one_object_per_stream_and_state_release_in_airbytes_layout(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "rejects.jsonl"
    config = config_for(sandbox, moto_s3, s3_bucket, bucket_path="dlq/crowdtwist/")
    config["rejected_records_path"] = str(local)  # both sinks at once
    r2 = rec({**bad_location(2), "_airbyte_raw_id": "raw-0002"})
    r3 = rec(no_id(3))
    script: list[AirbyteMessage | Hold] = [
        rec(good(1)), r2, r3, rec(good(4)), st(1),
        Hold(1),
        rec(good(5)), st(2),  # no rejection: no object
        Hold(2),
        rec(bad_location(6)), rec(no_id(7)), rec(bad_location(8)),
        rec(no_id(9), stream="leads", namespace=None),
        st(3), st(4, stream="leads", namespace=None),
    ]

    def stored() -> int:
        return sum(len(lines) for lines in lines_in(moto_s3.objects(s3_bucket)).values())

    run = run_gated(config, catalog(("crm", "members"), (None, "leads")), script, stored)

    assert run.error is None
    assert run.state_ids == [1, 2, 3, 4]
    assert [stats(m) for m in run.out] == [(2.0, 2.0), (1.0, 0.0), (0.0, 3.0), (0.0, 1.0)]
    # Uploaded before echoed: when each state came out, the bucket held every rejected row it covers
    # (exactly those, while the input was held back).
    assert run.stored_at_echo[1] == 2
    assert run.stored_at_echo[2] == 2
    assert run.stored_at_echo[3] >= 5 and run.stored_at_echo[4] == 6

    objects = lines_in(moto_s3.objects(s3_bucket))
    names = {key: re.fullmatch(rf"dlq/crowdtwist/{SYNC_ID}/(crm/members|leads)/{KEY_NAME}\.jsonl", key) for key in objects}
    assert all(names.values()), list(objects)
    counts = {(m.group(1), int(m.group(2))): len(objects[key]) for key, m in names.items() if m}
    assert counts == {("crm/members", 1): 2, ("crm/members", 2): 3, ("leads", 1): 1}

    first = objects[next(k for k, m in names.items() if m and m.group(1) == "crm/members" and m.group(2) == "1")]
    assert [list(line) for line in first] == [["_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta",
                                               "_airbyte_generation_id", "_airbyte_data"]] * 2
    location, missing = first
    assert r2.record is not None and r3.record is not None
    assert location["_airbyte_raw_id"] == "raw-0002"
    assert location["_airbyte_extracted_at"] == r2.record.emitted_at
    assert location["_airbyte_generation_id"] == GENERATION_ID
    assert location["_airbyte_meta"]["sync_id"] == SYNC_ID
    assert location["_airbyte_meta"]["rejection"]["reason"] == "location"
    assert location["_airbyte_data"] == r2.record.data  # as received, unmasked
    assert UUID.fullmatch(missing["_airbyte_raw_id"])
    assert missing["_airbyte_extracted_at"] == r3.record.emitted_at
    assert missing["_airbyte_meta"]["rejection"]["reason"] == "missing_identifier"
    every = [line for lines in objects.values() for line in lines]
    for line in every:  # the message is masked; the data is not
        assert str(line["_airbyte_data"].get("user_id", "@")) not in line["_airbyte_meta"]["rejection"]["message"]
    assert len(local.read_text().splitlines()) == 6  # the local file still gets every row


@pytest.mark.parametrize(("format_type", "extension"), [("JSONL", ".jsonl.gz"), ("CSV", ".csv.gz")])
def test_gzip_objects_in_either_format(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, format_type: str, extension: str
) -> None:
    config = config_for(sandbox, moto_s3, s3_bucket, format={"format_type": format_type},
                        compression={"compression_type": "GZIP"}, path_format="{stream_name}/{generation_id}/")
    script = [rec(bad_location(1)), rec(good(2)), rec(no_id(3)), st(1)]
    run = run_gated(config, catalog(("crm", "members")), script)
    assert run.error is None and run.state_ids == [1]
    [(key, body)] = moto_s3.objects(s3_bucket).items()
    assert re.fullmatch(rf"members/{GENERATION_ID}/{KEY_NAME}{re.escape(extension)}", key), key
    text = gzip.decompress(body).decode()
    if format_type == "JSONL":
        reasons = [json.loads(line)["_airbyte_meta"]["rejection"]["reason"] for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == ["_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta",
                                 "_airbyte_generation_id", "_airbyte_data"]
        assert json.loads(rows[0]["_airbyte_data"]) == bad_location(1)
        reasons = [json.loads(row["_airbyte_meta"])["rejection"]["reason"] for row in rows]
    assert reasons == ["location", "missing_identifier"]


# --- the bucket or the endpoint going away mid-sync ------------------------------------------------------------


def test_a_bucket_deleted_mid_sync_stops_it_with_a_trace_naming_the_bucket_and_exit_code_1(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    """The real entry point: state 1 is echoed; the bucket is then deleted; state 2, whose rejected row
    is stored nowhere, is never echoed; the good row after state 1 stays written to CrowdTwist."""
    config = config_for(sandbox, moto_s3, s3_bucket, bucket_path="dlq")
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog(("crm", "members")))))

    def line(message: AirbyteMessage) -> str:
        from destination_crowdtwist.cdk_adapter import dump_message

        return dump_message(message) + "\n"

    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "write", "--config", str(tmp_path / "config.json"),
         "--catalog", str(tmp_path / "catalog.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(line(rec(bad_location(1))) + line(rec(good(2))) + line(st(1)))
        process.stdin.flush()
        seen: list[dict[str, Any]] = []
        while not any(m.get("type") == "STATE" for m in seen):
            text = process.stdout.readline()
            assert text, "the connector ended before echoing state 1"
            seen.append(json.loads(text))
        assert len(moto_s3.objects(s3_bucket)) == 1
        moto_s3.delete_bucket(s3_bucket)
        rest, stderr = process.communicate(line(rec(good(3))) + line(rec(no_id(4))) + line(st(2)), timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    messages = seen + [json.loads(text) for text in rest.splitlines() if text.strip()]
    assert process.returncode == 1
    assert [m["state"]["id"] for m in messages if m["type"] == "STATE"] == [1]
    [trace] = [m["trace"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    error = trace["error"]
    assert error["failure_type"] == "config_error"
    assert f"s3://{s3_bucket}/dlq/" in error["message"]
    assert f"The S3 bucket '{s3_bucket}' does not exist" in error["message"]
    assert "rows already written to CrowdTwist stay written" in error["message"]
    assert sandbox.member("email", "member3@example.com") is not None  # the good row after state 1
    everything = "\n".join([json.dumps(messages), stderr])
    for secret in moto_s3.admin.values():
        assert secret not in everything


def test_an_endpoint_that_stops_answering_is_retried_then_fails_transient_without_the_state(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with MotoS3() as own:
        own.create_bucket("short-lived")
        config = config_for(sandbox, own, "short-lived")
        config.update(max_retries=1, max_retry_wait_seconds=1)
        script: list[AirbyteMessage | Hold] = [
            rec(no_id(1)), st(1), Hold(1, then=own.stop), rec(good(2)), rec(bad_location(3)), st(2)]
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="airbyte"):
            run = run_gated(config, catalog(("crm", "members")), script)
    assert time.monotonic() - started < 20
    assert run.state_ids == [1]
    assert isinstance(run.error, AirbyteTracedException)
    assert run.error.failure_type is not None and run.error.failure_type.value == "transient_error"
    assert run.error.message is not None
    assert f"The S3 endpoint {own.endpoint} is unreachable" in run.error.message
    assert "after 2 attempts" in run.error.message
    assert "retrying in" in caplog.text  # one retry, logged
    assert sandbox.member("email", "member2@example.com") is not None


# --- the sink's own guarantees -------------------------------------------------------------------------------


def sink_row(i: int, stream: StreamContext) -> tuple[Row, Outcome]:
    row = Row(stream=stream, data={"user_id": f"u{i}@example.com", "note": "x" * 50}, seq=i, emitted_at=i)
    return row, Outcome.rejected("u***", Rejection(Reason.VALIDATION, "bad value"))


def test_the_buffer_is_bounded_by_uploading_early(moto_s3: MotoS3, s3_bucket: str) -> None:
    storage = parse_config({"api_base_url": "https://a.crowdtwist.com", "credentials": {"api_key": "k"},
                            "object_storage_config": moto_s3.storage_config(s3_bucket)}).object_storage_config
    assert storage is not None
    sink = S3RejectSink(storage, policy=RetryPolicy(max_retries=0), max_buffer_bytes=400)
    stream = StreamContext(None, "s", "append", sync_id=9)
    for i in range(5):
        sink.add(*sink_row(i, stream))
    # ~200 bytes a line: every second row fills the buffer and is uploaded before the next state (by the
    # sink's uploader thread: add never waits for S3).
    deadline = time.monotonic() + 10
    while len(sink.uploaded) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [rows for _, rows in sink.uploaded] == [2, 2]
    sink.flush()
    sink.flush()  # nothing new: no empty object
    sink.close()
    objects = lines_in(moto_s3.objects(s3_bucket))
    assert [len(lines) for lines in objects.values()] == [2, 2, 1]
    numbers = [(match.group(1) if (match := re.fullmatch(rf"9/s/{KEY_NAME}\.jsonl", key)) else key) for key in objects]
    assert numbers == ["1", "2", "3"]


def test_after_a_failed_upload_the_sink_refuses_everything_and_close_lets_go(moto_s3: MotoS3) -> None:
    moto_s3.create_bucket("gone-soon")
    storage = parse_config({"api_base_url": "https://a.crowdtwist.com", "credentials": {"api_key": "k"},
                            "object_storage_config": moto_s3.storage_config("gone-soon")}).object_storage_config
    assert storage is not None
    sink = S3RejectSink(storage, policy=RetryPolicy(max_retries=3), sleep=lambda s: pytest.fail("retried a 404"))
    sink.start()
    moto_s3.delete_bucket("gone-soon")
    stream = StreamContext(None, "s", "append")
    sink.add(*sink_row(1, stream))
    with pytest.raises(ConfigError) as first:
        sink.flush()
    with pytest.raises(ConfigError) as again:
        sink.flush()
    assert again.value is first.value
    with pytest.raises(ConfigError):
        sink.add(*sink_row(2, stream))
    sink.close()  # does not raise a second time
    assert first.value.__cause__ is None and first.value.__context__ is None


def test_a_missing_bucket_stops_the_sync_before_its_first_row(sandbox: Sandbox, moto_s3: MotoS3) -> None:
    config = config_for(sandbox, moto_s3, "never-created")
    run = run_gated(config, catalog(("crm", "members")), [rec(good(1)), st(1)])
    assert run.state_ids == []
    assert isinstance(run.error, AirbyteTracedException)
    assert run.error.failure_type is not None and run.error.failure_type.value == "config_error"
    assert "'never-created' does not exist" in (run.error.message or "")
    assert (run.error.message or "").endswith("The sync stops before its first row.")
    assert sandbox.members() == []


def test_unreachable_endpoint_at_start_is_transient_after_the_retries(sandbox: Sandbox, moto_s3: MotoS3) -> None:
    storage = parse_config({"api_base_url": "https://a.crowdtwist.com", "credentials": {"api_key": "k"},
                            "object_storage_config": {**moto_s3.storage_config("x-bucket"),
                                                      "s3_endpoint": f"http://127.0.0.1:{free_port()}"}})
    assert storage.object_storage_config is not None
    waits: list[float] = []
    sink = S3RejectSink(storage.object_storage_config, policy=RetryPolicy(max_retries=2, base=1.0, cap=5.0),
                        sleep=waits.append, rand=lambda: 0.0)
    with pytest.raises(TransientError) as info:
        sink.start()
    assert waits == [0.5, 1.0]  # capped exponential backoff with equal jitter
    assert "is unreachable (connection refused or closed) after 3 attempts" in info.value.message


# --- check -------------------------------------------------------------------------------------------------


def check(config: dict[str, Any]) -> tuple[Status, str]:
    status = DestinationCrowdtwist().check(logging.getLogger("airbyte"), config)
    return status.status, status.message or ""


def test_check_writes_and_deletes_a_probe_object_under_the_prefix(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str
) -> None:
    status, message = check(config_for(sandbox, moto_s3, s3_bucket, bucket_path="dlq"))
    assert status == Status.SUCCEEDED, message
    assert message.endswith(f"Rejected rows can be stored in s3://{s3_bucket}/dlq/.")
    assert moto_s3.objects(s3_bucket) == {}  # deleted again


@dataclass(frozen=True)
class CheckCase:
    name: str
    storage: Callable[[MotoS3, str], dict[str, Any]]
    message: str


CHECK_FAILURES = [
    CheckCase("bucket missing", lambda s3, b: s3.storage_config(b + "-missing"),
              "The S3 bucket '{bucket}-missing' does not exist at {endpoint}. Create it, or fix object_storage_config.s3_bucket_name"),
    CheckCase("access denied", lambda s3, b: s3.storage_config(b, keys=s3.nobody, bucket_path="dlq"),
              "Access to S3 bucket '{bucket}' was denied (AccessDenied). Allow the configured credentials s3:PutObject on dlq/*"),
    CheckCase("unknown access key", lambda s3, b: s3.storage_config(b, keys={"aws_access_key_id": "AKIANOTKNOWN00000000",
                                                                               "aws_secret_access_key": "x" * 40}),
              "S3 does not know the access key id configured for S3 bucket '{bucket}' (InvalidAccessKeyId)"),
    CheckCase("wrong secret", lambda s3, b: s3.storage_config(b, keys={**s3.admin, "aws_secret_access_key": "y" * 40}),
              "S3 refused the request signature for S3 bucket '{bucket}' (SignatureDoesNotMatch)"),
    CheckCase("endpoint unreachable", lambda s3, b: {**s3.storage_config(b), "s3_endpoint": "http://127.0.0.1:{port}"},
              "The S3 endpoint http://127.0.0.1:{port} is unreachable (connection refused or closed)"),
    CheckCase("wrong region", lambda s3, b: s3.storage_config(b, s3_bucket_region="us-west-2"),
              "The S3 bucket '{bucket}' is in region eu-central-1, not in us-west-2. Set object_storage_config.s3_bucket_region to eu-central-1."),
    CheckCase("role cannot be assumed", lambda s3, b: s3.storage_config(b, keys=s3.nobody, role_arn="arn:aws:iam::123456789012:role/dlq-writer"),
              "The role arn:aws:iam::123456789012:role/dlq-writer could not be assumed for S3 bucket '{bucket}' (AccessDenied)"),
]


@pytest.mark.parametrize("case", CHECK_FAILURES, ids=[c.name for c in CHECK_FAILURES])
def test_check_fails_with_a_specific_message_and_prints_no_secret(
    sandbox: Sandbox, moto_s3: MotoS3, case: CheckCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"check-{case.name.replace(' ', '-')}"
    moto_s3.create_bucket(bucket, region="eu-central-1" if case.name == "wrong region" else "us-east-1")
    port = free_port()
    storage = json.loads(json.dumps(case.storage(moto_s3, bucket)).replace("{port}", str(port)))
    config = {**config_for(sandbox, moto_s3, bucket), "object_storage_config": storage}
    expected = case.message.format(bucket=bucket, endpoint=moto_s3.endpoint, port=port)

    status, message = check(config)
    assert status == Status.FAILED
    assert message.startswith("Rejected rows cannot be stored in the bucket of object_storage_config: ")
    assert expected in message, message

    # The same through the entry point, as the platform runs it: nothing printed holds a key.
    (tmp_path / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    DestinationCrowdtwist().run(["check", "--config", str(tmp_path / "config.json")])
    printed = capsys.readouterr()
    [status_line] = [json.loads(line) for line in printed.out.splitlines() if '"CONNECTION_STATUS"' in line]
    assert status_line["connectionStatus"]["status"] == "FAILED"
    for secret in (storage["access_key_id"], storage["secret_access_key"]):
        assert secret not in printed.out + printed.err
    assert moto_s3.objects(bucket) == {}


def s3_role(moto_s3: MotoS3, s3_bucket: str) -> str:
    """The ARN of a role anyone may assume that may do anything in S3."""
    iam = moto_s3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                     "Action": "sts:AssumeRole"}]}
    name = f"dlq-{s3_bucket}"
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    return arn


def test_check_and_sync_through_an_assumed_role(sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str) -> None:
    arn = s3_role(moto_s3, s3_bucket)
    config = config_for(sandbox, moto_s3, s3_bucket, role_arn=arn)
    assert check(config)[0] == Status.SUCCEEDED
    run = run_gated(config, catalog(("crm", "members")), [rec(no_id(1)), st(1)])
    assert run.error is None and run.state_ids == [1]
    assert len(moto_s3.objects(s3_bucket)) == 1


def test_role_credentials_about_to_expire_are_renewed_before_the_next_call(
    moto_s3: MotoS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync can outlast its role session: botocore's refreshing credentials assume the role again
    before they expire. Here every answer expires in 5 minutes (inside botocore's 10-minute mandatory
    refresh window), so each call renews them first, and each call succeeds."""
    arn = s3_role(moto_s3, s3_bucket)
    assumed: list[str] = []
    make_client = boto3.session.Session.client

    def client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        made = make_client(self, service, *args, **kwargs)
        if service == "sts":
            assume_role = made.assume_role

            def short_lived(**options: Any) -> Any:
                answer = assume_role(**options)
                answer["Credentials"]["Expiration"] = datetime.now(UTC) + timedelta(minutes=5)
                assumed.append(answer["Credentials"]["AccessKeyId"])
                return answer

            made.assume_role = short_lived
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    storage = parse_config({"api_base_url": "https://a.crowdtwist.com", "credentials": {"api_key": "k"},
                            "object_storage_config": moto_s3.storage_config(s3_bucket, role_arn=arn)})
    assert storage.object_storage_config is not None
    s3 = S3Client(storage.object_storage_config)
    try:
        for key in ("one", "two"):
            s3.client.put_object(Bucket=s3_bucket, Key=key, Body=b"{}\n")
    finally:
        s3.close()
    assert len(assumed) >= 3  # when the client was made, then before each call
    assert sorted(moto_s3.objects(s3_bucket)) == ["one", "two"]


def test_empty_keys_use_the_aws_credential_chain(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.admin["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.admin["aws_secret_access_key"])
    # Nothing else in the chain may answer (and no instance metadata lookup leaves the machine).
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    config = config_for(sandbox, moto_s3, s3_bucket, access_key_id="", secret_access_key="")
    status, message = check(config)
    assert status == Status.SUCCEEDED, message
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    status, message = check(config)
    assert status == Status.FAILED
    assert "No AWS credentials were found for object_storage_config" in message


def test_rows_after_the_last_state_are_uploaded_when_the_sync_ends(
    sandbox: Sandbox, moto_s3: MotoS3, s3_bucket: str
) -> None:
    """Re-sending fixed rows (docs/crowdtwist.md) pipes records without any state: they are stored too,
    and a record's own _airbyte_raw_id (kept when re-sent) is never sent to CrowdTwist."""
    config = config_for(sandbox, moto_s3, s3_bucket)
    run = run_gated(config, catalog(("crm", "members")), [
        rec({**bad_location(1), "_airbyte_raw_id": "raw-1"}), rec({**good(2), "_airbyte_raw_id": "raw-2"}),
    ])
    assert run.error is None and run.out == []
    [lines] = lines_in(moto_s3.objects(s3_bucket)).values()
    assert [line["_airbyte_raw_id"] for line in lines] == ["raw-1"]
    member = sandbox.member("email", "member2@example.com")
    assert member is not None and "_airbyte_raw_id" not in json.dumps(member)
