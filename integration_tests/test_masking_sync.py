"""Masked mode end to end: personal data in odd places, and a server that echoes the input.

The real entry point (``python main.py write``, a subprocess fed on stdin) syncs rows whose names,
streets, cities, dates of birth, SSNs and card numbers sit in innocent fields, in free text, in
object keys and nested objects (tests_support/pii.py), against a sandbox whose validation errors
echo the whole input (``echo_input_in_errors``), with the defaults ``rejected_records_include_pii:
false`` and ``log_pii: false``. Nothing planted may show in the local reject file, in the
``_airbyte_meta`` of the lines in the user's bucket (moto's S3 server), or in stdout/stderr; the
connector's own guidance must stay readable.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import credit_config
from moto_s3 import MotoS3

from tests_support.pii import Person, echo_message, leaks, odd_record, person

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ZIP_GUIDANCE = "postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789)"

pytestmark = pytest.mark.timeout(120)


def _record(data: dict[str, Any]) -> str:
    return json.dumps({"type": "RECORD", "record": {"stream": "members", "namespace": "crm", "emitted_at": 0,
                                                    "data": data}})


def _rows(people: list[Person], rng: random.Random) -> list[dict[str, Any]]:
    """Per person: a row the server refuses (echoing it), one refused before sending, one with a bad ZIP."""
    rows: list[dict[str, Any]] = []
    for i, p in enumerate(people):
        flat = {k: v for k, v in odd_record(p, rng, user_id=f"member-{i}@example.com").items()
                if not isinstance(v, dict | list)}  # reaches the server: no nested values in custom_data
        rows.append({**flat, "first_name": p.first, "last_name": p.last, "postal_code": "10010"})
        rows.append({**odd_record(p, rng, user_id=f"member-{i}b@example.com"), "first_name": p.first,
                     "custom_data": {p.relative_key: {"city": p.city}}})
        rows.append({"user_id": f"member-{i}c@example.com", "first_name": p.first, "last_name": p.last,
                     "postal_code": "1234-56789", "city_name": p.city, "notes": echo_message(p)})
    return rows


def test_masked_reject_file_bucket_and_logs_hold_no_personal_data_from_odd_places_or_server_echoes(
    sandbox_factory: Any, moto_s3: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(echo_input_in_errors=True)
    rng = random.Random(2121)
    people = [person(rng) for _ in range(4)]
    rows = _rows(people, rng)
    local = tmp_path / "rejects.jsonl"
    config = credit_config(
        sandbox, object_type="user_profile", reject_stop_sample=0, rejected_records_path=str(local),
        object_storage_config=moto_s3.storage_config(s3_bucket, bucket_path="dlq"),
    )
    catalog = {"streams": [{"stream": {"name": "members", "namespace": "crm", "json_schema": {},
                                       "supported_sync_modes": ["full_refresh"]},
                            "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
                            "generation_id": 1, "sync_id": 7, "minimum_generation_id": 0}]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    state = json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": 1, "stream": {
        "stream_descriptor": {"name": "members", "namespace": "crm"}, "stream_state": {"cursor": 1}}}})
    stdin = "\n".join([*(_record(row) for row in rows), state]) + "\n"

    out = subprocess.run(
        [*MAIN, "write", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
        input=stdin, capture_output=True, text=True, timeout=110, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert out.returncode == 0, out.stderr[-3000:]
    # The server really echoed the input: its answers carried the planted data.
    assert sandbox.request_counts().get("400", 0) >= len(people), sandbox.request_counts()
    stored = [json.loads(line) for line in local.read_text().splitlines()]
    assert len(stored) == len(rows)
    assert all(line["pii"] is False for line in stored)
    assert leaks(local.read_text(), people) == []
    assert leaks(out.stdout + out.stderr, people) == []
    bucket = [json.loads(line) for body in moto_s3.objects(s3_bucket).values() for line in body.decode().splitlines()]
    assert len(bucket) == len(rows)
    assert leaks(json.dumps([line["_airbyte_meta"] for line in bucket]), people) == []
    assert leaks(json.dumps([line["_airbyte_data"] for line in bucket]), people)  # the bucket keeps the data

    # Readable: the server's words and the connector's guidance, and masked keys keep their place.
    messages = [line["message"] for line in stored]
    echoed = [m for m in messages if "No custom attributes setup for client for" in m]
    assert len(echoed) == len(people), messages
    assert all("set unmapped_fields=drop" in m for m in echoed)
    assert sum(ZIP_GUIDANCE in m for m in messages) == len(people), messages
    assert ZIP_GUIDANCE in out.stdout + out.stderr
    odd = [line["record"] for line in stored if "taxpayer_id" in line["record"]]
    assert len(odd) == 2 * len(people)
    for record in odd:
        assert record["created_at"] == record["event_id"] == record["taxpayer_id"] == record["note_1"] == "***"
        assert any(key.startswith("<key ") for key in record), record
