"""Admin HTTP surface, in-process helpers, lifecycle speed, the CLI and the load-test script."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sandbox_test_helpers import API_KEY, Api, FakeClock
from sandboxes import SandboxFactory

from crowdtwist_sandbox import Sandbox, SandboxOptions
from crowdtwist_sandbox.cli import build_parser, options_from_args
from crowdtwist_sandbox.loadtest import measure


def admin(sb: Sandbox, method: str, name: str, body: object = None) -> requests.Response:
    return requests.request(method, f"{sb.base_url}/__sandbox/{name}", json=body, timeout=5)


# --------------------------------------------------------------------------- admin HTTP surface
def test_admin_seed_and_read(sandbox: Sandbox) -> None:
    seeded = admin(sandbox, "POST", "members", {"email_address": "s@example.com", "first_name": "S",
                                                "last_name": "T", "total_points": 40, "id": 123})  # fmt: skip
    assert seeded.status_code == 200
    assert (seeded.json()["id"], seeded.json()["total_points"]) == (123, 40)
    activity = admin(sandbox, "POST", "activities", {"id": "2001", "title": "Review", "num_points": 5, "freq_cap": 3})
    assert activity.json()["freq_cap"] == 3
    api = Api(sandbox.base_url)
    assert api.post("/v2/users/123/activities", {"activity_id": "2001"}).json()["awarded"] is True
    members = admin(sandbox, "GET", "members").json()
    assert [(m["id"], m["total_points"]) for m in members] == [(123, 45)]
    credits = admin(sandbox, "GET", "credits").json()
    assert [(c["user_id"], c["activity_id"], c["num_points"]) for c in credits] == [(123, "2001", 5)]
    counters = admin(sandbox, "GET", "counters").json()
    assert counters["POST /v2/users/{id}/activities"] == 1
    assert counters["total"] == 1
    assert [a["id"] for a in admin(sandbox, "GET", "activities").json()][-1] == "2001"


def test_admin_options_and_reset(sandbox: Sandbox) -> None:
    changed = admin(sandbox, "POST", "options", {"rate_limit_per_minute": 1, "retry_after": False})
    assert changed.status_code == 200
    assert changed.json()["rate_limit_per_minute"] == 1
    api = Api(sandbox.base_url)
    assert [api.get("/v2/activities").status_code for _ in range(2)] == [200, 429]
    assert admin(sandbox, "GET", "options").json()["retry_after"] is False
    admin(sandbox, "POST", "members", {"email_address": "s@example.com", "first_name": "S", "last_name": "T"})
    assert admin(sandbox, "POST", "reset").json() == {"ok": True}
    assert admin(sandbox, "GET", "members").json() == []
    assert admin(sandbox, "GET", "counters").json()["total"] == 0
    assert admin(sandbox, "POST", "options", {"maintenance_seconds": 60}).json()["maintenance_window"] is not None
    assert api.get("/v2/activities").status_code == 503


def test_admin_delete_member_frees_its_identifiers(sandbox: Sandbox) -> None:
    """A member deleted outside the connector: the API answers 404 for it and the email can be taken again."""
    seeded = admin(sandbox, "POST", "members", {"email_address": "d@example.com", "first_name": "D", "last_name": "T"})
    member_id = seeded.json()["id"]
    deleted = admin(sandbox, "DELETE", f"members/{member_id}")
    assert (deleted.status_code, deleted.json()["email_address"]) == (200, "d@example.com")
    api = Api(sandbox.base_url)
    assert api.get("/v2/users/d@example.com?id_type=email").status_code == 404
    assert admin(sandbox, "DELETE", f"members/{member_id}").status_code == 404
    assert admin(sandbox, "DELETE", "members/x").status_code == 404
    again = api.post("/v2/users", {"email_address": "d@example.com", "first_name": "D", "last_name": "T",
                                   "postal_code": "10010"})
    assert again.status_code == 200 and again.json()["id"] != member_id
    assert sandbox.delete_member("email", "d@example.com")["id"] == again.json()["id"]
    assert sandbox.members() == []
    with pytest.raises(ValueError, match="no member"):
        sandbox.delete_member("email", "d@example.com")


def test_admin_errors(sandbox: Sandbox) -> None:
    assert admin(sandbox, "POST", "options", {"no_such_knob": 1}).status_code == 400
    assert admin(sandbox, "POST", "options", {"error_rate": 3}).status_code == 400
    assert admin(sandbox, "POST", "options", {"clock": 1}).status_code == 400
    admin(sandbox, "POST", "members", {"email_address": "s@example.com"})
    duplicate = admin(sandbox, "POST", "members", {"email_address": "S@example.com"})
    assert (duplicate.status_code, duplicate.json()["message"]) == (400, "email_address already taken.")
    assert admin(sandbox, "GET", "nothing").status_code == 404


# --------------------------------------------------------------------------- in-process helpers
def test_helpers_reset_restores_seeded_defaults(sandbox_factory: SandboxFactory) -> None:
    seed_member = {"email_address": "seed@example.com", "first_name": "Seed", "last_name": "Member",
                   "postal_code": "10010", "third_party_id": "crm-1"}  # fmt: skip
    sb = sandbox_factory(members=(seed_member,))
    seeded_id = sb.members()[0]["id"]
    sb.add_member(email_address="extra@example.com", first_name="E", last_name="X")
    sb.add_activity(id="9", title="Nine", num_points=9)
    api = Api(sb.base_url)
    api.post(f"/v2/users/{seeded_id}/activities", {"activity_id": "9"})
    assert sb.existing_member("third_party_id", "crm-1")["total_points"] == 9
    sb.reset()
    assert [m["email_address"] for m in sb.members()] == ["seed@example.com"]
    assert sb.members()[0]["id"] == seeded_id
    assert sb.existing_member("third_party_id", "crm-1")["total_points"] == 0
    assert sb.credits() == []
    assert [a["id"] for a in sb.activities()] == ["1001", "1002", "1003"]
    assert sb.request_counts() == {"total": 0, "429": 0, "500": 0, "503": 0, "dropped": 0}


def test_helpers_member_lookup_and_errors(sandbox: Sandbox) -> None:
    member = sandbox.add_member(email_address="Look@Example.com", first_name="L", last_name="U", username="lu",
                                mobile_phone_number="2125550199", id=555)  # fmt: skip
    assert member["id"] == 555
    lookups: list[tuple[str, str | int]] = [("id", 555), ("id", "555"), ("email", "look@example.com"),
                                            ("username", "lu"), ("mobile_phone_number", "2125550199")]
    for id_type, value in lookups:
        assert sandbox.existing_member(id_type, value)["id"] == 555
    assert sandbox.member("id", 1) is None
    with pytest.raises(ValueError, match="id_type"):
        sandbox.member("facebook_user_id", "x")
    with pytest.raises(Exception, match="already taken"):
        sandbox.add_member(email_address="look@example.com")


def test_set_options_and_temporary_change(sandbox: Sandbox) -> None:
    api = Api(sandbox.base_url)
    with sandbox.options_changed(error_rate=1.0):
        assert api.get("/v2/activities").status_code == 500
    assert api.get("/v2/activities").status_code == 200
    sandbox.set_options(activities=({"id": "77", "title": "Only", "num_points": 7},))
    assert [a["id"] for a in api.get("/v2/activities").json()] == ["77"]
    sandbox.set_options(custom_attributes=["tier"])
    assert sandbox.options.custom_attributes == ("tier",)
    with pytest.raises(TypeError):
        sandbox.set_options(bogus=True)


def test_start_stop_is_fast_and_releases_port() -> None:
    started = time.perf_counter()
    sb = Sandbox(SandboxOptions()).start()
    port = sb.port
    session = requests.Session()
    assert session.get(f"{sb.base_url}/v2/activities", params={"api_key": API_KEY}, timeout=5).ok  # keep-alive open
    stop_started = time.perf_counter()
    sb.stop()
    stopped = time.perf_counter()
    assert stopped - stop_started < 0.2  # typically ~5 ms (poll interval 10 ms); margin for a busy machine
    assert stopped - started < 0.5
    assert not sb.running
    with pytest.raises(requests.ConnectionError):
        session.get(f"http://127.0.0.1:{port}/v2/activities", params={"api_key": API_KEY}, timeout=2)
    sb.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = sb.base_url


def test_fixed_port_and_restart() -> None:
    with Sandbox() as first:
        port = first.port
    with Sandbox(port=port) as second:
        assert second.port == port


def test_sandbox_binds_loopback_only(sandbox: Sandbox) -> None:
    assert sandbox.engine is not None
    assert sandbox.base_url == f"http://127.0.0.1:{sandbox.port}"


def test_keep_alive_is_honoured(sandbox: Sandbox) -> None:
    session = requests.Session()
    for _ in range(5):
        response = session.get(f"{sandbox.base_url}/v2/activities", params={"api_key": API_KEY}, timeout=5)
        assert response.headers.get("Connection") != "close"
        assert response.raw.version == 11
    adapter = session.adapters["http://"]
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    assert len(adapter.poolmanager.pools) == 1


def test_concurrent_credits_are_all_counted(sandbox: Sandbox) -> None:
    member = sandbox.add_member(email_address="c@example.com", first_name="C", last_name="D")

    def burst() -> None:
        api = Api(sandbox.base_url)
        for _ in range(25):
            assert api.post(f"/v2/users/{member['id']}/activities", {"activity_id": "1001"}).status_code == 200

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sandbox.existing_member("id", member["id"])["total_points"] == 1000
    assert len(sandbox.credits()) == 100
    assert sandbox.request_counts()["POST /v2/users/{id}/activities"] == 100


def test_fake_clock_dates_profile(sandbox_factory: SandboxFactory) -> None:
    clock = FakeClock(1_600_000_000.0)
    sb = sandbox_factory(clock=clock)
    assert sb.add_member(email_address="c@example.com", first_name="C", last_name="D")["date_created"] == 1_600_000_000


# --------------------------------------------------------------------------- CLI
def test_cli_parser_maps_every_knob(tmp_path: Path) -> None:
    members_file = tmp_path / "members.json"
    members_file.write_text(json.dumps([{"email_address": "m@example.com", "first_name": "M", "last_name": "N"}]))
    args = build_parser().parse_args([
        "--api-key", "cli-key-000000000000000000", "--hmac", "--hmac-accept-seconds",
        "--activity", "5001:Review:15:2", "--keep-default-activities", "--custom-attribute", "tier",
        "--seed-members", str(members_file), "--lenient-location", "--duplicate-detection",
        "--duplicate-window", "3", "--queue-delay-ms", "250", "--latency-ms", "20",
        "--latency-distribution", "normal", "--latency-spread-ms", "5", "--rate-limit", "600",
        "--rate-limit-algorithm", "token_bucket", "--rate-limit-burst", "10", "--no-retry-after",
        "--error-rate", "0.1", "--error-after-apply", "--maintenance-first-n", "2", "--maintenance-seconds", "30",
        "--drop-rate", "0.05", "--drop-credits-only", "--slow-rate", "0.2", "--slow-ms", "900", "--seed", "9",
    ])  # fmt: skip
    opts = options_from_args(args)
    assert opts.hmac_enabled
    assert opts.hmac_accept_seconds
    assert [a["id"] for a in opts.activities] == ["1001", "1002", "1003", "5001"]
    assert opts.activities[-1] == {"id": "5001", "title": "Review", "num_points": 15, "freq_cap": 2}
    assert opts.custom_attributes == ("tier",)
    assert opts.members[0]["email_address"] == "m@example.com"
    assert (opts.strict_location, opts.duplicate_detection, opts.duplicate_window_seconds) == (False, True, 3.0)
    assert (opts.queue_delay_ms, opts.latency_ms, opts.latency_distribution, opts.latency_spread_ms) == (
        250, 20, "normal", 5
    )
    assert (opts.rate_limit_per_minute, opts.rate_limit_algorithm, opts.rate_limit_burst, opts.retry_after) == (
        600, "token_bucket", 10, False
    )
    assert (opts.error_rate, opts.error_after_apply, opts.maintenance_first_n) == (0.1, True, 2)
    assert opts.maintenance_window is not None
    assert opts.maintenance_window[1] - opts.maintenance_window[0] == 30
    assert (opts.drop_rate, opts.drop_credits_only, opts.slow_rate, opts.slow_ms, opts.seed) == (
        0.05, True, 0.2, 900, 9
    )
    only = options_from_args(build_parser().parse_args(["--activity", "1:One:1"]))
    assert [a["id"] for a in only.activities] == ["1"]


def test_cli_subprocess_serves_and_terminates(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "crowdtwist_sandbox.cli", "--port", "0", "--port-file", str(port_file),
         "--api-key", "cli-key-000000000000000000", "--custom-attribute", "tier"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        assert int(port_file.read_text()) == port
        response = requests.get(f"http://127.0.0.1:{port}/v2/activities",
                                params={"api_key": "cli-key-000000000000000000"}, timeout=5)  # fmt: skip
        assert response.status_code == 200
        assert response.json()[0]["title"] == "Ad Hoc Points"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "crowdtwist-sandbox"
    assert script.exists()
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, check=True)
    assert "--rate-limit" in out.stdout
    assert "--drop-credits-only" in out.stdout


def test_cli_rejects_bad_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "crowdtwist_sandbox.cli", "--error-rate", "2"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2
    assert "error_rate" in out.stderr


# --------------------------------------------------------------------------- load test
def test_loadtest_measures_keep_alive_throughput(sandbox: Sandbox) -> None:
    result = measure(sandbox.base_url, seconds=0.5, threads=2)
    assert result.errors == 0
    assert result.requests > 50
    assert result.per_second == result.requests / result.seconds
    raw = measure(sandbox.base_url, seconds=0.3, threads=1, client="raw", mix=False)
    assert raw.errors == 0
    assert raw.requests > 50


def test_history_answer_shape_over_the_admin_api_and_the_cli(sandbox: Sandbox) -> None:
    changed = admin(sandbox, "POST", "options", {"history_answer_shape": "null", "history_max_page_size": 5})
    assert (changed.json()["history_answer_shape"], changed.json()["history_max_page_size"]) == ("null", 5)
    assert admin(sandbox, "POST", "options", {"history_answer_shape": "sideways"}).status_code == 400
    args = build_parser().parse_args(["--history-answer-shape", "user_not_found", "--history-max-page-size", "3"])
    opts = options_from_args(args)
    assert (opts.history_answer_shape, opts.history_max_page_size) == ("user_not_found", 3)
