"""The sample configuration for the sandbox (examples/config.sandbox.json), as README.md and docs/deploy.md
use it: `check` and `write` through the real entry point against the sandbox, and real configs kept
out of git.

The sample names port 8765, the port the docs start the sandbox on; here the sandbox runs on a free
port and only the port of ``api_base_url`` is changed, so every other setting is the sample's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tool_venv import ROOT, TOOL_VENVS_ENV, tool_venv_root

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions

SAMPLE = ROOT / "examples" / "config.sandbox.json"
CONNECTOR = Path(sys.executable).parent / "destination-crowdtwist"
DOCUMENTED_PORT = 8765


def _sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return loaded


def _run(args: list[str], stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    data = stdin.read_text(encoding="utf-8") if stdin else ""
    return subprocess.run([str(CONNECTOR), *args], input=data, capture_output=True, timeout=300,
                          check=False, text=True, cwd=ROOT)


def test_the_sample_is_the_sandbox_s_and_names_the_documented_port() -> None:
    sample = _sample()
    url = urlsplit(sample["api_base_url"])
    assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", DOCUMENTED_PORT)
    assert sample["credentials"] == {"auth_type": "api_key", "api_key": DEFAULT_API_KEY}
    for doc in ("README.md", "docs/deploy.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert f"crowdtwist-sandbox --port {DOCUMENTED_PORT}" in text, doc
        assert "examples/config.sandbox.json" in text, doc


def test_the_sample_config_checks_and_writes_the_example_rows(tmp_path: Path) -> None:
    sample = _sample()
    with Sandbox(SandboxOptions(api_key=DEFAULT_API_KEY, custom_attributes=tuple(sample["custom_attributes"]))) as sb:
        config = {**sample, "api_base_url": sb.base_url}
        config_path = tmp_path / "config.json"
        config_path.write_text(json.dumps(config))
        check = _run(["check", "--config", str(config_path)])
        statuses = [json.loads(line)["connectionStatus"]["status"] for line in check.stdout.splitlines()
                    if '"CONNECTION_STATUS"' in line]
        assert statuses == ["SUCCEEDED"], check.stdout[-2000:] + check.stderr[-2000:]

        write = _run(["write", "--config", str(config_path), "--catalog", "examples/catalog_users.json"],
                     stdin=ROOT / "examples" / "users.jsonl")
        assert write.returncode == 0, write.stdout[-3000:] + write.stderr[-3000:]
        members = sb.members()
    states = [json.loads(line)["state"] for line in write.stdout.splitlines() if '"type": "STATE"' in line
              or '"type":"STATE"' in line]
    lines = (ROOT / "examples" / "users.jsonl").read_text(encoding="utf-8").splitlines()
    sent_states = [i for i, line in enumerate(lines) if '"STATE"' in line]
    assert len(states) == len(sent_states) > 0
    records_before_last_state = sum(1 for line in lines[: sent_states[-1]] if '"RECORD"' in line)
    accepted = sum(s["destinationStats"]["recordCount"] for s in states)
    rejected = sum(s["destinationStats"].get("rejectedRecordCount", 0) for s in states)
    # Every row is settled and counted once; the example holds bad rows on purpose.
    assert accepted + rejected == records_before_last_state
    assert accepted > 0 and rejected > 0 and len(members) >= accepted
    assert DEFAULT_API_KEY not in write.stdout + write.stderr


def test_real_configs_are_git_ignored_and_the_sample_is_not() -> None:
    def ignored(path: str) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, timeout=30, check=False)
        assert proc.returncode in (0, 1), proc
        return proc.returncode == 0

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: .gitignore does not apply")
    for path in ("secrets/config.json", "secrets/hmac.json", ".env", ".env.local", ".cache/default_cache/x.duckdb"):
        assert ignored(path), path
    assert not ignored("examples/config.sandbox.json")


def test_tool_venvs_live_in_the_checkout_unless_a_shared_directory_is_named(tmp_path: Path) -> None:
    assert tool_venv_root({}) == ROOT
    assert tool_venv_root({TOOL_VENVS_ENV: "  "}) == ROOT
    assert tool_venv_root({TOOL_VENVS_ENV: str(tmp_path)}) == tmp_path.resolve()
