"""The real Airbyte ``source-faker`` (PyPI ``airbyte-source-faker``), installed for integration tests.

source-faker pins its own airbyte-cdk (6.x), which conflicts with ours (7.x), so it lives in its own
virtualenv under the repository root (``.venv-faker/``, git-ignored), built by tool_venv.py. The
venv survives between runs: it is reused when its stamp names the pinned requirement and
``source-faker spec`` still answers, and rebuilt from scratch otherwise.

    exe = ensure_source_faker()                      # raises FakerUnavailable (carry the reason to a skip)
    pipe = pipe_source_into(exe, faker_config, faker_catalog, dest_cmd)

``pipe_source_into`` wires the two processes the way the platform does: the source's stdout goes
line by line to the destination's stdin, and each STATE gets the integer ``id`` the platform adds
(platform >= 1.7 matches echoed states by it; source-faker itself emits none).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tool_venv import InstallReport, ToolUnavailable, ensure_tool_venv, tool_venv_root

# Pinned: the test reads faker's field names (email, name, address.*), which a new major may change.
FAKER_REQUIREMENT = "airbyte-source-faker==7.2.1"
FAKER_PACKAGE = FAKER_REQUIREMENT.split("==")[0]
FAKER_VENV = tool_venv_root() / ".venv-faker"
# The install (about 360 MB on disk) took 29 to 39 s on this 2-core machine, 32 s with pip's cache disabled.

# source-faker's failures are the shared helper's (the names stay for the tests that import them).
FakerUnavailable = ToolUnavailable


def _answers_spec(executable: Path) -> bool:
    if not executable.exists():
        return False
    try:
        out = subprocess.run([str(executable), "spec"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and '"SPEC"' in out.stdout


def ensure_source_faker(venv: Path = FAKER_VENV, requirement: str = FAKER_REQUIREMENT) -> InstallReport:
    """The ``source-faker`` executable of a working venv at ``venv``, installed when needed.

    Raises `FakerUnavailable` naming the package and pip's last error line when the install fails
    (typically: no package registry reachable).
    """
    return ensure_tool_venv(
        venv, requirement, "source-faker", _answers_spec, probe_description="`source-faker spec` does not answer"
    )


def configured_users_catalog(discovered: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A configured catalog for the ``users`` stream of a discovered catalog, plus ``extra`` keys."""
    [users] = [stream for stream in discovered["streams"] if stream["name"] == "users"]
    configured: dict[str, Any] = {
        "stream": users,
        "sync_mode": "incremental",
        "cursor_field": ["updated_at"],
        "destination_sync_mode": "append_dedup",
    }
    configured.update(extra)
    return {"streams": [configured]}


def discover(executable: Path, config_path: Path) -> dict[str, Any]:
    """The CATALOG source-faker reports for ``config_path``."""
    out = subprocess.run(
        [str(executable), "discover", "--config", str(config_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            message = json.loads(line)
            if message.get("type") == "CATALOG":
                catalog: dict[str, Any] = message["catalog"]
                return catalog
    raise AssertionError(f"source-faker discover printed no CATALOG: {out.stdout[-500:]}")


def location_rejected_ids(users: list[dict[str, Any]]) -> set[int]:
    """The faker ids of ``users`` that CrowdTwist's location rule refuses under the tests' mapping.

    The mapping sends ``address.postal_code``, ``address.country_code`` and ``address.city``; a US
    ZIP next to a city, or a Canadian row with faker's 5-digit code, is refused (see
    test_source_faker.py). Independent of the connector, so a test can hold it to this.
    """
    out = set()
    for user in users:
        country, postal = user["address"]["country_code"], user["address"]["postal_code"]
        if country == "US" or (country == "CA" and not re.fullmatch(r"[A-Z]\d[A-Z] \d[A-Z]\d", postal)):
            out.add(user["id"])
    return out


@dataclass
class PipeResult:
    """What went through the pipe and what came back."""

    source_messages: list[dict[str, Any]] = field(default_factory=list)  # as forwarded (states with ids)
    destination_messages: list[dict[str, Any]] = field(default_factory=list)
    source_returncode: int | None = None
    destination_returncode: int | None = None
    source_stderr: str = ""
    destination_stderr: str = ""
    seconds: float = 0.0

    def source_of_type(self, kind: str) -> list[dict[str, Any]]:
        """The forwarded source messages of ``kind`` (RECORD, STATE, LOG, TRACE)."""
        return [m for m in self.source_messages if m.get("type") == kind]

    def echoed_states(self) -> list[dict[str, Any]]:
        """The ``state`` bodies the destination printed, in order."""
        return [m["state"] for m in self.destination_messages if m.get("type") == "STATE"]

    def segments(self) -> list[list[dict[str, Any]]]:
        """The source's records grouped by the state that closes them (one list per state)."""
        out: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        for message in self.source_messages:
            if message.get("type") == "RECORD":
                current.append(message["record"]["data"])
            elif message.get("type") == "STATE":
                out.append(current)
                current = []
        return out


def pipe_source_into(
    source_cmd: Sequence[str], destination_cmd: Sequence[str], *, timeout: float = 300
) -> PipeResult:
    """Run ``source_cmd | (add state ids) | destination_cmd`` and collect both sides.

    Lines are forwarded as they come (not after the source ends), so the destination sees the
    stream the way the platform delivers it. Non-JSON source lines are forwarded unchanged.
    """
    result = PipeResult()
    started = time.monotonic()
    source = subprocess.Popen(
        list(source_cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    destination = subprocess.Popen(
        list(destination_cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert source.stdout is not None and source.stderr is not None
    assert destination.stdin is not None and destination.stdout is not None and destination.stderr is not None
    source_out, source_err = source.stdout, source.stderr
    dest_in, dest_out, dest_err = destination.stdin, destination.stdout, destination.stderr
    errors: list[str] = []

    def forward() -> None:
        next_id = 1
        try:
            for line in source_out:
                try:
                    message = json.loads(line)
                except ValueError:
                    dest_in.write(line)
                    continue
                if message.get("type") == "STATE":
                    message["state"]["id"] = next_id  # as the platform does
                    next_id += 1
                    line = json.dumps(message) + "\n"
                result.source_messages.append(message)
                dest_in.write(line)
                dest_in.flush()
        except BrokenPipeError:
            errors.append("the destination closed its stdin before the source finished")
        finally:
            with contextlib.suppress(BrokenPipeError):
                dest_in.close()

    def collect() -> None:
        for line in dest_out:
            if line.strip():
                result.destination_messages.append(json.loads(line))  # every stdout line must be a message

    captured: dict[str, str] = {}
    threads = [
        threading.Thread(target=forward, daemon=True),
        threading.Thread(target=collect, daemon=True),
        threading.Thread(target=lambda: captured.__setitem__("source", source_err.read()), daemon=True),
        threading.Thread(target=lambda: captured.__setitem__("destination", dest_err.read()), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        result.source_returncode = source.wait(timeout=timeout)
        result.destination_returncode = destination.wait(timeout=timeout)
    finally:
        for proc in (source, destination):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for thread in threads:
        thread.join(timeout=30)
    result.source_stderr = captured.get("source", "")
    result.destination_stderr = captured.get("destination", "")
    result.seconds = time.monotonic() - started
    if errors:
        result.destination_stderr += "\n" + "\n".join(errors)
    return result


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file (none when the file does not exist)."""
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)
