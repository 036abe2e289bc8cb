"""``discover`` through the real entry point (a subprocess, as the platform runs it) against the sandbox."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from airbyte_cdk.models.airbyte_protocol_serializers import custom_type_resolver
from airbyte_protocol_dataclasses.models import AirbyteMessage as ProtocolMessage
from serpyco_rs import Serializer

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions
from destination_crowdtwist import DestinationCrowdtwist

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
WRONG_KEY = "ctsbx_wrong_key_discover_0123456789abcdef"
LOG = logging.getLogger("test")

MessageSerializer: Serializer[ProtocolMessage] = Serializer(
    ProtocolMessage, omit_none=True, custom_type_resolver=custom_type_resolver
)


def config(base_url: str, key: str = DEFAULT_API_KEY, **extra: Any) -> dict[str, Any]:
    return {"api_base_url": base_url, "credentials": {"auth_type": "api_key", "api_key": key}, "max_retries": 0, **extra}


def discover(tmp_path: Path, cfg: dict[str, Any]) -> tuple[int, list[dict[str, Any]], str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    out = subprocess.run(
        [*MAIN, "discover", "--config", str(path)], capture_output=True, text=True, env=ENV, timeout=60
    )
    messages = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]  # every line is JSON
    return out.returncode, messages, out.stdout + out.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_fails_like_check(tmp_path: Path, cfg: dict[str, Any], failure_type: str) -> str:
    code, messages, output = discover(tmp_path, cfg)
    assert code != 0
    assert not [m for m in messages if m["type"] == "DESTINATION_CATALOG"]
    assert {m["type"] for m in messages} <= {"LOG", "TRACE"}
    [error] = [m["trace"]["error"] for m in messages if m["type"] == "TRACE"]
    assert error["failure_type"] == failure_type
    expected = DestinationCrowdtwist().check(LOG, cfg).message
    assert error["message"] == expected
    for secret in (DEFAULT_API_KEY, WRONG_KEY):
        assert secret not in output
    return str(expected)


def test_discover_prints_exactly_one_destination_catalog_with_the_live_activities(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions()) as sb:
        sb.add_activity(id="2001", title="Review", num_points=5)
        code, messages, output = discover(tmp_path, config(sb.base_url, custom_attributes=["tier"]))
        requests = sb.request_counts()["total"]
    assert code == 0, output[-2000:]
    assert {m["type"] for m in messages} <= {"LOG", "DESTINATION_CATALOG"}
    [message] = [m for m in messages if m["type"] == "DESTINATION_CATALOG"]
    loaded = MessageSerializer.load(message)  # the protocol model accepts it
    assert loaded.destination_catalog is not None
    operations = message["destination_catalog"]["operations"]
    assert [(op["object_name"], op["sync_mode"]) for op in operations] == [
        ("user_profile", "append_dedup"), ("user_profile", "append"), ("user_profile", "update"),
        ("user_profile", "soft_delete"),
        ("activity_credit", "append"),
    ]
    choices = operations[4]["json_schema"]["properties"]["activity_id"]["oneOf"]
    assert [c["const"] for c in choices] == ["1001", "1002", "1003", "2001"]
    assert choices[-1]["title"] == "Review (5 points)"
    assert "tier" in operations[0]["json_schema"]["properties"]
    assert requests == 1  # one GET /v2/activities
    assert DEFAULT_API_KEY not in output


def test_discover_with_a_bad_api_key_fails_with_checks_message(tmp_path: Path) -> None:
    with Sandbox(SandboxOptions()) as sb:
        message = assert_fails_like_check(tmp_path, config(sb.base_url, WRONG_KEY), "config_error")
    assert "API key" in message and "403" in message


def test_discover_with_an_unreachable_url_fails_with_checks_message(tmp_path: Path) -> None:
    message = assert_fails_like_check(tmp_path, config(f"http://127.0.0.1:{free_port()}"), "transient_error")
    assert "reach" in message.lower() or "connect" in message.lower()


def test_discover_makes_activity_id_optional_when_default_activity_id_is_set(tmp_path: Path) -> None:
    """An events table without an activity column can be mapped: the config's default fills it in."""
    with Sandbox(SandboxOptions()) as sb:
        _, without, _ = discover(tmp_path, config(sb.base_url))
        code, messages, output = discover(tmp_path, config(sb.base_url, default_activity_id="1001"))
    assert code == 0, output[-2000:]

    def credit_schema(msgs: list[dict[str, Any]]) -> dict[str, Any]:
        [message] = [m for m in msgs if m["type"] == "DESTINATION_CATALOG"]
        [op] = [op for op in message["destination_catalog"]["operations"] if op["object_name"] == "activity_credit"]
        schema: dict[str, Any] = op["json_schema"]
        return schema

    assert credit_schema(without)["required"] == ["activity_id"]
    schema = credit_schema(messages)
    assert "activity_id" not in schema.get("required", [])
    assert "default activity 1001" in schema["properties"]["activity_id"]["description"]
    assert [c["const"] for c in schema["properties"]["activity_id"]["oneOf"]][:1] == ["1001"]
