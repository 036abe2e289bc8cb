"""Secret redaction of URLs and free text."""

from __future__ import annotations

import pytest

from destination_crowdtwist.api.redaction import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api1.crowdtwist.com/v2/activities?api_key=SECRET",
         "https://api1.crowdtwist.com/v2/activities?api_key=***"),
        ("https://h/v2/users/a%40b.com?id_type=email&api_key=S%26X&pii=false",
         "https://h/v2/users/a%40b.com?id_type=email&api_key=***&pii=false"),
        ("https://h/p?token=t&Signature=s&password=p&keep=1",
         "https://h/p?token=***&Signature=***&password=***&keep=1"),
        ("https://user:pw@h/p", "https://user:***@h/p"),
        ("https://tok@h/p", "https://***@h/p"),
        ("/v2/users?api_key=K", "/v2/users?api_key=***"),
        ("https://h/p?flag&x=", "https://h/p?flag&x="),
        ("https://h/p", "https://h/p"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_masks_known_secrets_in_every_encoding() -> None:
    secret = "ab/c+d=e"
    text = f"raw {secret} quoted ab%2Fc%2Bd%3De plus ab%2Fc%2Bd%3De"
    assert redact_text(text, [secret]) == "raw *** quoted *** plus ***"


def test_redact_text_masks_secret_looking_parameters_and_auth_headers() -> None:
    text = (
        "HTTPSConnectionPool(host='h', port=443): Max retries exceeded with url: "
        "/v2/users?id_type=email&api_key=UNKNOWN1 "
        "header X-CT-Authorization: CTApiV2Auth PUB123:c2lnbmF0dXJl== and CTApiKey KEY999"
    )
    out = redact_text(text, [])
    assert "UNKNOWN1" not in out
    assert "c2lnbmF0dXJl" not in out
    assert "KEY999" not in out
    assert "id_type=email&api_key=***" in out
    assert "CTApiV2Auth PUB123:***" in out


def test_redact_text_ignores_empty_secrets_and_prefers_longest() -> None:
    assert redact_text("abc abcdef", ["", None, "abc", "abcdef"]) == "*** ***"
