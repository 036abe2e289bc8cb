"""Rejected rows sent again through the real entry points: ``replay-rejects`` piped into ``write``.

The case users meet: credits rejected because their activity was not active yet. Once it is, the
stored rows are replayed and credited, and a second replay credits nothing twice.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from helpers import catalog, credit_config

from crowdtwist_sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
MEMBERS = [f"r{i}@example.com" for i in range(4)]


def write(config: Path, catalog_path: Path, stdin: str) -> list[dict[str, Any]]:
    proc = subprocess.run([*MAIN, "write", "--config", str(config), "--catalog", str(catalog_path)], input=stdin,
                          capture_output=True, text=True, env=ENV, timeout=120, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MAIN, "replay-rejects", *args], capture_output=True, text=True, env=ENV, timeout=60,
                          check=False)


def test_rows_rejected_for_an_inactive_activity_are_credited_once_after_replay(sandbox: Sandbox, tmp_path: Path) -> None:
    for email in MEMBERS:
        sandbox.add_member(email_address=email)
    rejects = tmp_path / "rejected.jsonl"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(credit_config(
        sandbox, rejected_records_path=str(rejects), rejected_records_include_pii=True)), encoding="utf-8")
    configured = catalog("append")
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(configured)), encoding="utf-8")
    stream = configured.streams[0].stream.name
    rows = [{"user_id": email, "activity_id": "1001" if i % 2 == 0 else "4242", "num_points": 10 + i,
             "event_id": f"order-{i}"} for i, email in enumerate(MEMBERS)]
    first = "".join(json.dumps({"type": "RECORD", "record": {"stream": stream, "data": r, "emitted_at": 0}}) + "\n"
                    for r in rows)
    write(config, catalog_path, first)
    assert len(sandbox.credits()) == 2  # activity 4242 is not active: two rows rejected and stored
    assert [json.loads(line)["reason_class"] for line in rejects.read_text().splitlines()] == ["invalid_activity"] * 2

    sandbox.add_activity(id="4242", title="Late promotion")  # the fix, made in CrowdTwist
    proc = replay(str(rejects), "--reason", "invalid_activity")
    assert proc.returncode == 0, proc.stderr
    assert "2 rows to replay" in proc.stderr
    write(config, catalog_path, proc.stdout)

    credited = {c["extra_data"]["airbyte_dedupe_key"]: c for c in sandbox.credits()}
    assert sorted(credited) == ["order-0", "order-1", "order-2", "order-3"]
    assert len(sandbox.credits()) == 4

    write(config, catalog_path, replay(str(rejects)).stdout)  # replayed again: verified, not credited twice
    assert len(sandbox.credits()) == 4


def test_a_masked_rejects_file_is_refused_and_prints_no_record(sandbox: Sandbox, tmp_path: Path) -> None:
    masked = tmp_path / "rejected.jsonl"
    masked.write_text(json.dumps({"stream": "credits", "row": 0, "user": "a***@e***.com", "reason_class": "not_found",
                                  "message": "x", "http_status": 404, "record": {"user_id": "a***@e***.com"},
                                  "namespace": None, "name": "credits", "pii": False}) + "\n", encoding="utf-8")

    proc = replay(str(masked))

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "masked" in proc.stderr and "rejected_records_include_pii" in proc.stderr


# --- damaged files and a closed pipe: one line naming the file and line, never a traceback ---------


def stored_line(i: int) -> str:
    """A rejected row as rejected_records_path stores it with rejected_records_include_pii."""
    return json.dumps({"stream": "members", "row": i, "user": f"m{i}@example.com", "reason_class": "custom_attribute",
                       "message": "x", "record": {"user_id": f"m{i}@example.com", "first_name": "Ann", "tier": "gold"},
                       "namespace": None, "name": "members", "pii": True})


def assert_one_line_error(proc: subprocess.CompletedProcess[str], path: Path, *needles: str) -> None:
    assert proc.returncode == 2
    assert proc.stdout == ""  # nothing of a damaged file goes out
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"replay-rejects: {path}")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "m0@example.com" not in proc.stderr  # no stored row is quoted


def test_a_truncated_gz_file_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    whole = gzip.compress("".join(stored_line(i) + "\n" for i in range(3000)).encode())
    path = tmp_path / "rejected.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    proc = replay(str(path))
    assert_one_line_error(proc, path, ", line ", "truncated")
    line = int(proc.stderr.split(", line ", 1)[1].split(":", 1)[0])
    assert 1 < line < 3000  # where the data ran out, not the start of the file


def test_a_corrupted_gz_file_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    data = bytearray(gzip.compress("".join(stored_line(i) + "\n" for i in range(200)).encode()))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # damaged in the middle of the stream
    path = tmp_path / "rejected.jsonl.gz"
    path.write_bytes(bytes(data))
    assert_one_line_error(replay(str(path)), path, ", line ", "corrupted")
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text(stored_line(0) + "\n", encoding="utf-8")
    assert_one_line_error(replay(str(not_gzip)), not_gzip, ", line 1:", "corrupted")


def test_a_record_nested_100000_deep_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    deep = '{"x": ' * 100_000 + '"leaf"' + "}" * 100_000
    path = tmp_path / "rejected.jsonl"
    path.write_text(f"{stored_line(0)}\n" + stored_line(1).replace('"tier": "gold"', f'"tier": {deep}') + "\n",
                    encoding="utf-8")
    assert_one_line_error(replay(str(path)), path, ", line 2:", "nested too deeply")


def test_a_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    good = tmp_path / "rejected.jsonl"
    good.write_text(stored_line(0) + "\n", encoding="utf-8")
    missing = tmp_path / "missing.jsonl"
    assert_one_line_error(replay(str(good), str(missing)), missing, "cannot be read")


def test_a_closed_output_pipe_is_a_quiet_exit(tmp_path: Path) -> None:
    path = tmp_path / "rejected.jsonl"
    path.write_text("".join(stored_line(i) + "\n" for i in range(3000)), encoding="utf-8")  # > a pipe's buffer
    proc = subprocess.Popen([*MAIN, "replay-rejects", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away (as `| head` does) before reading anything
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""  # quiet: no traceback, no "Exception ignored" at exit
