"""One test per CDK gap that cdk_adapter.py fixes (numbered as in its docstring).

Each test shows the CDK's own behaviour first (``Destination``'s methods, called on a destination
that uses them), then ours. When a CDK upgrade closes a gap, the first half fails: the fix may then go.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from airbyte_cdk.destinations import Destination
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import (
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteStateStats,
    ConfiguredAirbyteCatalog,
    ConnectorSpecification,
    Status,
)
from airbyte_cdk.models.airbyte_protocol_serializers import AirbyteMessageSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from serpyco_rs import SchemaValidationError

from destination_crowdtwist import cdk_adapter
from destination_crowdtwist.cdk_adapter import AdaptedDestination, dump_message, emit, load_message, state_message
from destination_crowdtwist.sync.checkpoint import ReleasedState
from destination_crowdtwist.sync.protocol import BadInput
from destination_crowdtwist.sync.termination import Terminated, Termination

SPEC = ConnectorSpecification(connectionSpecification={
    "type": "object", "required": ["api_base_url"],
    "properties": {"api_base_url": {"type": "string"}, "api_key": {"type": "string", "airbyte_secret": True}},
})
STATE: dict[str, Any] = {"type": "STATE", "state": {"type": "STREAM", "id": 7, "stream": {
    "stream_descriptor": {"name": "users"}, "stream_state": {"cursor": 1}}}}
RECORD: dict[str, Any] = {"type": "RECORD", "record": {"stream": "users", "emitted_at": 1, "data": {"n": 1}}}
CATALOG: dict[str, Any] = {"streams": [{"stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["incremental"]},
                        "sync_mode": "incremental", "destination_sync_mode": "append"}]}


class Probe(AdaptedDestination):
    """The adapter with recording ``check``, ``discover`` and ``write``."""

    def __init__(self, output: Iterable[AirbyteMessage] = ()) -> None:
        self.output = list(output)
        self.checked: list[Mapping[str, Any]] = []
        self.written: list[Any] = []

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return SPEC

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        self.checked.append(config)
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"operations": []}

    def write(
        self, config: Mapping[str, Any], configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage | BadInput],
    ) -> Iterable[AirbyteMessage]:
        self.written.extend(input_messages)
        yield from self.output


class CdkProbe(Destination):
    """The CDK's own ``Destination``, as a connector that overrides nothing would use it."""

    check_config_against_spec = False

    def __init__(self, output: Iterable[AirbyteMessage] = ()) -> None:
        self.output = list(output)

    def spec(self, logger: logging.Logger) -> ConnectorSpecification:
        return SPEC

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        return AirbyteConnectionStatus(status=Status.SUCCEEDED)

    def write(
        self, config: Mapping[str, Any], configured_catalog: ConfiguredAirbyteCatalog,
        input_messages: Iterable[AirbyteMessage],
    ) -> Iterable[AirbyteMessage]:
        list(input_messages)
        yield from self.output


