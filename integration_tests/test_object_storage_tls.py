"""An S3-compatible store behind a certificate from a private CA (issue 18 §4): without the CA the
handshake fails with an error that names the setting; with object_storage_config.s3_ca_certificate
the connector verifies the endpoint and talks to it. The store is a tiny HTTPS server on 127.0.0.1
that answers every S3 call 200 (enough for HeadBucket and PutObject); the CA and the certificate
are made here, so nothing leaves the machine.
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from destination_crowdtwist.api.errors import ConfigError, CrowdTwistError
from destination_crowdtwist.api.retry import RetryPolicy
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.rejects.s3_client import S3Client
from destination_crowdtwist.rejects.s3_sink import S3RejectSink
from tests_support.private_ca import https_server, private_ca


class _AnswersOk(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def _ok(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("ETag", '"0"')
        self.end_headers()

    do_HEAD = do_PUT = do_GET = do_DELETE = _ok

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def private_tls_store(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(endpoint URL, CA certificate PEM) of an HTTPS server whose certificate a private CA issued."""
    ca = private_ca(tmp_path)
    _AnswersOk.seen = []
    with https_server(ca, _AnswersOk) as port:
        yield f"https://127.0.0.1:{port}", ca.ca_pem


def _storage(endpoint: str, **extra: str) -> dict[str, str]:
    return {"storage_type": "S3", "s3_bucket_name": "rejects", "s3_bucket_region": "us-east-1",
            "s3_endpoint": endpoint, "access_key_id": "AKIATEST", "secret_access_key": "secret", **extra}


def _config(storage: dict[str, str]) -> dict[str, object]:
    return {"api_base_url": "http://127.0.0.1:1", "credentials": {"auth_type": "api_key", "api_key": "k"},
            "object_storage_config": storage}


def test_a_private_ca_without_the_setting_fails_with_an_error_naming_the_setting(
    private_tls_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, _ = private_tls_store
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    storage = parse_config(_config(_storage(endpoint))).object_storage_config
    assert storage is not None
    sink = S3RejectSink(storage, policy=RetryPolicy(max_retries=2, base=0.0))
    with pytest.raises(CrowdTwistError) as info:
        sink.start()
    message = info.value.message
    assert f"The TLS handshake with the S3 endpoint {endpoint} failed" in message
    assert "object_storage_config.s3_ca_certificate" in message and "AWS_CA_BUNDLE" in message
    assert "after" not in message  # a certificate that cannot be verified is not retried
    assert _AnswersOk.seen == []


def test_the_ca_certificate_setting_lets_the_connector_verify_the_store(private_tls_store: tuple[str, str]) -> None:
    endpoint, ca_pem = private_tls_store
    storage = parse_config(_config(_storage(endpoint, s3_ca_certificate=ca_pem))).object_storage_config
    assert storage is not None and "CERTIFICATE" not in repr(storage)
    client = S3Client(storage)
    try:
        client.client.put_object(Bucket="rejects", Key="probe.jsonl", Body=b"{}\n")
        ca_file = client.verify
        assert ca_file is not None and Path(ca_file).read_text(encoding="ascii") == ca_pem.strip() + "\n"
    finally:
        client.close()
    assert not Path(ca_file).exists()  # removed with the client
    assert _AnswersOk.seen == ["PUT /rejects/probe.jsonl"]


def test_a_ca_certificate_that_is_not_pem_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="s3_ca_certificate must be a certificate in PEM form"):
        parse_config(_config(_storage("https://127.0.0.1:9", s3_ca_certificate="not a certificate")))
