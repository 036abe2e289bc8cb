"""The transport's own set-up on urllib3: what every attempt asks of the pool, and requests' parity
(proxies from the environment, the CA bundle, parameter encoding). Answers, failures and deadlines
are tested through the client in test_client.py and integration_tests/test_attempt_deadline.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
import urllib3.response
from fakehttp import FakeServer, ScriptedPool, json_reply, serving

from destination_crowdtwist.api.client import USER_AGENT, CrowdTwistClient
from destination_crowdtwist.api.deadline import WatchedHTTPSConnectionPool
from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.api.signing import ApiKeyAuth

API_KEY = "KEY-s3cr3t-9f8e7d"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                   "no_proxy")


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    with serving() as server:
        yield server


class KeywordPool(ScriptedPool):
    """A scripted pool that also keeps the keywords of every urlopen."""

    calls: list[dict[str, Any]]

    def urlopen(self, method: str, url: str, body: bytes | None = None, headers: Any = None,
                **kwargs: Any) -> urllib3.response.HTTPResponse:
        self.__dict__.setdefault("calls", []).append(kwargs)
        return super().urlopen(method, url, body, headers, **kwargs)


def test_every_attempt_asks_for_no_retry_no_redirect_a_streamed_body_and_both_timeouts() -> None:
    pool = KeywordPool().queue((500, {}), (200, {"id": 1}))
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY), pool=pool, timeout=(3.0, 7.0),
                              sleep=lambda _: None, rand=lambda: 0.0)
    assert client.update_user("a@b.com", "email", {"first_name": "A"}).status == 200
    pool.verify()
    assert len(pool.calls) == 2  # the client's retry, never urllib3's
    for kwargs in pool.calls:
        assert kwargs["retries"] is False and kwargs["redirect"] is False
        assert kwargs["preload_content"] is False  # read under the size cap and the attempt deadline
        timeout = kwargs["timeout"]
        assert (timeout.connect_timeout, timeout.read_timeout) == (3.0, 7.0)
    sent = pool.sent[0]
    assert sent.method == "PUT"
    assert sent.url == f"/v2/users/a%40b.com?id_type=email&api_key={API_KEY}"
    assert sent.body == b'{"first_name":"A"}'
    assert sent.headers["User-Agent"] == USER_AGENT
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/json"
    assert "gzip" in sent.headers["Accept-Encoding"]  # as requests asked: a gzipped answer is decoded
    assert sent.headers["Connection"] == "keep-alive"


def test_parameters_are_encoded_as_requests_encoded_them() -> None:
    pool = ScriptedPool().queue((200, {}))
    client = CrowdTwistClient("https://api1.crowdtwist.com/prefix/", ApiKeyAuth(API_KEY), pool=pool)
    client.request("GET", "/v2/x", params={"a": "b c&d", "skip": None, "many": [1, 2]})
    # None left out, lists repeated, form encoding; a base URL's path comes first.
    assert pool.sent[0].url == f"/prefix/v2/x?a=b+c%26d&many=1&many=2&api_key={API_KEY}"


def test_environment_proxy_is_used_for_https_as_requests_chose_it(no_proxy_settings: pytest.MonkeyPatch) -> None:
    no_proxy_settings.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.example:3128")
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY))
    try:
        pool = client._transport.pool
        assert isinstance(pool, WatchedHTTPSConnectionPool)  # tunnelled (CONNECT), still cut by the watchdog
        assert pool.host == "api1.crowdtwist.com"
        assert pool.proxy is not None and (pool.proxy.host, pool.proxy.port) == ("proxy.example", 3128)
        expected = "Basic " + base64.b64encode(b"user:p@ss").decode()
        assert pool.proxy_headers["proxy-authorization"] == expected
    finally:
        client.close()


def test_no_proxy_bypasses_the_environment_proxy(no_proxy_settings: pytest.MonkeyPatch) -> None:
    no_proxy_settings.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    no_proxy_settings.setenv("NO_PROXY", ".crowdtwist.com")
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY))
    try:
        pool = client._transport.pool
        assert isinstance(pool, WatchedHTTPSConnectionPool) and pool.proxy is None
    finally:
        client.close()


def test_plain_http_through_a_proxy_sends_the_absolute_url(
    no_proxy_settings: pytest.MonkeyPatch, fake_server: FakeServer
) -> None:
    # The fake server plays the proxy: a plain-HTTP request reaches it in absolute form.
    no_proxy_settings.setenv("HTTP_PROXY", fake_server.url)
    fake_server.expect("GET", "/v2/activities", json_reply(200, []))
    client = CrowdTwistClient("http://api.crowdtwist.invalid", ApiKeyAuth(API_KEY))
    try:
        assert client.list_activities() == []
    finally:
        client.close()
    assert fake_server.requests[0].target == f"http://api.crowdtwist.invalid/v2/activities?api_key={API_KEY}"


def test_a_socks_proxy_is_a_config_error(no_proxy_settings: pytest.MonkeyPatch) -> None:
    no_proxy_settings.setenv("ALL_PROXY", "socks5://user:secret@proxy.example:1080")
    with pytest.raises(ConfigError, match="SOCKS proxy") as info:
        CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY))
    assert "secret" not in str(info.value)


def test_a_ca_bundle_directory_is_a_ca_directory(no_proxy_settings: pytest.MonkeyPatch, tmp_path: Any) -> None:
    no_proxy_settings.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY))
    try:
        pool = client._transport.pool
        assert isinstance(pool, WatchedHTTPSConnectionPool)
        assert pool.ca_cert_dir == str(tmp_path) and pool.ca_certs is None  # as requests passed a directory
    finally:
        client.close()


def test_an_answers_headers_stay_case_insensitive() -> None:
    pool = ScriptedPool().queue((200, {"id": 1}, {"x-request-id": "abc"}))
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY), pool=pool)
    answer = client.get_user("1", "id")
    assert answer.headers["X-Request-Id"] == "abc" and answer.headers.get("content-type") == "application/json"


def test_the_request_line_is_masked_only_when_something_reads_it() -> None:
    masked: list[str] = []

    def mask(path: str) -> str:
        masked.append(path)
        return "/v2/users/***"

    pool = ScriptedPool().queue((200, {"id": 1}), (400, {"error": "invalid_request", "message": "bad postal code"}))
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY), pool=pool, mask_path=mask)
    assert client.update_user("a@b.com", "email", {"first_name": "A"}).status == 200
    assert masked == []  # an answer nobody reports on never builds its line
    refused = client.update_user("a@b.com", "email", {"postal_code": "?"})
    assert refused.request_line == "PUT /v2/users/***?id_type=email" == refused.request_line
    assert masked == ["/v2/users/a%40b.com"]  # built once, on first read


def test_cached_parameter_encoding_never_confuses_equal_values_of_other_types() -> None:
    pool = ScriptedPool().queue(*[(200, {})] * 5)
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth(API_KEY), pool=pool)
    for params in ({"a": "1"}, {"a": 1}, {"a": True}, {"a": 1.0}, {"a": "1"}):
        client.request("GET", "/v2/x", params=params)
    assert [sent.url.split("&")[0] for sent in pool.sent] == [
        "/v2/x?a=1", "/v2/x?a=1", "/v2/x?a=True", "/v2/x?a=1.0", "/v2/x?a=1"
    ]