class Stdout:
    """A stdout that records what is written and when it is flushed."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def write(self, text: str) -> int:
        self.events.append(text)
        return len(text)

    def flush(self) -> None:
        self.events.append("<flush>")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, content in {"config": {"api_base_url": "https://x"}, "catalog": CATALOG}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(content))
        paths[name] = str(path)
    return paths


@pytest.fixture
def quiet_run(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """run() without touching the test process: the excepthook is restored, SIGTERM handlers recorded."""
    installed: list[Any] = []
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: installed.append((signum, handler)))
    monkeypatch.setattr(cdk_adapter, "TERMINATION", Termination(exit_process=lambda code: None))
    return installed


def test_gap_1_each_message_is_one_line_flushed_after_the_pending_log_lines(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, str], quiet_run: list[Any]
) -> None:
    out = Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    CdkProbe([AirbyteMessageSerializer.load(STATE)]).run(
        ["write", "--config", files["config"], "--catalog", files["catalog"]])
    assert any('"id"' not in e and '"STATE"' in e for e in out.events)  # printed (without its id, gap 2) ...
    assert "<flush>" not in out.events  # ... and left in the buffer: the CDK never flushes

    out.events.clear()
    monkeypatch.setattr(sys, "__stdout__", out)  # where the CDK's PRINT_BUFFER writes log lines
    state = load_message(STATE)
    with PRINT_BUFFER.lock:
        PRINT_BUFFER.buffer.write("a log line\n")
    emit(state)
    assert out.events == ["a log line\n", "<flush>", dump_message(state) + "\n", "<flush>"]


def test_gap_2_the_platforms_state_id_survives_loading_and_echoing() -> None:
    assert "id" not in AirbyteMessageSerializer.dump(AirbyteMessageSerializer.load(STATE))["state"]  # the CDK
    assert json.loads(dump_message(load_message(STATE)))["state"]["id"] == 7


def test_gap_3_echoed_states_carry_exact_counts_with_rejected_record_count() -> None:
    assert "rejectedRecordCount" not in AirbyteStateStats.__dataclass_fields__  # the CDK: protocol 0.17.1
    echoed = json.loads(dump_message(state_message(ReleasedState(load_message(STATE), 3, 2))))
    assert echoed["state"]["destinationStats"] == {"recordCount": 3.0, "rejectedRecordCount": 2.0}
    assert echoed["state"]["id"] == 7 and echoed["state"]["stream"]["stream_state"] == {"cursor": 1}


def test_gap_4_json_that_is_not_an_airbyte_message_does_not_stop_the_sync(files: dict[str, str]) -> None:
    unknown = json.dumps({"type": "SOMETHING_NEW", "x": 1})
    with pytest.raises(SchemaValidationError):  # the CDK: the sync dies
        # The CDK annotates a TextIOWrapper but reads any text stream.
        list(CdkProbe()._parse_input_stream(io.StringIO(unknown + "\n")))  # type: ignore[arg-type]

    probe = Probe()
    lines = [unknown.encode(), b"not json", json.dumps(RECORD).encode()]
    list(probe._run_write(config={}, configured_catalog_path=files["catalog"], input_stream=lines))
    bad, record = probe.written  # the unknown type is skipped; the broken line is a rejected row
    assert isinstance(bad, BadInput) and "not JSON" in str(bad.rejection.message)
    assert isinstance(record, AirbyteMessage) and record.record is not None and record.record.data == {"n": 1}


class _Stdin:
    """A stdin whose text and buffered layers must not be used: only its descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    @property
    def buffer(self) -> Any:
        raise AssertionError("read through sys.stdin.buffer")


def test_gap_5_stdin_is_read_from_its_descriptor_not_through_a_buffered_reader(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, json.dumps(RECORD).encode() + b"\n")
    os.close(write_end)
    monkeypatch.setattr(sys, "stdin", _Stdin(read_end))
    args = argparse.Namespace(command="write", config=files["config"], catalog=files["catalog"])
    try:
        with pytest.raises(AssertionError, match=r"sys\.stdin\.buffer"):  # the CDK
            list(CdkProbe().run_cmd(args))
        probe = Probe()
        list(probe.run_cmd(args))
    finally:
        os.close(read_end)
    [record] = probe.written
    assert record.record.data == {"n": 1}


def test_gap_6_check_gets_the_config_without_a_jsonschema_verdict(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"api_key": "sk_live_0123456789"}))  # api_base_url missing
    args = argparse.Namespace(command="check", config=str(path))
    [cdk_answer] = CdkProbe().run_cmd(args)  # the CDK answers with jsonschema's text, check never runs
    assert cdk_answer.connectionStatus is not None and "Config validation error" in str(cdk_answer.connectionStatus.message)

    probe = Probe()
    [answer] = probe.run_cmd(args)
    assert answer.connectionStatus is not None and answer.connectionStatus.status == Status.SUCCEEDED
    assert probe.checked == [{"api_key": "sk_live_0123456789"}]  # parse_config names the field (not here)


