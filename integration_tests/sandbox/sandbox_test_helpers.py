"""Small helpers for the sandbox's own tests: a fake clock, an API-key client and an HMAC signer.

The signer is written here again on purpose (not imported from the sandbox or the connector), so the
tests check the sandbox's verifier against an independent implementation of §1.3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import requests

API_KEY = "ctsbx_3f9a2c7e1b8d4e6f9a0b3c5d7e9f1a2b"
HMAC_PUBLIC = "CTPUBsbx7Kq2Wm9Zr4Tn6Yp1Xc8Vb3Nd5Lf0"
HMAC_PRIVATE = "CTPRIVsbxH4s9Jd2Kf7Lg1Qw6Er3Ty8Ui5Op0Az"

VALID_USER = {"first_name": "Ann", "last_name": "Smith", "email_address": "ann@example.com", "postal_code": "94111"}


class FakeClock:
    """Injectable wall clock (epoch seconds) that only moves when told."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """A keep-alive client that adds the API key to every call."""

    def __init__(self, base_url: str, api_key: str = API_KEY) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.session = requests.Session()

    def call(self, method: str, path: str, *, json: Any = None, **params: Any) -> requests.Response:
        params.setdefault("api_key", self.api_key)
        return self.session.request(method, self.base_url + path, params=params, json=json, timeout=10)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.call("GET", path, **params)

    def post(self, path: str, body: Any, **params: Any) -> requests.Response:
        return self.call("POST", path, json=body, **params)

    def put(self, path: str, body: Any, **params: Any) -> requests.Response:
        return self.call("PUT", path, json=body, **params)

    def create(self, **fields: Any) -> dict[str, Any]:
        """Create a member (VALID_USER overridden by ``fields``); asserts success."""
        response = self.post("/v2/users", {**VALID_USER, **fields})
        assert response.status_code == 200, response.text
        created: dict[str, Any] = response.json()
        return created


def sign(method: str, target: str, body: bytes, timestamp: str, private_key: str = HMAC_PRIVATE) -> str:
    """Independent implementation of the CrowdTwist HMAC recipe."""
    if method in ("GET", "DELETE"):
        md5, ctype = "", ""
    else:
        md5, ctype = hashlib.md5(body).hexdigest(), "application/json"
    message = "\n".join([method, md5, ctype, timestamp, target])
    digest = hmac.new(private_key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def signed(
    base_url: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    timestamp: str,
    public_key: str = HMAC_PUBLIC,
    private_key: str = HMAC_PRIVATE,
    signature: str | None = None,
    session: requests.Session | None = None,
) -> requests.Response:
    """Send one HMAC-signed request; the signature covers the prepared (sent) path + query."""
    headers = {"X-CT-Timestamp": timestamp}
    if method not in ("GET", "DELETE"):
        headers["Content-Type"] = "application/json"
    prepared = requests.Request(method, base_url + target, data=body or None, headers=headers).prepare()
    path_url = prepared.path_url
    sig = signature if signature is not None else sign(method, path_url, body, timestamp, private_key)
    prepared.headers["X-CT-Authorization"] = f"CTApiV2Auth {public_key}:{sig}"
    sender = session or requests.Session()
    return sender.send(prepared, timeout=10)
