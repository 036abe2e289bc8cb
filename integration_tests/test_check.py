"""`check` against the sandbox and against broken endpoints: each failure says what to fix."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from airbyte_cdk.models import Status

from crowdtwist_sandbox import (
    DEFAULT_API_KEY,
    EXAMPLE_HMAC_PRIVATE_KEY,
    EXAMPLE_HMAC_PUBLIC_KEY,
    Sandbox,
    SandboxOptions,
)
from destination_crowdtwist import DestinationCrowdtwist

LOG = logging.getLogger("test")
WRONG_KEY = "ctsbx_wrong_key_1234567890abcdef1234"
WRONG_PRIVATE = "CTPRIVwrong0000000000000000000000000000"


def api_key_config(base_url: str, key: str = DEFAULT_API_KEY, **extra: Any) -> dict[str, Any]:
    return {"api_base_url": base_url, "credentials": {"auth_type": "api_key", "api_key": key}, "max_retries": 0, **extra}


def hmac_config(base_url: str, private: str = EXAMPLE_HMAC_PRIVATE_KEY) -> dict[str, Any]:
    return {
        "api_base_url": base_url,
        "credentials": {"auth_type": "hmac", "public_key": EXAMPLE_HMAC_PUBLIC_KEY, "private_key": private},
        "max_retries": 0,
    }


def check(config: dict[str, Any]) -> Any:
    status = DestinationCrowdtwist().check(LOG, config)
    for secret in (DEFAULT_API_KEY, WRONG_KEY, EXAMPLE_HMAC_PRIVATE_KEY, WRONG_PRIVATE):
        assert secret not in (status.message or "")
    return status


@pytest.fixture
def hmac_sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(hmac_public_key=EXAMPLE_HMAC_PUBLIC_KEY, hmac_private_key=EXAMPLE_HMAC_PRIVATE_KEY)) as sb:
        yield sb


@pytest.fixture
def api_sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_key_check_succeeds_and_counts_activities(api_sandbox: Sandbox) -> None:
    status = check(api_key_config(api_sandbox.base_url))
    assert status.status == Status.SUCCEEDED
    assert "3 active activities" in status.message


def test_hmac_check_succeeds(hmac_sandbox: Sandbox) -> None:
    status = check(hmac_config(hmac_sandbox.base_url))
    assert status.status == Status.SUCCEEDED, status.message


def test_invalid_api_key(api_sandbox: Sandbox) -> None:
    status = check(api_key_config(api_sandbox.base_url, WRONG_KEY))
    assert status.status == Status.FAILED
    assert "API key" in status.message and "403" in status.message


def test_rejected_hmac_signature(hmac_sandbox: Sandbox) -> None:
    status = check(hmac_config(hmac_sandbox.base_url, WRONG_PRIVATE))
    assert status.status == Status.FAILED
    assert "signature" in status.message and "401" in status.message


def test_hmac_clock_skew_hint() -> None:
    skewed = SandboxOptions(
        hmac_public_key=EXAMPLE_HMAC_PUBLIC_KEY,
        hmac_private_key=EXAMPLE_HMAC_PRIVATE_KEY,
        clock=lambda: time.time() + 3600,  # the server's clock is an hour ahead of ours
    )
    with Sandbox(skewed) as sb:
        status = check(hmac_config(sb.base_url))
    assert status.status == Status.FAILED
    assert "clock" in status.message.lower()


def test_api_key_alone_is_refused_when_hmac_is_on(hmac_sandbox: Sandbox) -> None:
    status = check(api_key_config(hmac_sandbox.base_url))
    assert status.status == Status.FAILED


def test_connection_refused() -> None:
    status = check(api_key_config(f"http://127.0.0.1:{free_port()}"))
    assert status.status == Status.FAILED
    assert "reach" in status.message.lower() or "connect" in status.message.lower()


def test_tls_failure(api_sandbox: Sandbox) -> None:
    # https:// to a plain-http port: the TLS handshake fails.
    url = api_sandbox.base_url.replace("http://", "https://")
    status = check(api_key_config(url))
    assert status.status == Status.FAILED
    assert "TLS" in status.message


class _HtmlNotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_wrong_base_url() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlNotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status = check(api_key_config(f"http://127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()
        server.server_close()
    assert status.status == Status.FAILED
    assert "base URL" in status.message


def test_maintenance() -> None:
    with Sandbox(SandboxOptions(maintenance_first_n=10)) as sb:
        status = check(api_key_config(sb.base_url))
    assert status.status == Status.FAILED
    assert "maintenance" in status.message.lower() and "503" in status.message


def test_rate_limited() -> None:
    with Sandbox(SandboxOptions(rate_limit_per_minute=1)) as sb:
        first = check(api_key_config(sb.base_url))
        second = check(api_key_config(sb.base_url))
    assert first.status == Status.SUCCEEDED
    assert second.status == Status.FAILED
    assert "429" in second.message and "rate" in second.message.lower()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"api_base_url": "http://api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k" * 20}},
         "https"),
        ({"api_base_url": "https://api123.crowdtwist.com/v2", "credentials": {"auth_type": "api_key", "api_key": "k" * 20}},
         "path"),
        ({"api_base_url": "https://u:p@api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k" * 20}},
         "credentials"),
        ({"api_base_url": "https://api123.crowdtwist.com", "credentials": {"auth_type": "hmac", "public_key": "p"}},
         "private_key"),
        ({"api_base_url": "https://api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k" * 20},
          "max_concurrency": 0}, "max_concurrency"),
        ({"api_base_url": "https://api123.crowdtwist.com", "credentials": {"auth_type": "api_key", "api_key": "k" * 20},
          "user_identifier_type": "facebook"}, "user_identifier_type"),
    ],
)
def test_invalid_config_fails_check_with_the_field_to_fix(config: dict[str, Any], words: str) -> None:
    status = check(config)
    assert status.status == Status.FAILED
    assert words in status.message


def test_dns_failure() -> None:
    status = check(api_key_config("https://no-such-program.invalid"))
    assert status.status == Status.FAILED
    assert "no-such-program.invalid" in status.message and "reach" in status.message


@pytest.mark.parametrize(("policy", "figure"), [("replay_window", "212 of 300"), ("none", "231 of 300"), ("every_row", None)])
def test_check_says_plainly_that_replay_window_and_none_are_unsafe_for_full_refresh(
    api_sandbox: Sandbox, policy: str, figure: str | None
) -> None:
    status = check(api_key_config(api_sandbox.base_url, object_type="activity_credit", credit_verification=policy))
    assert status.status == Status.SUCCEEDED
    if figure is None:
        assert "unsafe" not in status.message
    else:
        assert f"credit_verification={policy} is unsafe for full-refresh sources" in status.message
        assert figure in status.message