def test_gap_7_discover_is_a_command_that_prints_a_destination_catalog(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], quiet_run: list[Any]
) -> None:
    assert "discover" not in Destination.VALID_CMDS  # the CDK
    with pytest.raises(SystemExit):
        CdkProbe().parse_args(["discover", "--config", files["config"]])
    capsys.readouterr()

    probe = Probe()
    args = probe.parse_args(["discover", "--config", files["config"]])
    assert list(probe.run_cmd(args)) == []  # written at once, as plain JSON: the CDK's models cannot carry it
    assert json.loads(capsys.readouterr().out) == {"type": "DESTINATION_CATALOG", "destination_catalog": {"operations": []}}


def test_gap_8_command_line_mistakes_are_config_errors_that_name_the_commands(quiet_run: list[Any]) -> None:
    with pytest.raises(Exception, match="No command entered") as cdk_error:  # the CDK: a bare Exception
        CdkProbe().parse_args([])
    assert type(cdk_error.value) is Exception

    for args, needle in [([], "No command given. The commands are: spec; check --config CONFIG; discover"),
                         (["write", "--config", "c.json"], "The write command needs --config CONFIG --catalog")]:
        with pytest.raises(AirbyteTracedException) as caught:
            Probe().run(args)
        assert caught.value.failure_type is not None and caught.value.failure_type.value == "config_error"
        assert needle in str(caught.value.message)


def test_gap_9_unreadable_config_and_catalog_files_are_config_errors_that_never_quote_them(
    tmp_path: Path, files: dict[str, str]
) -> None:
    with pytest.raises(FileNotFoundError):  # the CDK: a crash
        CdkProbe().read_config(str(tmp_path / "missing.json"))

    def config_error(call: Any) -> str:
        with pytest.raises(AirbyteTracedException) as caught:
            call()
        assert caught.value.failure_type is not None and caught.value.failure_type.value == "config_error"
        return str(caught.value.message)

    assert "cannot be read" in config_error(lambda: Probe.read_config(str(tmp_path / "missing.json")))
    broken = tmp_path / "broken.json"
    broken.write_text("{'api_key': 'sk_live_0123456789'")
    assert "sk_live" not in config_error(lambda: Probe.read_config(str(broken)))
    bad_catalog = tmp_path / "catalog.json"
    bad_catalog.write_text(json.dumps({"streams": [{"stream": 5}]}))
    message = config_error(lambda: list(Probe()._run_write({}, str(bad_catalog), input_stream=[])))
    assert "is not a valid Airbyte catalog" in message


def test_gap_10_a_sigterm_while_a_state_is_written_reaches_write_where_it_yielded(
    monkeypatch: pytest.MonkeyPatch, files: dict[str, str], quiet_run: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    CdkProbe().run(["spec"])
    assert quiet_run == []  # the CDK installs no SIGTERM handler: Python's default kills the process at once

    first, second = load_message(STATE), load_message({**STATE, "state": {**STATE["state"], "id": 8}})
    seen: list[str] = []

    class Stopped(Probe):
        def write(self, config: Any, configured_catalog: Any, input_messages: Any) -> Iterator[AirbyteMessage]:
            try:
                yield first
            except Terminated:
                seen.append("terminated")
                yield second  # what is safe is still echoed
                raise

    emitted: list[AirbyteMessage] = []

    def emit_once_interrupted(message: AirbyteMessage) -> None:
        if not emitted and not seen:
            raise Terminated  # the SIGTERM lands while the first state is written
        emitted.append(message)

    monkeypatch.setattr(cdk_adapter, "emit", emit_once_interrupted)
    monkeypatch.setattr(Stopped, "_stdin", staticmethod(lambda: iter([])))
    with pytest.raises(Terminated):
        Stopped().run(["write", "--config", files["config"], "--catalog", files["catalog"]])
    assert seen == ["terminated"] and emitted == [second]
    assert [signum for signum, _ in quiet_run] == [signal.SIGTERM]
