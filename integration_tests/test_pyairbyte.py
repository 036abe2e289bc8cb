"""PyAirbyte runs the connector: the recipe of docs/crowdtwist.md ("Using PyAirbyte"), tested.

PyAirbyte (PyPI ``airbyte``, pinned below) is installed into its own cached venv
(``.venv-pyairbyte/``, see tool_venv.py; about 780 MB). Its python runs pyairbyte_recipe.py, which
takes the real source-faker (its own venv, see faker_source.py; 30 users, seed 42, a state every 10
records) and writes it with ``destination.write(source, cache=False, state_cache=...)`` through our
``destination-crowdtwist`` console script into the local CrowdTwist sandbox, classic configuration
(``object_type: user_profile``, ``user_identifier_type: email``, faker's ``email`` mapped to ``user_id``).

``local_executable`` points at a wrapper (written here) that records each call PyAirbyte makes (the
command, the configured catalog, the mode of the config file it was handed, a copy of the ``write``
input) and then runs the console script. What PyAirbyte 0.71.3 was seen to send, and what the test
holds it to:

- ``destination_sync_mode``: ``append_dedup`` with the default write strategy (faker's ``users``
  has a primary key), ``overwrite`` with ``WriteStrategy.REPLACE`` (refused by the connector with a
  configuration error before any row is written); never ``destination_object_name``;
  ``generation_id = minimum_generation_id = sync_id = 1``.
- the source's records and states unchanged (no ``_airbyte_*`` columns with ``cache=False``), the
  states without the ``id`` the platform adds.
- the connector config in a temporary file readable by everyone (mode 0444), deleted after the run.

The source's configuration and the destination's are the ones of the documented ``sync.py``, read
from docs/crowdtwist.md (``test_the_documented_recipe_is_the_one_the_test_runs``), plus two test-only
faker knobs (``TEST_ONLY_FAKER_CONFIG``): issue 18 found the docs' recipe creating 30 more members on
its second run while this test, with its own faker config, saw none.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from faker_source import iter_jsonl, location_rejected_ids
from tool_venv import ROOT, InstallReport, ToolUnavailable, ensure_tool_venv, tool_venv_root

from crowdtwist_sandbox import DEFAULT_API_KEY, Sandbox, SandboxOptions
from destination_crowdtwist.records.rejection import Reason

# Pinned: the recipe uses get_source/get_destination(local_executable=...), Destination.write's
# cache/state_cache/write_strategy and airbyte.strategies.WriteStrategy, and the test reads
# WriteResult internals (the confirmed count); a new version may move any of them.
PYAIRBYTE_REQUIREMENT = "airbyte==0.71.3"
PYAIRBYTE_VENV = tool_venv_root() / ".venv-pyairbyte"
# PyAirbyte 0.71.3 declares Requires-Python >=3.10,<3.13; the venv is built with this interpreter.
PYAIRBYTE_PYTHONS = ((3, 10), (3, 12))
RECIPE = Path(__file__).with_name("pyairbyte_recipe.py")
DESTINATION = Path(sys.executable).parent / "destination-crowdtwist"
SCRIPT_TIMEOUT_SECONDS = 300

USERS = 30
SEED = 42
RECORDS_PER_SLICE = 10  # faker emits a state per 10 records, so the destination gets several checkpoints
FIELD_MAPPING = [
    {"source": "email", "destination": "user_id"},
    {"source": "name", "destination": "first_name"},
    {"source": "name", "destination": "last_name"},  # faker has no surname; CrowdTwist requires one
    {"source": "address.postal_code", "destination": "postal_code"},
    {"source": "address.country_code", "destination": "country_code"},
    {"source": "address.city", "destination": "city_name"},
]
PYAIRBYTE_MODES = {"append", "append_dedup", "overwrite"}
DOCS = ROOT / "docs" / "crowdtwist.md"
# Not in the documented recipe, and no change to what it does: several checkpoints per run (so the
# confirmed count sums several states) and one worker (a stable record order).
TEST_ONLY_FAKER_CONFIG = {"records_per_slice": RECORDS_PER_SLICE, "parallelism": 1}


def documented_recipe() -> ast.Module:
    """The ``sync.py`` of docs/crowdtwist.md's "Using PyAirbyte" section, parsed."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("\n## Using PyAirbyte\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("`sync.py`:\n\n```python\n", 1)[1].split("\n```", 1)[0]
    return ast.parse(block)


