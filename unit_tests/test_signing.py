"""HMAC recipe (docs/crowdtwist-api-notes.md §1.3): vectors V1-V4, step by step, and the auth adapters."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import pytest
import requests

from destination_crowdtwist.api.signing import (
    ApiKeyAuth,
    HmacAuth,
    content_md5,
    request_uri,
    signature,
    string_to_sign,
    with_api_key,
)

PUBLIC = "ABCl3y7r0s5ukCXz5lCJOCrTZ427pjp5"
PRIVATE = "ABttp1b92Tb65445rmZL835f263n1q4Y"
BASE = "https://api123.crowdtwist.com"


@dataclass(frozen=True)
class Vector:
    name: str
    method: str
    uri: str
    timestamp: str
    body: bytes | None
    md5: str
    signature: str


VECTORS = [
    Vector("V1", "GET", "/v2/activities", "1505325876486", None, "",
           "OTA2MTk5ZDZlYjY1MzhjN2M0ODE0NmZjMWI4ZjA0MTczMGNjNGJlZGEwOGVmZWEwNTA5YWZmOTY4ODI3M2RiYw=="),
    Vector("V2", "POST", "/v2/users/alice%40crowdtwist.com/activities?id_type=email", "1505325876486",
           b'{"activity_id":"410052775","num_points":150}', "449754e6a058d4a41ce6e30f09758c31",
           "ZDUwYjIzMzA5MzA3NjQ5ODFlNTllYjVkYzU2ODYxMGQxN2E1MGQyMzhhMTZkYmE1YjVjNzRmOTQyODZiODJkNA=="),
    Vector("V3", "PUT", "/v2/users/103997?id_type=third_party_id", "1505325876486",
           b'{"first_name":"Mike","last_name":"Smith"}', "8195f65136a18993ddf49c07891741c3",
           "YjY0NGNhMjM0MTJjMzIwYzNlNGUzYzk5YmZkOWFhOGRmOGY4MjVlODNhMzIwY2NkNmJiYTIyYzg5OGNmMTRlYw=="),
    Vector("V4", "POST", "/v2/users", "1505325876",
           b'{"first_name":"Mike","last_name":"Smith","email_address":"a@gmail.com","postal_code":"10010"}',
           "5d05c943f92e527ce534fc830964e140",
           "NmZkMjRhNmRjNDA5MmM3MTg4YmVhNDBmZWFjOTQxYWI3Mjk4NmFiMzhlZjYzN2JjZmQzMzY5MDNlODk0NjhkYg=="),
]


def _content_type(v: Vector) -> str:
    return "application/json" if v.body is not None else ""


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_vector_signature_and_steps(v: Vector) -> None:
    md5 = content_md5(v.body)
    sts = string_to_sign(v.method, md5, _content_type(v), v.timestamp, v.uri)
    sig = signature(PRIVATE, sts)
    if sig != v.signature:
        # Only on mismatch: name the first step that differs.
        assert md5 == v.md5, "content_md5 step differs"
        assert sts == "\n".join([v.method, v.md5, _content_type(v), v.timestamp, v.uri]), "string_to_sign differs"
    assert sig == v.signature
    assert len(sig) == 88
    assert md5 == v.md5


# Intermediate values documented next to the vectors (docs/crowdtwist-api-notes.md §1.3): the HMAC
# as lowercase hex (what gets Base64-encoded) and the wrong raw-digest Base64 form for V1.
V1_HMAC_HEX = "906199d6eb6538c7c48146fc1b8f041730cc4beda08efea0509aff9688273dbc"
V1_WRONG_RAW_BASE64 = "kGGZ1utlOMfEgUb8G48EFzDMS+2gjv6gUJr/lognPbw="
V2_HMAC_HEX = "d50b2330930764981e59eb5dc568610d17a50d238a16dba5b5c74f94286b82d4"


def test_v1_v2_intermediate_values() -> None:
    v1, v2 = VECTORS[0], VECTORS[1]
    sts1 = string_to_sign(v1.method, content_md5(v1.body), "", v1.timestamp, request_uri(BASE + v1.uri))
    assert sts1 == "GET\n\n\n1505325876486\n/v2/activities"
    sig1 = signature(PRIVATE, sts1)
    assert base64.b64decode(sig1).decode() == V1_HMAC_HEX
    # The documented wrong form is the raw digest in Base64; we must not produce it.
    assert base64.b64encode(bytes.fromhex(V1_HMAC_HEX)).decode() == V1_WRONG_RAW_BASE64
    assert sig1 != V1_WRONG_RAW_BASE64

    sts2 = string_to_sign(v2.method, content_md5(v2.body), "application/json", v2.timestamp, request_uri(BASE + v2.uri))
    assert sts2 == (
        "POST\n449754e6a058d4a41ce6e30f09758c31\napplication/json\n1505325876486\n"
        "/v2/users/alice%40crowdtwist.com/activities?id_type=email"
    )
    assert base64.b64decode(signature(PRIVATE, sts2)).decode() == V2_HMAC_HEX


def test_content_md5_of_no_body_is_empty_not_md5_of_empty_string() -> None:
    assert content_md5(None) == ""
    assert content_md5(b"") == "d41d8cd98f00b204e9800998ecf8427e"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api123.crowdtwist.com/v2/activities", "/v2/activities"),
        ("https://api123.crowdtwist.com/v2/users/a%40b.com?id_type=email&x=1", "/v2/users/a%40b.com?id_type=email&x=1"),
        ("https://api123.crowdtwist.com", "/"),
        ("https://h/p?q=a%2Fb#frag", "/p?q=a%2Fb"),
    ],
)
def test_request_uri_is_path_and_undecoded_query(url: str, expected: str) -> None:
    assert request_uri(url) == expected


def _prepare(method: str, path: str, body: bytes | None = None, params: dict[str, str] | None = None,
             content_type: str | None = "application/json") -> requests.PreparedRequest:
    headers = {"Content-Type": content_type} if body is not None and content_type else {}
    return requests.Request(method, BASE + path, data=body, params=params, headers=headers).prepare()


def _reference_signature(method: str, body: bytes | None, timestamp: str, uri: str) -> str:
    """The §1.3 recipe written out with hashlib/hmac only, independent of the production functions."""
    md5 = hashlib.md5(body).hexdigest() if body is not None else ""
    ctype = "application/json" if body is not None else ""
    to_sign = f"{method}\n{md5}\n{ctype}\n{timestamp}\n{uri}".encode()
    return base64.b64encode(hmac.new(PRIVATE.encode(), to_sign, hashlib.sha256).hexdigest().encode()).decode()


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_reference_signature_reproduces_the_vectors(v: Vector) -> None:
    assert _reference_signature(v.method, v.body, v.timestamp, v.uri) == v.signature


@pytest.mark.parametrize("v", VECTORS[:3], ids=lambda v: v.name)
def test_hmac_auth_reproduces_millisecond_vectors_on_prepared_requests(v: Vector) -> None:
    auth = HmacAuth(PUBLIC, PRIVATE, clock=lambda: int(v.timestamp) / 1000)
    prepared = auth(_prepare(v.method, v.uri, v.body))
    assert prepared.headers["X-CT-Timestamp"] == v.timestamp
    assert prepared.headers["X-CT-Authorization"] == f"CTApiV2Auth {PUBLIC}:{v.signature}"


def test_hmac_auth_signs_the_v4_request_whole_with_its_millisecond_timestamp() -> None:
    """V4 was signed with a seconds timestamp, which we never send (we send ms, §1.3).

    The header is checked whole against the reference recipe (proven on V4 itself above) at the
    millisecond timestamp we do send; the vector's own signature must differ, since the timestamp
    is part of the signed string.
    """
    v4 = VECTORS[3]
    auth = HmacAuth(PUBLIC, PRIVATE, clock=lambda: int(v4.timestamp))
    prepared = auth(_prepare(v4.method, v4.uri, v4.body))
    sent_ts = v4.timestamp + "000"
    assert prepared.headers["X-CT-Timestamp"] == sent_ts
    expected = _reference_signature(v4.method, v4.body, sent_ts, v4.uri)
    assert prepared.headers["X-CT-Authorization"] == f"CTApiV2Auth {PUBLIC}:{expected}"
    assert expected != v4.signature


def test_resign_replaces_headers_with_fresh_timestamp() -> None:
    now = [1505325876.486]
    auth = HmacAuth(PUBLIC, PRIVATE, clock=lambda: now[0])
    prepared = _prepare("POST", "/v2/users", b'{"a":1}')
    prepared.headers["x-ct-authorization"] = "CTApiV2Auth stale:old"
    auth(prepared)
    first = prepared.headers["X-CT-Authorization"]
    now[0] += 2.5
    auth(prepared)
    names = [name.lower() for name in prepared.headers]
    assert names.count("x-ct-authorization") == 1
    assert names.count("x-ct-timestamp") == 1
    assert prepared.headers["X-CT-Timestamp"] == "1505325878986"
    assert prepared.headers["X-CT-Authorization"] != first
    assert "stale" not in prepared.headers["X-CT-Authorization"]


def _sig(
    method: str = "POST", md5: str = "m", ctype: str = "application/json", ts: str = "1", uri: str = "/v2/users"
) -> str:
    return signature(PRIVATE, string_to_sign(method, md5, ctype, ts, uri))


@pytest.mark.parametrize(
    "changed",
    [
        {"method": "PUT"},
        {"md5": content_md5(b'{"a":2}')},
        {"ctype": "text/plain"},
        {"ts": "2"},
        {"uri": "/v2/users?id_type=email"},
    ],
    ids=["method", "body", "content_type", "timestamp", "uri"],
)
def test_every_signed_input_changes_the_signature(changed: dict[str, str]) -> None:
    assert _sig(**changed) != _sig()


def test_hmac_auth_signs_exact_body_bytes_and_query() -> None:
    auth = HmacAuth(PUBLIC, PRIVATE, clock=lambda: 1.0)
    a = auth(_prepare("POST", "/v2/users", b'{"a":1}'))
    b = auth(_prepare("POST", "/v2/users", b'{"a": 1}'))  # same JSON value, different bytes
    c = auth(_prepare("POST", "/v2/users", b'{"a":1}', params={"id_type": "email"}))
    assert len({a.headers["X-CT-Authorization"], b.headers["X-CT-Authorization"],
                c.headers["X-CT-Authorization"]}) == 3


def test_get_ignores_content_type_and_signs_empty_md5() -> None:
    auth = HmacAuth(PUBLIC, PRIVATE, clock=lambda: 1505325876.486)
    headers = {"Content-Type": "application/json"}
    prepared = requests.Request("GET", BASE + "/v2/activities", headers=headers).prepare()
    auth(prepared)
    assert prepared.headers["X-CT-Authorization"].endswith(VECTORS[0].signature)


def test_hmac_auth_rejects_streamed_bodies() -> None:
    auth = HmacAuth(PUBLIC, PRIVATE)
    prepared = _prepare("POST", "/v2/users", b"{}")
    prepared.body = iter([b"{}"])  # type: ignore[assignment]  # a streamed body: requests sends one, the stub omits it
    with pytest.raises(TypeError, match="streamed"):
        auth(prepared)


def test_api_key_auth_sets_exactly_one_api_key() -> None:
    auth = ApiKeyAuth("k&y/+=")
    prepared = _prepare("GET", "/v2/users/a%40b.com", params={"id_type": "email"})
    auth(auth(prepared))
    assert prepared.url == BASE + "/v2/users/a%40b.com?id_type=email&api_key=k%26y%2F%2B%3D"
    assert with_api_key(BASE + "/v2/activities?api_key=old", "new") == BASE + "/v2/activities?api_key=new"


def test_reprs_hide_secrets() -> None:
    assert PRIVATE not in repr(HmacAuth(PUBLIC, PRIVATE))
    assert "SECRETKEY" not in repr(ApiKeyAuth("SECRETKEY"))
    assert HmacAuth(PUBLIC, PRIVATE).secrets == (PRIVATE,)
    assert ApiKeyAuth("SECRETKEY").secrets == ("SECRETKEY",)


@pytest.mark.parametrize("target", [
    "/v2/users/a%40b.com?id_type=email", "/v2/activities", "/v2/users/x?id_type=email&api_key=old",
    "/v2/x?", "/v2/x?a=1&", "/v2/x?a=1&&b=2", "/v2/x?&a=1", "/v2/x?a=1#frag", "https://h.example/v2/x?a=b%20c",
])
def test_api_key_apply_is_with_api_key(target: str) -> None:
    # The transport's per-attempt path (a fast append for the usual target) says what with_api_key says.
    auth = ApiKeyAuth("k&y/+=")
    headers: dict[str, str] = {}
    assert auth.apply("GET", target, headers, None) == with_api_key(target, "k&y/+=")
    assert headers == {}


def test_hmac_apply_signs_the_target_as_sent_with_a_fresh_timestamp() -> None:
    ticks = iter([1_700_000_000.0, 1_700_000_001.5])
    auth = HmacAuth(PUBLIC, PRIVATE, clock=lambda: next(ticks))
    body = b'{"first_name":"A"}'
    headers = {"Content-Type": "application/json", "X-CT-Timestamp": "stale"}
    target = "/v2/users/a%40b.com?id_type=email"
    assert auth.apply("PUT", target, headers, body) == target
    expected = signature(PRIVATE, string_to_sign("PUT", content_md5(body), "application/json", "1700000000000", target))
    assert headers["X-CT-Timestamp"] == "1700000000000"
    assert headers["X-CT-Authorization"] == f"CTApiV2Auth {PUBLIC}:{expected}"
    auth.apply("PUT", target, headers, body)  # a retry: both headers replaced, never two
    assert headers["X-CT-Timestamp"] == "1700000001500"
