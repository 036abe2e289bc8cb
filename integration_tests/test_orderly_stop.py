"""Fatal and stop paths end in order, through the real entry point (``python main.py write``).

The platform must see the sync's own error (a TRACE message and exit code 1), never a crash: no
SIGABRT (exit -6), no "Fatal Python error" on stderr, and no wait that outlives SIGTERM's grace.

The source is still sending in every case: its pipe stays open and a record arrives every
``FILLER_SECONDS`` until the connector exits, as a source that is slower than the destination does.
That is what turned these stops into aborts: the input reader thread was blocked in a read of
``sys.stdin.buffer`` holding the buffered reader's lock, and interpreter finalization, closing
stdin, could not take it ("Fatal Python error: _enter_buffered_busy", SIGABRT).

Each case runs a few times here (``make test``) and 50 times in the soak (``make soak``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import credit_config
from moto_s3 import MotoS3

from crowdtwist_sandbox import Sandbox, SandboxOptions

ROOT = Path(__file__).resolve().parents[1]
MAIN = [sys.executable, str(ROOT / "main.py")]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SANDBOX_API_KEY = "ctsbx_3f9a2c7e1b8d4e6f9a0b3c5d7e9f1a2b"
#: How often the still-sending source sends one more record.
FILLER_SECONDS = 1.0
#: How long a stop may take from its cause to the exit (the grace of SIGTERM is 5 s).
EXIT_WITHIN = 15.0
#: How long the source waits for state 1 before giving up on a run (start-up alone, importing the
#: CDK, took over 15 s with four runs at once on a busy 2-core machine).
STATE_WAIT = 120.0
#: Runs per case in make test, and in the soak.
QUICK_RUNS, SOAK_RUNS = 2, 50
#: Runs at once (each is a connector process plus a sandbox thread).
PARALLEL = 4


def _record(i: int, *, bad: bool = False) -> bytes:
    data = {"user_id": f"p{i}@example.com", "first_name": "Eve", "last_name": "Ng", "postal_code": "10010"}
    if bad:
        data["postal_code"] = "ABC"  # rejected before any request: lands in the reject sinks
    return json.dumps({"type": "RECORD", "record": {"stream": "users", "emitted_at": 0, "data": data}}).encode()


def _state(state_id: int) -> bytes:
    return json.dumps({"type": "STATE", "state": {"type": "STREAM", "id": state_id, "stream": {
        "stream_descriptor": {"name": "users"}, "stream_state": {"cursor": state_id}}}}).encode()


CATALOG = {"streams": [{
    "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
    "sync_mode": "full_refresh", "destination_sync_mode": "append_dedup",
}]}


@dataclass
class Run:
    """What one run left: exit code, stderr, protocol messages, seconds from the cause to the exit."""

    returncode: int | None
    stderr: str
    messages: list[dict[str, Any]]
    seconds: float
    problems: list[str] = field(default_factory=list)

    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.messages
                if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"]


@dataclass(frozen=True)
class StopCase:
    """One way a sync stops: its config, what the source sends, what stops it, the expected error.

    ``first``: the lines sent at once; the case's ``trigger`` runs once state 1 is echoed, then
    ``after`` is sent, and then a filler record every FILLER_SECONDS until the connector exits.
    """

    name: str
    failure_type: str
    message: str  # a fragment of the TRACE's message
    first: tuple[bytes, ...]
    after: tuple[bytes, ...] = ()
    storage: str | None = None  # "admin" or "nobody": rejected rows go to a moto bucket with these keys


def _block(start: int, count: int, *, bad: int | None = None) -> tuple[bytes, ...]:
    return tuple(_record(i, bad=(i == bad)) for i in range(start, start + count))


CASES = [
    # The key is revoked mid-sync; the next request is refused (403): a config error.
    StopCase("403-mid-sync", "config_error", "refused the credentials",
             first=(*_block(0, 5), _state(1)), after=_block(100, 5)),
    # The platform stops the sync while the source is still sending.
    StopCase("sigterm", "transient_error", "SIGTERM", first=(*_block(0, 5), _state(1))),
    # The rejected-rows bucket is deleted after state 1; state 2's rejected row cannot be stored.
    StopCase("bucket-deleted-mid-sync", "config_error", "does not exist",
             first=(*_block(0, 3, bad=1), _state(1)), after=(*_block(100, 2, bad=100), _state(2)), storage="admin"),
    # The credentials may not PutObject: the first upload (at state 1) is refused.
    StopCase("put-object-denied", "config_error", "was denied",
             first=(*_block(0, 3, bad=1), _state(1)), storage="nobody"),
]


def run_case(case: StopCase, tmp: Path, moto: MotoS3 | None) -> Run:
    """Run one stop case once against its own sandbox (and bucket)."""
    with Sandbox(SandboxOptions(api_key=SANDBOX_API_KEY)) as sandbox:
        extra: dict[str, Any] = {"max_concurrency": 2}
        bucket = None
        if case.storage is not None:
            assert moto is not None
            bucket = f"stop-{uuid.uuid4().hex[:12]}"
            moto.create_bucket(bucket)
            keys = moto.admin if case.storage == "admin" else moto.nobody
            extra["object_storage_config"] = moto.storage_config(bucket, keys=keys, bucket_path="dlq")
            extra["reject_stop_sample"] = 0
        config = credit_config(sandbox, object_type="user_profile", **extra)
        (tmp / "config.json").write_text(json.dumps(config))
        (tmp / "catalog.json").write_text(json.dumps(CATALOG))
        trigger: Callable[[subprocess.Popen[bytes]], object]
        if case.name == "403-mid-sync":
            trigger = lambda _proc: sandbox.set_options(api_key="revoked-" + SANDBOX_API_KEY)  # noqa: E731
        elif case.name == "sigterm":
            trigger = lambda proc: proc.send_signal(signal.SIGTERM)  # noqa: E731
        elif case.name == "bucket-deleted-mid-sync":
            assert moto is not None and bucket is not None
            trigger = lambda _proc: moto.delete_bucket(bucket)  # noqa: E731
        else:
            trigger = lambda _proc: None  # noqa: E731 - the first upload fails by itself
        return _run(tmp, case, trigger)


def _run(tmp: Path, case: StopCase, trigger: Callable[[subprocess.Popen[bytes]], object]) -> Run:
    proc = subprocess.Popen(
        [*MAIN, "write", "--config", str(tmp / "config.json"), "--catalog", str(tmp / "catalog.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr_pipe = proc.stdin, proc.stdout, proc.stderr
    state_one = threading.Event()
    triggered_at: list[float] = []
    stderr_chunks: list[bytes] = []
    raw: list[bytes] = []
    problems: list[str] = []

    def send(lines: tuple[bytes, ...]) -> None:
        stdin.write(b"".join(line + b"\n" for line in lines))
        stdin.flush()

    def source() -> None:
        # The source: first block, then (once state 1 is echoed or the connector ended) the trigger,
        # the rest, and a record every FILLER_SECONDS, never closing its end of the pipe.
        try:
            send(case.first)
            if not state_one.wait(timeout=STATE_WAIT):
                problems.append(f"state 1 was not echoed within {STATE_WAIT:.0f} s")
                return  # never stop a connector that is still starting: that tests nothing
            triggered_at.append(time.monotonic())
            if proc.poll() is None:
                trigger(proc)
            send(case.after)
            i = 1000
            while proc.poll() is None:
                time.sleep(FILLER_SECONDS)
                send((_record(i),))
                i += 1
        except (BrokenPipeError, ValueError, OSError):
            pass  # the connector exited

    def read_stdout() -> None:
        for line in stdout:
            raw.append(line)
            if b'"STATE"' in line:
                state_one.set()
        state_one.set()

    threads = [threading.Thread(target=source, daemon=True), threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=lambda: stderr_chunks.append(stderr_pipe.read()), daemon=True)]
    for thread in threads:
        thread.start()
    try:
        proc.wait(timeout=STATE_WAIT + EXIT_WITHIN + 30)
    except subprocess.TimeoutExpired:
        problems.append("the connector did not exit (hung)")
        proc.kill()
        proc.wait()
    ended = time.monotonic()
    # The source too: it notes when it stopped the sync, and may not have got there yet on a busy machine.
    for thread in threads:
        thread.join(timeout=10)
    with contextlib.suppress(OSError):
        stdin.close()
    messages = [json.loads(line) for line in raw if line.strip()]
    seconds = ended - triggered_at[0] if triggered_at else float("nan")
    return Run(proc.returncode, b"".join(stderr_chunks).decode("utf-8", "replace"), messages, seconds, problems)


def judge(case: StopCase, run: Run) -> list[str]:
    """What is wrong with one run (empty: an orderly stop with the case's error)."""
    problems = list(run.problems)
    if run.returncode != 1:
        problems.append(f"exit code {run.returncode}, not 1")
    if "Fatal Python error" in run.stderr:
        problems.append("'Fatal Python error' on stderr: " + run.stderr[-300:])
    if not run.seconds < EXIT_WITHIN:
        problems.append(f"exit {run.seconds:.1f}s after the cause")
    errors = run.errors()
    if len(errors) != 1:
        problems.append(f"{len(errors)} error traces")
    elif errors[0]["failure_type"] != case.failure_type or case.message not in errors[0]["message"]:
        problems.append(f"unexpected trace: {errors[0]['failure_type']}: {errors[0]['message'][:200]}")
    return problems


def run_many(cases: list[StopCase], runs: int, tmp_path: Path, moto: MotoS3 | None) -> None:
    """Run each case ``runs`` times (PARALLEL at once) and fail with every run that did not stop in order."""
    jobs = [(case, index) for case in cases for index in range(runs)]

    def one(job: tuple[StopCase, int]) -> tuple[str, list[str]]:
        case, index = job
        tmp = tmp_path / f"{case.name}-{index}"
        tmp.mkdir()
        return f"{case.name} #{index}", judge(case, run_case(case, tmp, moto))

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(one, jobs))
    failed = [(name, problems) for name, problems in results if problems]
    assert not failed, f"{len(failed)} of {len(jobs)} runs did not stop in order: {failed[:8]}"