def _keywords(tree: ast.Module, function: str) -> dict[str, ast.expr]:
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == function]
    assert len(calls) == 1, f"the documented recipe calls {function} {len(calls)} times"
    return {str(kw.arg): kw.value for kw in calls[0].keywords}


def documented_faker_config() -> dict[str, Any]:
    config: dict[str, Any] = ast.literal_eval(_keywords(documented_recipe(), "get_source")["config"])
    return config


def _imports_airbyte(python: Path) -> bool:
    if not python.exists():
        return False
    try:
        out = subprocess.run([str(python), "-c", "import airbyte"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


@pytest.fixture(scope="session")
def pyairbyte() -> InstallReport:
    """PyAirbyte's python in its own cached venv; skips (with pip's reason) when it cannot be installed."""
    low, high = PYAIRBYTE_PYTHONS
    if not low <= sys.version_info[:2] <= high:
        pytest.skip(
            f"{PYAIRBYTE_REQUIREMENT} supports Python {low[0]}.{low[1]} to {high[0]}.{high[1]}; "
            f"this interpreter is {sys.version_info[0]}.{sys.version_info[1]}"
        )
    try:
        report = ensure_tool_venv(
            PYAIRBYTE_VENV, PYAIRBYTE_REQUIREMENT, "python", _imports_airbyte,
            probe_description="`import airbyte` fails",
        )
    except ToolUnavailable as exc:
        pytest.skip(str(exc))
    how = "reused cached venv" if report.reused else f"installed in {report.seconds:.1f} s"
    print(f"PyAirbyte: {how} ({report.executable})")
    return report


_WRAPPER = '''#!{python}
"""local_executable for PyAirbyte: records each call, then runs destination-crowdtwist (test_pyairbyte.py)."""
import json, os, subprocess, sys
from pathlib import Path

CAPTURE = Path({capture!r})
DESTINATION = {destination!r}
args = sys.argv[1:]
call = {{"command": args[0] if args else None}}
if "--config" in args:
    config = Path(args[args.index("--config") + 1])
    call["config_path"] = str(config)
    call["config_mode"] = oct(config.stat().st_mode & 0o777)
if "--catalog" in args:
    call["catalog"] = json.loads(Path(args[args.index("--catalog") + 1]).read_text())
if call["command"] == "write":
    call["input"] = str(CAPTURE / f"write-input-{{os.getpid()}}.jsonl")
with open(CAPTURE / "calls.jsonl", "a") as calls:
    calls.write(json.dumps(call) + "\\n")
if call["command"] != "write":
    os.execv(DESTINATION, [DESTINATION, *args])
# write: copy stdin line by line to the connector (flushing, so it streams as PyAirbyte sends) and to a file.
proc = subprocess.Popen([DESTINATION, *args], stdin=subprocess.PIPE)
with open(call["input"], "wb") as copy:
    try:
        for line in sys.stdin.buffer:
            copy.write(line)
            proc.stdin.write(line)
            proc.stdin.flush()
    except BrokenPipeError:
        pass  # the connector stopped reading (it failed); its exit code says why
try:
    proc.stdin.close()
except BrokenPipeError:
    pass
sys.exit(proc.wait())
'''


def _write_wrapper(capture: Path) -> Path:
    wrapper = capture / "destination-crowdtwist-wrapper"
    wrapper.write_text(_WRAPPER.format(python=sys.executable, capture=str(capture), destination=str(DESTINATION)))
    wrapper.chmod(0o755)
    return wrapper


def _destination_config(sb: Sandbox, rejects: Path) -> dict[str, Any]:
    return _destination_config_for(sb.base_url, rejects)


def _destination_config_for(base_url: str, rejects: Path) -> dict[str, Any]:
    return {
        "api_base_url": base_url,
        "credentials": {"auth_type": "api_key", "api_key": DEFAULT_API_KEY},
        "object_type": "user_profile",
        "user_identifier_type": "email",
        "field_mapping": FIELD_MAPPING,
        "unmapped_fields": "drop",  # custom attributes are not set up in the sandbox
        "rejected_records_path": str(rejects),
        "rejected_records_include_pii": True,  # a temp file; the test matches rows by faker id
        "progress_interval_seconds": 0,
    }


def _summary(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1, stdout[-3000:]
    summary: dict[str, Any] = json.loads(lines[0].removeprefix("SUMMARY "))
    return summary


def test_the_documented_recipe_is_the_one_the_test_runs() -> None:
    """What docs/crowdtwist.md tells a user to run is what the PyAirbyte test below runs."""
    recipe = documented_recipe()
    faker = documented_faker_config()
    assert (faker["count"], faker["seed"]) == (USERS, SEED)
    # source-faker re-emits every user with a new email on each run unless always_updated is off: the
    # recipe's second run would then create USERS more members instead of reading nothing.
    assert faker.get("always_updated") is False
    assert not set(TEST_ONLY_FAKER_CONFIG) & set(faker)
    assert ast.literal_eval(_keywords(recipe, "get_source")["streams"]) == ["users"]
    destination = ast.literal_eval(_keywords(recipe, "get_destination")["config"])
    ours = _destination_config_for("http://127.0.0.1", Path("rejected.jsonl"))
    for key in ("object_type", "user_identifier_type", "field_mapping", "unmapped_fields"):
        assert destination[key] == ours[key], key
    write = _keywords(recipe, "write")
    assert ast.literal_eval(write["cache"]) is False
    assert ast.unparse(write["state_cache"]).startswith("ab.new_local_cache(")


@pytest.mark.slow
@pytest.mark.tools
@pytest.mark.timeout(1200)  # a first run installs source-faker and PyAirbyte inside this test's setup
def test_pyairbyte_writes_source_faker_users_through_local_executable(
    tmp_path: Path, pyairbyte: InstallReport, source_faker: InstallReport
) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    wrapper = _write_wrapper(capture)
    # PyAirbyte writes the connector config (with the API key) to a temporary file: keep it private.
    private_tmp = tmp_path / "pyairbyte-tmp"
    private_tmp.mkdir(mode=0o700)
    logs = tmp_path / "pyairbyte-logs"
    rejects = tmp_path / "rejected.jsonl"
    env = {
        **os.environ,
        "AIRBYTE_OFFLINE_MODE": "1",  # no registry lookup (no internet here), no telemetry
        "DO_NOT_TRACK": "1",
        "AIRBYTE_LOGGING_ROOT": str(logs),
        "AIRBYTE_TEMP_DIR": str(private_tmp),
        "AIRBYTE_PROJECT_DIR": str(tmp_path),  # the default cache (.cache/) would land in the cwd
        "AIRBYTE_CACHE_ROOT": str(tmp_path / "cache"),
    }
    with Sandbox(SandboxOptions(api_key=DEFAULT_API_KEY)) as sb:
        config_path = tmp_path / "destination.json"
        config_path.write_text(json.dumps(_destination_config(sb, rejects)))
        plan = {
            "faker_executable": str(source_faker.executable),
            "faker_config": {**documented_faker_config(), **TEST_ONLY_FAKER_CONFIG},
            "destination_executable": str(wrapper),
            "destination_config_path": str(config_path),
            "state_cache_dir": str(tmp_path / "state"),
            "members_url": f"{sb.base_url}/__sandbox/members",
        }
        plan_path = tmp_path / "plan.json"
        plan_path.write_text(json.dumps(plan))
        started = time.monotonic()
        run = subprocess.run(
            [str(pyairbyte.executable), str(RECIPE), str(plan_path)],
            capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECONDS, cwd=tmp_path, env=env,
        )
        seconds = time.monotonic() - started
        members = sb.members()
    print(f"PyAirbyte recipe ran {seconds:.1f} s")
    assert run.returncode == 0, run.stderr[-4000:]
    summary = _summary(run.stdout)
    print(json.dumps(summary, indent=1))
    assert summary["pyairbyte_version"] == PYAIRBYTE_REQUIREMENT.split("==")[1]

    # What PyAirbyte sent: one call per step, in order, with the catalogs and inputs recorded.
    calls = list(iter_jsonl(capture / "calls.jsonl"))
    assert [c["command"] for c in calls] == ["check", "write", "write", "write"], calls
    catalogs = [c["catalog"] for c in calls if c["command"] == "write"]
    for catalog in catalogs:
        [stream] = catalog["streams"]
        assert stream["destination_sync_mode"] in PYAIRBYTE_MODES
        assert "destination_object_name" not in stream
        assert stream["stream"]["name"] == "users" and stream["primary_key"] == [["id"]]
        assert (stream["generation_id"], stream["minimum_generation_id"], stream["sync_id"]) == (1, 1, 1)
    assert [c["streams"][0]["destination_sync_mode"] for c in catalogs] == ["overwrite", "append_dedup", "append_dedup"]

    # Step overwrite: PyAirbyte reports a write error, the connector says why, nothing was written.
    assert summary["overwrite"]["error"] == "AirbyteConnectorWriteError"
    assert summary["overwrite"]["members"] == 0
    refusal = "uses destination sync mode 'overwrite', which CrowdTwist cannot support"
    assert refusal in " ".join(run.stderr.split())  # rich wraps PyAirbyte's stderr at 80 columns
    connector_logs = sorted((logs / "destination-crowdtwist").glob("*.log"))
    assert any(refusal in log.read_text(errors="replace") for log in connector_logs), connector_logs

    # Step first: faker's records and states as the connector received them.
    first_input = [json.loads(line) for line in Path(calls[2]["input"]).read_text().splitlines() if line.strip()]
    users = [m["record"]["data"] for m in first_input if m["type"] == "RECORD"]
    states = [m["state"] for m in first_input if m["type"] == "STATE"]
    assert len(users) == USERS and len({u["email"].lower() for u in users}) == USERS
    assert len(states) >= 2, "several checkpoints, so the confirmed count sums several states"
    assert all("id" not in state for state in states)  # PyAirbyte does not number states
    assert not [k for u in users for k in u if k.startswith("_airbyte_")]  # cache=False: rows as read

    # Members: one per accepted row; rejections exactly the rows CrowdTwist's location rule refuses.
    expected_rejected = location_rejected_ids(users)
    rejected_rows = list(iter_jsonl(rejects))
    assert {row["record"]["id"] for row in rejected_rows} == expected_rejected
    assert {row["reason_class"] for row in rejected_rows} <= {Reason.LOCATION.value}
    accepted_users = [u for u in users if u["id"] not in expected_rejected]
    assert len(members) == len(accepted_users) == summary["first"]["members"]
    assert {m["email_address"] for m in members} == {u["email"].lower() for u in accepted_users}

    # What PyAirbyte reports is consistent with that: delivered = every row (rejected ones included),
    # confirmed = the destinationStats.recordCount of the echoed states = the accepted rows, and the
    # stored state is the source's last one (the destination echoed it).
    first = summary["first"]
    assert first["processed_records"] == USERS
    assert first["confirmed_records"] == {"users": len(accepted_users)}
    [stored] = first["stored_states"]
    assert stored["stream_descriptor"]["name"] == "users"
    assert stored["stream_state"] == states[-1]["stream"]["stream_state"]

    # Step second: the source resumed from the stored state, so nothing new was sent or written.
    second_input = [json.loads(line) for line in Path(calls[3]["input"]).read_text().splitlines() if line.strip()]
    assert [m for m in second_input if m["type"] == "RECORD"] == []
    assert summary["second"]["processed_records"] == 0
    assert summary["second"]["members"] == len(accepted_users)

    # Secrets: the API key is in no output and no log, and its temporary file is gone. PyAirbyte
    # makes that file readable by everyone (0444) while the connector runs, which is why
    # docs/crowdtwist.md says to point AIRBYTE_TEMP_DIR at a private directory; if this changes,
    # update the doc.
    assert DEFAULT_API_KEY not in run.stdout and DEFAULT_API_KEY not in run.stderr
    log_files = [p for p in logs.rglob("*") if p.is_file()]
    assert log_files, "PyAirbyte wrote no log under AIRBYTE_LOGGING_ROOT"
    for log_file in log_files:
        assert DEFAULT_API_KEY not in log_file.read_text(errors="replace"), log_file
    assert {Path(c["config_path"]).parent for c in calls} == {private_tmp}
    assert {c["config_mode"] for c in calls} == {"0o444"}
    assert list(private_tmp.iterdir()) == []