@pytest.mark.timeout(300)
def test_fatal_stops_while_the_source_is_still_sending_exit_in_order(tmp_path: Path, moto_s3: MotoS3) -> None:
    """Every case QUICK_RUNS times, all in one pool: seconds, not minutes, in make test."""
    run_many(CASES, QUICK_RUNS, tmp_path, moto_s3)


@pytest.mark.soak
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_soak_each_fatal_stop_50_times_exits_in_order(case: StopCase, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    moto = request.getfixturevalue("moto_s3") if case.storage is not None else None
    run_many([case], SOAK_RUNS, tmp_path, moto)


@pytest.mark.timeout(240)
def test_sigterm_while_workers_wait_out_429s_exits_within_the_grace(tmp_path: Path, sandbox_factory: Any) -> None:
    """Every request waits out a 429 whose Retry-After is a minute long (the program's limit of 4
    requests a minute is used up): SIGTERM ends those waits, and the process exits within the grace
    period with the SIGTERM trace, not after the Retry-After.
    """
    sandbox = sandbox_factory(rate_limit_per_minute=4, rate_limit_algorithm="sliding_window")
    config = credit_config(sandbox, object_type="user_profile", max_concurrency=4, max_retry_wait_seconds=60)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(CATALOG))
    (tmp_path / "input.jsonl").write_bytes(b"".join(line + b"\n" for line in (*_block(0, 12), _state(1))))
    with (tmp_path / "input.jsonl").open("rb") as stdin:
        proc = subprocess.Popen(
            [*MAIN, "write", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
        )
    try:
        deadline = time.monotonic() + STATE_WAIT
        # One 429 with a long Retry-After pauses every worker (the rate budget); the refused one waits too.
        while sandbox.request_counts().get("429", 0) < 1:
            assert time.monotonic() < deadline and proc.poll() is None, f"no 429 within {STATE_WAIT:.0f} s"
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=EXIT_WITHIN + 15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {EXIT_WITHIN + 15:.0f} s of SIGTERM while requests waited out 429s")
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    messages = [json.loads(line) for line in out.splitlines() if line.strip()]
    run = Run(proc.returncode, err.decode("utf-8", "replace"), messages, elapsed)
    case = StopCase("sigterm-during-429-wait", "transient_error", "SIGTERM", first=())
    assert judge(case, run) == []
    assert elapsed < 5.0 + 5.0  # the 5 s grace (nothing is on the wire: the waits end at once), plus slack
    assert [m for m in messages if m["type"] == "STATE"] == []  # state 1's rows never settled


@pytest.mark.timeout(180)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (os.mkfifo) are POSIX only")
def test_a_reject_path_that_is_a_fifo_without_reader_is_a_config_error_not_a_hang(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    sandbox = sandbox_factory()
    fifo = tmp_path / "rejects.jsonl"
    os.mkfifo(fifo)
    config = credit_config(sandbox, object_type="user_profile", rejected_records_path=str(fifo))
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(CATALOG))
    lines = b"".join(line + b"\n" for line in (*_block(0, 3, bad=1), _state(1)))
    try:
        out = subprocess.run(
            [*MAIN, "write", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
            input=lines, capture_output=True, env=ENV, timeout=STATE_WAIT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the sync hung on a reject path that is a FIFO nothing reads")
    messages = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    # seconds=0: no stop to time here (the refusal comes before the first row); a hang is the timeout above.
    run = Run(out.returncode, out.stderr.decode("utf-8", "replace"), messages, 0.0)
    case = StopCase("fifo-reject-path", "config_error", "is a named pipe (FIFO) that nothing reads", first=())
    assert judge(case, run) == []
    assert sandbox.request_counts()["total"] == 0  # refused before the first row
    assert [m for m in messages if m["type"] == "STATE"] == []
